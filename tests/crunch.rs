//! The crunch library and `crunchbox crunch`, on images the tests make
//! themselves (edge cases) and on the real photos of the shared corpus.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;

use crunchbox::crunch::{self, CrunchError, Format, Limits, Outputs, Variant, VariantName};
use image::codecs::gif::GifEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, Frame, ImageBuffer, ImageEncoder, ImageFormat, Luma, Rgb, Rgba, RgbaImage};

// ---------------------------------------------------------------------------
// Largest single allocation made by the current thread, so the bomb tests can
// check that a huge header is refused before any pixel buffer exists.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let out = f();
    (out, LARGEST.with(|c| c.get()))
}

// ---------------------------------------------------------------------------
// Making inputs.

fn limits() -> Limits {
    Limits { max_pixels: 50_000_000 }
}

fn jpeg(img: &[u8], w: u16, h: u16, color: jpeg_encoder::ColorType, exif: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 95);
    if let Some(exif) = exif {
        enc.add_exif_metadata(exif).unwrap();
    }
    enc.encode(img, w, h, color).unwrap();
    out
}

fn encode_as(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A TIFF (little-endian) holding one IFD entry: Orientation = `o`.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes()); // offset of IFD0
    t.extend_from_slice(&1u16.to_le_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    t.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_le_bytes()); // count
    t.extend_from_slice(&o.to_le_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    t
}

/// A `w`×`h` white RGB image with a red block in its top-left quarter.
fn red_corner(w: u32, h: u32) -> image::RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| if x < w / 4 && y < h / 4 { Rgb([255, 0, 0]) } else { Rgb([255, 255, 255]) })
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// Checking outputs.

fn decode(v: &Variant) -> DynamicImage {
    let format = if v.content_type == "image/png" { ImageFormat::Png } else { ImageFormat::Jpeg };
    image::load_from_memory_with_format(&v.bytes, format).unwrap()
}

/// Segment markers of a JPEG up to its first scan.
fn jpeg_markers(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        out.push((marker, bytes[i + 4..i + 2 + len].to_vec()));
        if marker == 0xDA {
            break;
        }
        i += 2 + len;
    }
    out
}

fn png_chunks(bytes: &[u8]) -> Vec<[u8; 4]> {
    let mut out = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        out.push(bytes[i + 4..i + 8].try_into().unwrap());
        i += 12 + len;
    }
    out
}

/// Everything every successful crunch must satisfy.
fn check_variants(variants: &[Variant], src_w: u32, src_h: u32, what: &str) {
    assert_eq!(variants.len(), 3, "{what}");
    for (v, name) in variants.iter().zip(VariantName::ALL) {
        assert_eq!(v.name, name, "{what}");
        let expected = crunch::fit(src_w, src_h, name.box_size());
        assert_eq!((v.width, v.height), expected, "{what} {name:?}");
        assert!(v.width <= src_w.max(src_h) && v.height <= src_w.max(src_h), "{what}: upscaled");
        let img = decode(v);
        assert_eq!((img.width(), img.height()), (v.width, v.height), "{what} {name:?} decoded size");
        match v.content_type {
            "image/jpeg" => {
                assert!(v.bytes.starts_with(&[0xFF, 0xD8]), "{what}");
                for (marker, data) in jpeg_markers(&v.bytes) {
                    assert!(marker != 0xFE, "{what}: comment segment in output");
                    assert!(!(0xE1..=0xEF).contains(&marker), "{what}: APP{} segment in output", marker - 0xE0);
                    assert!(!data.starts_with(b"Exif"), "{what}: EXIF in output");
                }
            }
            "image/png" => {
                for chunk in png_chunks(&v.bytes) {
                    let bad: [&[u8; 4]; 6] = [b"iCCP", b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"tIME"];
                    assert!(!bad.contains(&&chunk), "{what}: {} chunk in output", String::from_utf8_lossy(&chunk));
                }
            }
            other => panic!("{what}: unexpected content type {other}"),
        }
    }
}

