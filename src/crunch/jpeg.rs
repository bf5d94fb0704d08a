//! The fast JPEG path: libjpeg-turbo's decoder (as built by `mozjpeg-sys`
//! from its C source with `cc`; no nasm, no system library) with DCT-domain
//! scaling.
//!
//! A 12 MP photo becomes a 600 px variant, so decoding it at full size is
//! wasted work. libjpeg scales in the inverse DCT by any N/8: the decode
//! lands at the smallest size whose longer side still reaches the box, so
//! the resize step has little (often nothing) left to filter. This is
//! libvips' shrink-on-load, with finer steps than its 1/2, 1/4, 1/8.
//!
//! A progressive JPEG usually ends in scans that add only the last bit of
//! every AC coefficient (successive-approximation refinement, `Al = 0`):
//! a third of a high-quality file's bytes and of its Huffman decoding, the
//! decode's dominant cost. In a finely quantized file (quality ~95 and up)
//! decoded at 1/4 scale or smaller, those bits move the decode by PSNR
//! 52–54 dB (the 600 px variant of the corpus's 8.5 MB progressive photo by
//! 52.7 dB, well below what the q85 re-encode changes), so they are not
//! decoded there; the rest of the file is still walked, so a cut file is
//! refused all the same.
//!
//! libjpeg reports a fatal error by unwinding out of the C code (the
//! `unwinding` feature compiles it with `-fexceptions`); a warning that the
//! data ran out is turned into one too, so a cut file is refused instead of
//! being decoded with a grey bottom.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Decompress, Marker};
use mozjpeg_sys as sys;

use super::CrunchError;
use super::decode::Decoded;
use super::raster::{Layout, Raster};

/// What the fast path made of the input.
pub(crate) enum Outcome {
    Decoded(Decoded),
    /// libjpeg refused something that is not truncation (arithmetic coding,
    /// 12-bit samples, a quirk it is strict about) or the image is CMYK: let
    /// the `image` crate's decoder have a go and give the verdict.
    Fallback,
}

/// The unwind payload of the EOF warning.
struct RanOut;

/// Decodes `bytes` at the smallest DCT scale whose longer side still reaches
/// `want` pixels (or at full size if the image is smaller than that).
pub(crate) fn decode(bytes: &[u8], max_pixels: u64, want: u32) -> Result<Outcome, CrunchError> {
    // The frame header is checked before libjpeg sees the file: libjpeg
    // reads on to the first scan before it reports a size, and a bomb that
    // has no scan would only be "corrupt" instead of "too many pixels".
    if let Some((width, height)) = frame_size(bytes)
        && let Some(e) = CrunchError::too_many_pixels(width, height, max_pixels)
    {
        return Err(e);
    }
    match catch_unwind(AssertUnwindSafe(|| decode_unwinding(bytes, max_pixels, want))) {
        Ok(result) => result,
        Err(payload) if payload.is::<RanOut>() => Err(CrunchError::Truncated("JPEG")),
        // A fatal libjpeg error: corrupt or unsupported. The generic decoder
        // gives the verdict (and a better message for what it refuses).
        Err(_) => Ok(Outcome::Fallback),
    }
}

fn decode_unwinding(bytes: &[u8], max_pixels: u64, want: u32) -> Result<Outcome, CrunchError> {
    // Only APP1 is kept: it holds the EXIF orientation.
    let dec = dec_for(bytes)?;
    let (width, height) = (dims(dec.width()), dims(dec.height()));
    if let Some(e) = CrunchError::too_many_pixels(width, height, max_pixels) {
        return Err(e);
    }
    let layout = match dec.color_space() {
        ColorSpace::JCS_GRAYSCALE => Layout::L,
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => Layout::Rgb,
        // CMYK/YCCK need Adobe's inversion rules: the generic path has them.
        _ => return Ok(Outcome::Fallback),
    };
    let orientation = dec
        .markers()
        .filter(|m| m.marker == Marker::APP(1))
        .find_map(|m| m.data.strip_prefix(b"Exif\0\0"))
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let icc = icc_profile(dec.markers().filter(|m| m.marker == Marker::APP(2)).map(|m| m.data));
    let tags = Tags { orientation, icc };
    let eighths = scale_eighths(width.max(height), want);
    if let Some(cut) = last_bits_cut(bytes, eighths) {
        // The same file without its trailing last-bit scans: what libjpeg
        // decodes from it is what it would have decoded up to them.
        let mut trimmed = Vec::with_capacity(cut + 2);
        trimmed.extend_from_slice(&bytes[..cut]);
        trimmed.extend_from_slice(&[0xFF, 0xD9]);
        return decode_started(dec_for(&trimmed)?, layout, tags, eighths, false);
    }
    decode_started(dec, layout, tags, eighths, true)
}

