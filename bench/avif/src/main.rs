//! Encodes a 600 px box of each input as AVIF with ravif, one thread, and
//! prints milliseconds and bytes per speed, best of three, and the ratio to
//! issue 18's budget (100 ms per variant on one core). Images without
//! transparency are encoded as RGB, as the crunch's JPEG variants would be.
//! Usage: avifbench FILE...
use std::time::Instant;

fn main() {
    for path in std::env::args().skip(1) {
        let img = image::open(&path).expect("decode").thumbnail(600, 600).to_rgba8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let px: Vec<ravif::RGBA8> = img.pixels().map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3])).collect();
        let opaque = px.iter().all(|p| p.a == 255);
        let rgb: Vec<ravif::RGB8> = px.iter().map(|p| ravif::RGB8::new(p.r, p.g, p.b)).collect();
        for speed in [10u8, 8, 6] {
            let enc = ravif::Encoder::new()
                .with_quality(70.)
                .with_alpha_quality(70.)
                .with_speed(speed)
                .with_num_threads(Some(1));
            let mut best = f64::MAX;
            let mut bytes = 0;
            for _ in 0..3 {
                let t = Instant::now();
                let out = if opaque {
                    enc.encode_rgb(ravif::Img::new(&rgb[..], w, h))
                } else {
                    enc.encode_rgba(ravif::Img::new(&px[..], w, h))
                };
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
                bytes = out.expect("encode").avif_file.len();
            }
            let budget = best / 100.0;
            println!("{path}\t{w}x{h}\tspeed {speed}\t{best:.0} ms\t{bytes} B\t{budget:.2}x the 100 ms budget");
        }
    }
}