fn crunch_ok(bytes: &[u8], src_w: u32, src_h: u32, what: &str) -> Vec<Variant> {
    let variants = crunch::crunch(bytes, &limits()).unwrap_or_else(|e| panic!("{what}: {e}"));
    check_variants(&variants, src_w, src_h, what);
    variants
}

fn reason(bytes: &[u8]) -> &'static str {
    match crunch::crunch(bytes, &limits()) {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

fn is_reddish(p: Rgb<u8>) -> bool {
    p[0] > 180 && p[1] < 90 && p[2] < 90
}

// ---------------------------------------------------------------------------
// Format detection.

#[test]
fn detect_by_magic_bytes() {
    let png = encode_as(&DynamicImage::new_rgb8(2, 2), ImageFormat::Png);
    assert_eq!(crunch::detect(&png), Some(Format::Png));
    assert_eq!(Format::Png.mime(), "image/png");
    let j = jpeg(&[0; 12], 2, 2, jpeg_encoder::ColorType::Rgb, None);
    assert_eq!(crunch::detect(&j), Some(Format::Jpeg));
    assert_eq!(crunch::detect(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), None);
}

// ---------------------------------------------------------------------------
// Orientation.

#[test]
fn exif_orientations_1_to_8_land_the_corner_right() {
    // Where the stored top-left corner ends up once orientation o is applied,
    // and whether width and height swap.
    let expect = [
        (1, "top-left", false),
        (2, "top-right", false),
        (3, "bottom-right", false),
        (4, "bottom-left", false),
        (5, "top-left", true),
        (6, "top-right", true),
        (7, "bottom-right", true),
        (8, "bottom-left", true),
    ];
    // 1200×600 takes the DCT-scaled path (decoded at 1/2); 80×40 the full one.
    for (w, h) in [(1200u32, 600u32), (80, 40)] {
        let src = red_corner(w, h);
        for &(o, corner, swapped) in &expect {
            let bytes =
                jpeg(src.as_raw(), w as u16, h as u16, jpeg_encoder::ColorType::Rgb, Some(&exif_orientation(o)));
            let (ow, oh) = if swapped { (h, w) } else { (w, h) };
            let what = format!("{w}x{h} orientation {o}");
            let variants = crunch_ok(&bytes, ow, oh, &what);
            for v in &variants {
                let img = decode(v).to_rgb8();
                let (vw, vh) = (img.width(), img.height());
                let (l, r, t, b) = (vw / 16, vw - 1 - vw / 16, vh / 16, vh - 1 - vh / 16);
                let corners = [
                    ("top-left", img.get_pixel(l, t)),
                    ("top-right", img.get_pixel(r, t)),
                    ("bottom-right", img.get_pixel(r, b)),
                    ("bottom-left", img.get_pixel(l, b)),
                ];
                for (name, p) in corners {
                    assert_eq!(is_reddish(*p), name == corner, "{what} {:?}: {name} is {p:?}", v.name);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Colour types and formats.

#[test]
fn alpha_becomes_png_and_keeps_transparency() {
    let img = RgbaImage::from_fn(800, 400, |x, _| if x < 400 { Rgba([0, 0, 255, 0]) } else { Rgba([0, 200, 0, 255]) });
    let bytes = encode_as(&DynamicImage::ImageRgba8(img), ImageFormat::Png);
    let variants = crunch_ok(&bytes, 800, 400, "rgba png");
    for v in &variants {
        assert_eq!(v.content_type, "image/png");
        assert_eq!(v.extension(), "png");
        let out = decode(v).to_rgba8();
        assert_eq!(out.get_pixel(1, out.height() / 2)[3], 0, "left half stays transparent");
        let right = out.get_pixel(out.width() - 2, out.height() / 2);
        assert_eq!(right[3], 255);
        assert!(right[1] > 180 && right[0] < 30 && right[2] < 30, "no colour bleeding: {right:?}");
    }
}

#[test]
fn fully_opaque_alpha_becomes_jpeg() {
    let img = RgbaImage::from_pixel(300, 300, Rgba([10, 20, 30, 255]));
    let bytes = encode_as(&DynamicImage::ImageRgba8(img), ImageFormat::Png);
    for v in crunch_ok(&bytes, 300, 300, "opaque rgba") {
        assert_eq!(v.content_type, "image/jpeg");
        assert_eq!(v.extension(), "jpg");
    }
}

#[test]
fn grayscale_png_and_jpeg() {
    let gray = ImageBuffer::from_fn(640, 480, |x, _| Luma([(x % 256) as u8]));
    let png = encode_as(&DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png);
    crunch_ok(&png, 640, 480, "gray png");
    let j = jpeg(gray.as_raw(), 640, 480, jpeg_encoder::ColorType::Luma, None);
    crunch_ok(&j, 640, 480, "gray jpeg");
    let la = ImageBuffer::from_fn(64, 64, |x, _| image::LumaA([100u8, if x < 32 { 0 } else { 255 }]));
    let png = encode_as(&DynamicImage::ImageLumaA8(la), ImageFormat::Png);
    for v in crunch_ok(&png, 64, 64, "gray+alpha png") {
        assert_eq!(v.content_type, "image/png");
    }
}

#[test]
fn cmyk_jpeg_matches_the_image_crates_colours() {
    // Cyan ink on the left, 50% black on the right.
    let (w, h) = (1000u16, 500u16);
    let mut cmyk = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            cmyk.extend_from_slice(if x < w / 2 { &[255, 0, 0, 0] } else { &[0, 0, 0, 128] });
        }
    }
    let bytes = jpeg(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk, None);
    let reference = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let variants = crunch_ok(&bytes, 1000, 500, "cmyk jpeg");
    let large = decode(&variants[2]).to_rgb8();
    for (fx, fy) in [(0.25, 0.5), (0.75, 0.5)] {
        let want = reference.get_pixel((fx * f64::from(w)) as u32, (fy * f64::from(h)) as u32);
        let got = large.get_pixel((fx * f64::from(large.width())) as u32, (fy * f64::from(large.height())) as u32);
        for c in 0..3 {
            assert!(want[c].abs_diff(got[c]) < 16, "at {fx},{fy}: want {want:?} got {got:?}");
        }
    }
    let left = large.get_pixel(10, 10);
    assert!(left[0] < 60 && left[1] > 200 && left[2] > 200, "cyan expected, got {left:?}");
}

/// Pixels tagged with a colour profile other than sRGB come out in sRGB,
/// the profile gone: a Display P3 JPEG and PNG of one colour crunch to its
/// sRGB values, not to the P3 numbers read as sRGB. P3 (200, 60, 40) is
/// sRGB (217.5, 41.6, 22.7) by the published P3-to-sRGB matrix.
#[test]
fn display_p3_images_come_out_in_srgb() {
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let pixels = [200u8, 60, 40].repeat(64 * 64);
    let mut jpeg = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, 95);
    enc.add_icc_profile(&p3).unwrap();
    enc.encode(&pixels, 64, 64, jpeg_encoder::ColorType::Rgb).unwrap();
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    enc.set_icc_profile(p3.clone()).unwrap();
    enc.write_image(&pixels, 64, 64, image::ExtendedColorType::Rgb8).unwrap();
    for (what, bytes) in [("JPEG", jpeg), ("PNG", png)] {
        for v in crunch_ok(&bytes, 64, 64, what) {
            let out = decode(&v).to_rgb8();
            let got = out.get_pixel(out.width() / 2, out.height() / 2).0;
            let near = got.iter().zip([217.5, 41.6, 22.7]).all(|(g, w)| (f64::from(*g) - w).abs() <= 4.0);
            assert!(near, "{what} {:?}: {got:?}", v.name);
        }
    }
}

#[test]
fn sixteen_bit_png() {
    let img = ImageBuffer::from_fn(700, 350, |x, _| Rgb([if x < 350 { 65535u16 } else { 0 }, 0, 20000]));
    let bytes = encode_as(&DynamicImage::ImageRgb16(img), ImageFormat::Png);
    let variants = crunch_ok(&bytes, 700, 350, "16-bit png");
    let out = decode(&variants[2]).to_rgb8();
    let p = out.get_pixel(10, 10);
    assert!(p[0] > 240 && p[1] < 15 && p[2].abs_diff(78) < 12, "{p:?}");
    let rgba16 = ImageBuffer::from_fn(50, 50, |x, _| Rgba([0u16, 0, 65535, if x < 25 { 0 } else { 65535 }]));
    let bytes = encode_as(&DynamicImage::ImageRgba16(rgba16), ImageFormat::Png);
    assert_eq!(crunch_ok(&bytes, 50, 50, "16-bit rgba png")[0].content_type, "image/png");
}

#[test]
fn animated_gif_uses_the_first_frame() {
    let red = RgbaImage::from_pixel(120, 80, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(120, 80, Rgba([0, 0, 255, 255]));
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut bytes);
        enc.encode_frames([Frame::new(red), Frame::new(blue)]).unwrap();
    }
    let variants = crunch_ok(&bytes, 120, 80, "animated gif");
    let p = *decode(&variants[0]).to_rgb8().get_pixel(60, 40);
    assert!(is_reddish(p), "first frame is red, got {p:?}");
}

#[test]
fn webp_lossless_with_alpha() {
    let img = RgbaImage::from_fn(900, 300, |x, _| Rgba([200, 100, 0, if x < 100 { 0 } else { 255 }]));
    let mut bytes = Vec::new();
    WebPEncoder::new_lossless(&mut bytes).write_image(img.as_raw(), 900, 300, image::ExtendedColorType::Rgba8).unwrap();
    let variants = crunch_ok(&bytes, 900, 300, "webp");
    assert_eq!(variants[0].content_type, "image/png");
}

#[test]
fn lossy_webp_is_shrunk_on_load_to_the_large_box() {
    // A lossy WebP made by libwebp itself (through the twins), bigger than
    // the large box: decoded straight to 600 wide, colours intact.
    let big = crunch::crunch_with(
        &jpeg(red_corner(1800, 1200).as_raw(), 1800, 1200, jpeg_encoder::ColorType::Rgb, None),
        &limits(),
        Outputs { webp: true },
    )
    .unwrap();
    let twin = big[2].webp.clone().unwrap();
    assert_eq!(crunch::detect(&twin), Some(Format::Webp));
    let variants = crunch_ok(&twin, 600, 400, "lossy webp");
    assert_eq!(variants[0].content_type, "image/jpeg");
    let large = decode(&variants[2]).to_rgb8();
    assert!(is_reddish(*large.get_pixel(10, 10)), "red corner kept: {:?}", large.get_pixel(10, 10));
    assert!(!is_reddish(*large.get_pixel(590, 390)));
}

#[test]
fn webp_twins_match_their_variants_and_keep_alpha() {
    let opaque = jpeg(red_corner(900, 600).as_raw(), 900, 600, jpeg_encoder::ColorType::Rgb, None);
    let seethrough = RgbaImage::from_fn(900, 600, |x, _| Rgba([20, 120, 220, if x < 450 { 0 } else { 255 }]));
    let seethrough = encode_as(&DynamicImage::ImageRgba8(seethrough), ImageFormat::Png);
    for (what, bytes, alpha) in [("opaque", opaque, false), ("transparent", seethrough, true)] {
        let plain = crunch::crunch(&bytes, &limits()).unwrap();
        assert!(plain.iter().all(|v| v.webp.is_none()), "{what}: twins only when asked");
        let variants = crunch::crunch_with(&bytes, &limits(), Outputs { webp: true }).unwrap();
        check_variants(&variants, 900, 600, what);
        for v in &variants {
            let twin = v.webp.as_deref().unwrap_or_else(|| panic!("{what} {:?}: no twin", v.name));
            // A plain lossy WebP: RIFF, then VP8 (or VP8X + ALPH + VP8 with
            // alpha), and no EXIF/XMP/ICC chunk.
            assert_eq!((&twin[..4], &twin[8..12]), (&b"RIFF"[..], &b"WEBP"[..]), "{what}");
            let chunks = riff_chunks(twin);
            assert!(chunks.iter().any(|c| c == b"VP8 "), "{what}: lossy, got {chunks:?}");
            assert_eq!(chunks.iter().any(|c| c == b"ALPH"), alpha, "{what}: alpha chunk");
            for bad in [b"EXIF", b"XMP ", b"ICCP"] {
                assert!(!chunks.iter().any(|c| c == bad), "{what}: metadata chunk in twin");
            }
            let img = image::load_from_memory_with_format(twin, ImageFormat::WebP).unwrap();
            assert_eq!((img.width(), img.height()), (v.width, v.height), "{what} {:?}", v.name);
            if alpha {
                let rgba = img.to_rgba8();
                let (w, h) = (rgba.width(), rgba.height());
                assert!(rgba.get_pixel(w / 8, h / 2)[3] < 16, "{what}: left half stays transparent");
                assert!(rgba.get_pixel(w * 7 / 8, h / 2)[3] > 240, "{what}: right half stays opaque");
            } else {
                assert!(is_reddish(*img.to_rgb8().get_pixel(2, 2)), "{what}: colours kept");
            }
        }
    }
}

/// The chunk ids of a RIFF file, in order.
fn riff_chunks(bytes: &[u8]) -> Vec<[u8; 4]> {
    let mut ids = Vec::new();
    let mut i = 12;
    while i + 8 <= bytes.len() {
        ids.push(bytes[i..i + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
        i += 8 + len + len % 2;
    }
    ids
}

#[test]
fn jpeg_with_data_after_its_end_marker_is_fine() {
    let mut bytes = jpeg(red_corner(640, 480).as_raw(), 640, 480, jpeg_encoder::ColorType::Rgb, None);
    bytes.extend_from_slice(b"trailing bytes some cameras and editors append");
    crunch_ok(&bytes, 640, 480, "jpeg + trailer");
}

#[test]
fn tiny_images_are_never_upscaled() {
    let one = encode_as(&DynamicImage::new_rgb8(1, 1), ImageFormat::Png);
    for v in crunch_ok(&one, 1, 1, "1x1 png") {
        assert_eq!((v.width, v.height), (1, 1));
    }
    let j = jpeg(&[128; 50 * 30 * 3], 50, 30, jpeg_encoder::ColorType::Rgb, None);
    for v in crunch_ok(&j, 50, 30, "50x30 jpeg") {
        assert_eq!((v.width, v.height), (50, 30));
    }
    let j = jpeg(&[9, 9, 9], 1, 1, jpeg_encoder::ColorType::Rgb, None);
    crunch_ok(&j, 1, 1, "1x1 jpeg");
}

#[test]
fn long_thin_images_keep_at_least_one_pixel() {
    let bytes = encode_as(&DynamicImage::new_rgb8(3000, 2), ImageFormat::Png);
    let v = crunch_ok(&bytes, 3000, 2, "3000x2");
    assert_eq!((v[1].width, v[1].height), (100, 1));
}

// ---------------------------------------------------------------------------
// Hostile and broken input.

#[test]
fn header_bombs_are_refused_before_allocating() {
    // PNG: a valid 1×1 file whose IHDR claims 100000×100000.
    let mut png = encode_as(&DynamicImage::new_rgb8(1, 1), ImageFormat::Png);
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());

    // JPEG: a valid 8×8 file whose SOF claims 65000×65000.
    let mut jpg = jpeg(&[0; 8 * 8 * 3], 8, 8, jpeg_encoder::ColorType::Rgb, None);
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 7].copy_from_slice(&65000u16.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&65000u16.to_be_bytes());

    // GIF: a logical screen and first frame of 65535×65535.
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif).encode_frames([Frame::new(RgbaImage::new(1, 1))]).unwrap();
    gif[6..10].copy_from_slice(&[0xFF; 4]);

    for (what, bytes) in [("png", png), ("jpeg", jpg), ("gif", gif)] {
        let (result, largest) = largest_allocation(|| crunch::crunch(&bytes, &limits()));
        let err = result.err().unwrap_or_else(|| panic!("{what}: bomb accepted"));
        assert_eq!(err.reason(), "too_many_pixels", "{what}: {err}");
        assert!(largest < 16 << 20, "{what}: allocated {largest} bytes before refusing");
    }
}

#[test]
fn the_pixel_limit_is_configurable() {
    let bytes = encode_as(&DynamicImage::new_rgb8(100, 100), ImageFormat::Png);
    let err = crunch::crunch(&bytes, &Limits { max_pixels: 9_999 }).unwrap_err();
    assert!(matches!(err, CrunchError::TooManyPixels { width: 100, height: 100, .. }), "{err}");
    assert!(err.to_string().contains("100x100"), "{err}");
    assert!(crunch::crunch(&bytes, &Limits { max_pixels: 10_000 }).is_ok());
}

#[test]
fn truncated_files_of_each_format() {
    let photo = red_corner(640, 480);
    let rgba = DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(photo.clone()).to_rgba8());
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp).write_image(photo.as_raw(), 640, 480, image::ExtendedColorType::Rgb8).unwrap();
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif).encode_frames([Frame::new(rgba.to_rgba8())]).unwrap();
    let mut progressive = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut progressive, 90);
    enc.set_progressive(true);
    enc.encode(photo.as_raw(), 640, 480, jpeg_encoder::ColorType::Rgb).unwrap();
    let inputs = [
        ("jpeg", jpeg(photo.as_raw(), 640, 480, jpeg_encoder::ColorType::Rgb, None)),
        ("progressive jpeg", progressive),
        ("png", encode_as(&rgba, ImageFormat::Png)),
        ("gif", gif),
        ("webp", webp),
    ];
    for (what, bytes) in inputs {
        assert_eq!(reason(&bytes), "ok", "{what} whole");
        for cut in [bytes.len() / 2, bytes.len() * 3 / 4, 40] {
            assert_eq!(reason(&bytes[..cut]), "truncated", "{what} cut at {cut} of {}", bytes.len());
        }
    }
}