/// What the decode carries besides pixels: the EXIF orientation (APP1) and
/// the ICC profile (APP2).
struct Tags {
    orientation: Orientation,
    icc: Option<Vec<u8>>,
}

/// An ICC profile from its APP2 segments (`ICC_PROFILE\0`, sequence number,
/// count, then the piece), joined in sequence order; `None` without one or
/// when pieces are missing.
fn icc_profile<'a>(segments: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut pieces: Vec<(u8, u8, &[u8])> = segments
        .filter_map(|d| d.strip_prefix(b"ICC_PROFILE\0"))
        .filter_map(|d| Some((*d.first()?, *d.get(1)?, d.get(2..)?)))
        .collect();
    let count = pieces.first()?.1;
    pieces.sort_by_key(|p| p.0);
    let whole = pieces.len() == usize::from(count) && pieces.iter().enumerate().all(|(i, p)| usize::from(p.0) == i + 1);
    whole.then(|| pieces.iter().flat_map(|p| p.2.iter().copied()).collect())
}

/// The DCT scale (in eighths) at or below which trailing last-bit
/// refinement scans are left undecoded.
const MAX_EIGHTHS_WITHOUT_LAST_BITS: u8 = 2;

/// Where to cut `bytes` (decoded at `eighths`/8) to leave out its trailing
/// last-bit scans, if they are to be left out at all.
fn last_bits_cut(bytes: &[u8], eighths: u8) -> Option<usize> {
    if eighths > MAX_EIGHTHS_WITHOUT_LAST_BITS || !finely_quantized(bytes) {
        return None;
    }
    final_refinements(bytes)
}

/// The largest mean quantizer step of the first nine AC coefficients (in
/// zigzag order) of the luma table for which the last bits are left out.
/// A last bit is worth one step: at steps of about 1 (quality ~95 and up)
/// leaving it out changes the decode by PSNR 52–54 dB on the corpus; at
/// steps of about 4 (quality ~85) by 45–48 dB, too close to what the re-encode
/// itself costs, so those files are decoded whole.
const MAX_MEAN_STEP_WITHOUT_LAST_BITS: u32 = 2;

/// Whether the first component's quantization table is fine enough (see
/// [`MAX_MEAN_STEP_WITHOUT_LAST_BITS`]); reads the segments before the first
/// scan. `false` whenever something is missing or malformed.
fn finely_quantized(bytes: &[u8]) -> bool {
    let mut tables: [Option<u32>; 4] = [None; 4];
    let mut luma_table = None;
    for segment in segments(bytes).take_while(|s| !matches!(s.marker, 0xD9 | 0xDA)) {
        let Some(body) = segment.body else { return false };
        match segment.marker {
            0xDB => {
                // One or more tables: Pq|Tq, then 64 steps of 1 or 2 bytes.
                let mut t = body;
                while let Some((&pq_tq, rest)) = t.split_first() {
                    let wide = pq_tq >> 4 != 0;
                    let size = if wide { 128 } else { 64 };
                    let Some(steps) = rest.get(..size) else { return false };
                    let step = |k: usize| {
                        if wide {
                            u32::from(u16::from_be_bytes([steps[2 * k], steps[2 * k + 1]]))
                        } else {
                            u32::from(steps[k])
                        }
                    };
                    if let Some(slot) = tables.get_mut(usize::from(pq_tq & 0x0F)) {
                        *slot = Some((1..10).map(step).sum::<u32>());
                    }
                    t = &rest[size..];
                }
            }
            // P, Y, X, Nf, then per component C, H|V, Tq.
            marker if is_frame_header(marker) => luma_table = body.get(8).copied(),
            _ => {}
        }
    }
    let sum = luma_table.and_then(|t| tables.get(usize::from(t)).copied().flatten());
    sum.is_some_and(|sum| sum <= 9 * MAX_MEAN_STEP_WITHOUT_LAST_BITS)
}