#[test]
fn random_bytes_and_empty_input() {
    assert_eq!(reason(b""), "empty");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert_eq!(reason(&random), "unsupported_format");
    assert_eq!(reason(b"hello, world"), "unsupported_format");
    // Right magic, garbage after it: refused, never a success or a panic.
    for magic in [&b"\xFF\xD8\xFF\xE0"[..], b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x10\x00\x00WEBPVP8 "] {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&random);
        let r = reason(&bytes);
        // (Noise where GIF's screen size sits can read as a huge image.)
        assert!(["decode_failed", "truncated", "too_many_pixels"].contains(&r), "{magic:?} + noise gave {r}");
    }
    let err = crunch::crunch(b"", &limits()).unwrap_err();
    assert!(!err.to_string().is_empty());
}

// ---------------------------------------------------------------------------
// The real photos.

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CRUNCHBOX_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no corpus at {} (set CRUNCHBOX_CORPUS)", dir.display());
        None
    }
}

fn corpus_files(dir: &PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("jpg" | "jpeg" | "png" | "gif" | "webp")))
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_photos_crunch() {
    let Some(dir) = corpus_dir() else { return };
    let files = corpus_files(&dir);
    assert!(!files.is_empty(), "corpus at {} has no images", dir.display());
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let what = path.display().to_string();
        // The reference size, with orientation applied, from the image crate.
        let mut decoder =
            image::ImageReader::new(Cursor::new(&bytes)).with_guessed_format().unwrap().into_decoder().unwrap();
        let orientation = image::ImageDecoder::orientation(&mut decoder).unwrap();
        let (mut w, mut h) = image::ImageDecoder::dimensions(&decoder);
        use image::metadata::Orientation::*;
        if matches!(orientation, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH) {
            std::mem::swap(&mut w, &mut h);
        }
        let variants = crunch_ok(&bytes, w, h, &what);
        // The large variant looks like the original shrunk: compare its mean
        // colour with a reference resize by the image crate, both composited
        // on white (under a transparent pixel the RGB is anyone's choice;
        // what is seen is the composite).
        let reference = on_white(&image::load_from_memory(&bytes).unwrap().thumbnail(64, 64));
        let ours = on_white(&decode(&variants[2]).thumbnail(64, 64));
        let mean = |img: &image::RgbImage| {
            let n = f64::from(img.width() * img.height());
            let mut m = [0f64; 3];
            for p in img.pixels() {
                for c in 0..3 {
                    m[c] += f64::from(p[c]) / n;
                }
            }
            m
        };
        let (a, b) = (mean(&reference), mean(&ours));
        for c in 0..3 {
            assert!((a[c] - b[c]).abs() < 12.0, "{what}: mean colour {a:?} vs {b:?}");
        }
    }
}