/// A decompressor over `bytes` with the crate's error manager, keeping APP1
/// and APP2.
fn dec_for(bytes: &[u8]) -> Result<Decompress<&[u8]>, CrunchError> {
    Decompress::builder()
        .with_err(error_manager())
        .with_markers(&[Marker::APP(1), Marker::APP(2)])
        .from_mem(bytes)
        .map_err(|_| CrunchError::Truncated("JPEG"))
}

/// Decodes at `eighths`/8. `smoothing`: libjpeg's block smoothing, which
/// guesses missing low-frequency bits from the neighbours' DC; off for a
/// trimmed file, whose coefficients lack only their last bit.
fn decode_started(
    mut dec: Decompress<&[u8]>,
    layout: Layout,
    tags: Tags,
    eighths: u8,
    smoothing: bool,
) -> Result<Outcome, CrunchError> {
    dec.scale(eighths);
    dec.do_block_smoothing(smoothing);
    if eighths < 8 {
        // Interpolating chroma upsampling sharpens detail the downscale
        // then removes; the merged upsampler is the cheaper equivalent.
        dec.do_fancy_upsampling(false);
    }
    let mut started = match layout {
        Layout::L => dec.grayscale(),
        _ => dec.rgb(),
    }
    .map_err(|_| CrunchError::Truncated("JPEG"))?;
    let (out_w, out_h) = (dims(started.width()), dims(started.height()));
    let data: Vec<u8> = started.read_scanlines().map_err(|_| CrunchError::Truncated("JPEG"))?;
    // Trailing data after the last scan is not our business; what matters
    // is that every row arrived, checked above and by the EOF warning.
    drop(started);
    let raster = Raster { width: out_w, height: out_h, layout, data };
    if raster.data.len() != raster.width as usize * raster.height as usize * layout.channels() {
        return Err(CrunchError::Truncated("JPEG"));
    }
    Ok(Outcome::Decoded(Decoded { raster, orientation: tags.orientation, icc: tags.icc }))
}

/// Where the trailing run of last-bit AC refinement scans (`Ss > 0`,
/// `Ah > 0`, `Al = 0`) of a progressive JPEG starts: the offset of the
/// first one's SOS marker. Walks every segment and the entropy-coded data
/// to the EOI, so `None` also when the file is cut short or malformed (then
/// libjpeg, reading it whole, says what is wrong) or has no such scans.
fn final_refinements(bytes: &[u8]) -> Option<usize> {
    let mut run: Option<usize> = None;
    for segment in segments(bytes) {
        match segment.marker {
            0xD9 => return run,
            0xDA => {
                // SOS: Ns, Ns component selectors, then Ss, Se, Ah|Al.
                let header = segment.body?;
                let ns = usize::from(*header.first()?);
                let (&ss, &ah_al) = (header.get(1 + 2 * ns)?, header.get(3 + 2 * ns)?);
                let last_bit = ss > 0 && ah_al >> 4 > 0 && ah_al & 0x0F == 0;
                run = if last_bit { run.or(Some(segment.start)) } else { None };
            }
            _ => {
                segment.body?;
            }
        }
    }
    None
}

/// One marker of a JPEG and its segment.
struct Segment<'a> {
    marker: u8,
    /// Where its `0xFF` is.
    start: usize,
    /// What its length field says follows; `None` when the file ends first
    /// (or the length is less than its own two bytes). Empty for markers
    /// that stand alone.
    body: Option<&'a [u8]>,
}

/// The markers of `bytes` after SOI, in order, up to and including EOI,
/// stepping over fill bytes, each segment by its length and each scan's
/// entropy-coded data (only when asked for the marker after it). Ends
/// early where the file is cut short or something other than a marker
/// stands where one must.
fn segments(bytes: &[u8]) -> impl Iterator<Item = Segment<'_>> {
    let mut i = 2;
    let mut in_scan = false;
    let mut ended = false;
    std::iter::from_fn(move || {
        if ended {
            return None;
        }
        if std::mem::take(&mut in_scan) {
            // Entropy-coded data runs to the next marker that is not a
            // stuffed 0xFF00 or a restart marker.
            loop {
                i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
                match bytes.get(i + 1)? {
                    0x00 | 0xD0..=0xD7 => i += 2,
                    _ => break,
                }
            }
        }
        loop {
            let (&ff, &marker) = (bytes.get(i)?, bytes.get(i + 1)?);
            if ff != 0xFF {
                return None;
            }
            let start = i;
            match marker {
                // Fill bytes before a marker.
                0xFF => i += 1,
                // Standalone markers carry no length.
                0x01 | 0xD0..=0xD7 | 0xD9 => {
                    i += 2;
                    ended = marker == 0xD9;
                    return Some(Segment { marker, start, body: Some(&[]) });
                }
                _ => {
                    let len = usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]));
                    i += 2 + len;
                    in_scan = marker == 0xDA;
                    return Some(Segment { marker, start, body: bytes.get(start + 4..i) });
                }
            }
        }
    })
}