/// The image as it looks over a white page.
fn on_white(img: &DynamicImage) -> image::RgbImage {
    let rgba = img.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let alpha = f32::from(p[3]) / 255.0;
        image::Rgb(std::array::from_fn(|c| (f32::from(p[c]) * alpha + 255.0 * (1.0 - alpha)).round() as u8))
    })
}

// ---------------------------------------------------------------------------
// `crunchbox crunch`.

#[test]
fn cli_writes_variants_and_reports_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("photo.jpg");
    std::fs::write(&good, jpeg(red_corner(800, 600).as_raw(), 800, 600, jpeg_encoder::ColorType::Rgb, None)).unwrap();
    let clear = tmp.path().join("clear.png");
    let img = RgbaImage::from_fn(30, 20, |x, _| Rgba([1, 2, 3, if x < 5 { 0 } else { 255 }]));
    std::fs::write(&clear, encode_as(&DynamicImage::ImageRgba8(img), ImageFormat::Png)).unwrap();
    let bad = tmp.path().join("notes.txt");
    std::fs::write(&bad, b"not an image").unwrap();
    let missing = tmp.path().join("missing.png");
    let out = tmp.path().join("out");

    let run = Command::new(env!("CARGO_BIN_EXE_crunchbox"))
        .arg("crunch")
        .args([&good, &bad, &missing, &clear])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "bad inputs must fail the command\n{stdout}\n{stderr}");
    assert!(stderr.contains("notes.txt") && stderr.contains("not a JPEG, PNG, GIF or WebP"), "{stderr}");
    assert!(stderr.contains("missing.png"), "{stderr}");
    assert!(stdout.contains("photo.jpg") && stdout.contains("clear.png"), "{stdout}");

    for (name, w, h) in [("photo.jpg", 200, 150), ("photo_small.jpg", 100, 75), ("photo_large.jpg", 600, 450)] {
        let img = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
    }
    for name in ["clear.png", "clear_small.png", "clear_large.png"] {
        let img = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (30, 20), "{name}");
    }
    assert!(!out.join("notes.jpg").exists());

    let ok =
        Command::new(env!("CARGO_BIN_EXE_crunchbox")).arg("crunch").arg(&good).arg("--out").arg(&out).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn cli_applies_the_pixel_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.png");
    std::fs::write(&file, encode_as(&DynamicImage::new_rgb8(100, 100), ImageFormat::Png)).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_crunchbox"))
        .arg("crunch")
        .arg(&file)
        .args(["--max-pixels", "100", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("too_many_pixels"));
}