/// SOF0–SOF15, leaving out the DHT, JPG and DAC markers in that range.
fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Width and height from the first start-of-frame marker, walking the
/// marker segments by their lengths; `None` when there is none to find.
fn frame_size(bytes: &[u8]) -> Option<(u32, u32)> {
    // Start of scan or end of image: no frame header before it.
    let frame = segments(bytes).take_while(|s| !matches!(s.marker, 0xD9 | 0xDA)).find(|s| is_frame_header(s.marker))?;
    let i = frame.start;
    let height = u16::from_be_bytes([*bytes.get(i + 5)?, *bytes.get(i + 6)?]);
    let width = u16::from_be_bytes([*bytes.get(i + 7)?, *bytes.get(i + 8)?]);
    Some((u32::from(width), u32::from(height)))
}

/// The N of the N/8 scale: the smallest whose scaled longer side (rounded
/// up, as libjpeg does) still reaches `want`.
fn scale_eighths(long_side: u32, want: u32) -> u8 {
    (1u8..8).find(|&n| (u64::from(long_side) * u64::from(n)).div_ceil(8) >= u64::from(want)).unwrap_or(8)
}

fn dims(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// libjpeg's standard error manager with two changes: a fatal error unwinds
/// (libjpeg would `exit()`), and so does the warning that the data ran out.
fn error_manager() -> sys::jpeg_error_mgr {
    // SAFETY: `jpeg_error_mgr` is a plain C struct for which all-zero is a
    // valid (empty) value, and `jpeg_std_error` fills every field.
    let mut err: sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: `err` is a valid, exclusive reference for the call.
    unsafe { sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(fatal);
    err.emit_message = Some(message);
    err
}

/// Unwinds out of libjpeg; `decode` catches it. The C code is compiled
/// with unwind tables for exactly this.
extern "C-unwind" fn fatal(_cinfo: &mut sys::jpeg_common_struct) {
    resume_unwind(Box::new(()));
}

/// Warnings (level -1) are ignored as libvips ignores them, except running
/// out of data; trace messages (level ≥ 0) are dropped.
extern "C-unwind" fn message(cinfo: &mut sys::jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg calls this with `cinfo.err` pointing at the error
    // manager installed above, alive for the whole decode.
    let code = unsafe { cinfo.err.as_ref() }.map_or(0, |e| e.msg_code);
    if level < 0 && code == sys::JWRN_JPEG_EOF as c_int {
        resume_unwind(Box::new(RanOut));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SOS segment for one component with the given spectral band and
    /// successive-approximation bits, then `data` as its entropy-coded part.
    fn scan(ss: u8, se: u8, ah: u8, al: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, ss, se, (ah << 4) | al];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn the_trailing_last_bit_scans_are_found_and_nothing_else() {
        let head = [0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x00, 0x10, 0x00, 0x10, 0x01, 0x01, 0x11, 0x00];
        let dc = scan(0, 0, 0, 1, &[0x12, 0xFF, 0x00, 0x34]);
        let ac = scan(1, 63, 0, 1, &[0x56, 0xFF, 0xD0, 0x78]);
        let dc_refine = scan(0, 0, 1, 0, &[0x9A]);
        let ac_refine = scan(1, 63, 1, 0, &[0xBC, 0xFF, 0x00]);
        let eoi = [0xFF, 0xD9];
        let file = |parts: &[&[u8]]| parts.concat();

        let whole = file(&[&head, &dc, &ac, &dc_refine, &ac_refine, &ac_refine, &eoi]);
        let at = head.len() + dc.len() + ac.len() + dc_refine.len();
        assert_eq!(final_refinements(&whole), Some(at));
        assert_eq!(&whole[at..at + 2], [0xFF, 0xDA]);
        // A refinement that is not last, or one that is not the last bit.
        let middle = file(&[&head, &dc, &ac_refine, &ac, &eoi]);
        assert_eq!(final_refinements(&middle), None);
        let not_last_bit = file(&[&head, &dc, &ac, &scan(1, 63, 2, 1, &[0x01]), &eoi]);
        assert_eq!(final_refinements(&not_last_bit), None);
        // Baseline, and every cut of a file that has them: nothing to skip.
        let baseline = file(&[&head, &scan(0, 63, 0, 0, &[0x01]), &eoi]);
        assert_eq!(final_refinements(&baseline), None);
        for end in 0..whole.len() - 1 {
            assert_eq!(final_refinements(&whole[..end]), None, "cut at {end}");
        }
    }

    #[test]
    fn only_a_fine_luma_table_counts_as_finely_quantized() {
        let file = |luma_steps: u8, luma_table: u8| {
            let mut v = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x84, 0x00];
            v.extend(std::iter::repeat_n(luma_steps, 64));
            v.push(0x01);
            v.extend(std::iter::repeat_n(9, 64));
            v.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x00, 0x10, 0x00, 0x10, 0x01, 0x01, 0x11, luma_table]);
            v.extend_from_slice(&[0xFF, 0xD9]);
            v
        };
        assert!(finely_quantized(&file(1, 0)));
        assert!(finely_quantized(&file(2, 0)));
        assert!(!finely_quantized(&file(3, 0)));
        assert!(!finely_quantized(&file(1, 1)), "the frame's first component uses table 1");
        assert!(!finely_quantized(&file(1, 2)), "no table 2");
        let cut = file(1, 0);
        assert!(!finely_quantized(&cut[..40]));
    }

    /// The corpus's finely quantized progressive photos at a scale of 1/4
    /// or less: decoded without their last-bit scans, they stay within
    /// 50 dB PSNR of the whole decode (measured: 52 dB and up).
    #[test]
    fn leaving_out_the_last_bits_keeps_the_picture() {
        let dir = std::env::var_os("CRUNCHBOX_CORPUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: no corpus at {} (set CRUNCHBOX_CORPUS)", dir.display());
            return;
        };
        let mut checked = 0;
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            if path.extension().and_then(|e| e.to_str()) != Some("jpg") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let Some((w, h)) = frame_size(&bytes) else { continue };
            let eighths = scale_eighths(w.max(h), 600);
            if last_bits_cut(&bytes, eighths).is_none() {
                continue;
            }
            let Ok(Outcome::Decoded(trimmed)) = decode(&bytes, u64::MAX, 600) else { panic!("{path:?}") };
            let whole = dec_for(&bytes).unwrap();
            let Ok(Outcome::Decoded(full)) = decode_started(
                whole,
                Layout::Rgb,
                Tags { orientation: Orientation::NoTransforms, icc: None },
                eighths,
                true,
            ) else {
                panic!("{path:?}")
            };
            let (a, b) = (&trimmed.raster.data, &full.raster.data);
            assert_eq!(a.len(), b.len(), "{path:?}");
            let mse =
                a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64;
            let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10();
            eprintln!("{}: {psnr:.1} dB", path.display());
            assert!(psnr >= 50.0, "{path:?}: {psnr:.1} dB");
            checked += 1;
        }
        assert!(checked > 0, "no progressive photo in {} to check", dir.display());
    }

    #[test]
    fn frame_size_is_read_past_other_segments() {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
        j.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x01, 0x2C, 0x02, 0x58, 0x01, 0x01, 0x11, 0x00]);
        assert_eq!(frame_size(&j), Some((600, 300)));
        assert_eq!(frame_size(&j[..10]), None);
        assert_eq!(frame_size(&[0xFF, 0xD8, 0xFF, 0xD9]), None);
    }

    #[test]
    fn picks_the_smallest_scale_that_still_covers_the_box() {
        assert_eq!(scale_eighths(4352, 600), 2); // 1088
        assert_eq!(scale_eighths(1600, 600), 3); // exactly 600
        assert_eq!(scale_eighths(4800, 600), 1); // exactly 600
        assert_eq!(scale_eighths(4790, 600), 2); // 599 would fall short
        assert_eq!(scale_eighths(700, 600), 7); // 613
        assert_eq!(scale_eighths(600, 600), 8);
        assert_eq!(scale_eighths(100, 600), 8);
    }
}
