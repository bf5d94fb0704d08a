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
    let mut dec = Decompress::builder()
        .with_err(error_manager())
        .with_markers(&[Marker::APP(1)])
        .from_mem(bytes)
        .map_err(|_| CrunchError::Truncated("JPEG"))?;
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
    let eighths = scale_eighths(width.max(height), want);
    dec.scale(eighths);
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
    Ok(Outcome::Decoded(Decoded { raster, orientation }))
}

/// Width and height from the first start-of-frame marker, walking the
/// marker segments by their lengths; `None` when there is none to find.
fn frame_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while let (Some(&0xFF), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) {
        match marker {
            // Fill bytes before a marker.
            0xFF => i += 1,
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => i += 2,
            // Start of scan or end of image: no frame header before it.
            0xD9 | 0xDA => return None,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let height = u16::from_be_bytes([*bytes.get(i + 5)?, *bytes.get(i + 6)?]);
                let width = u16::from_be_bytes([*bytes.get(i + 7)?, *bytes.get(i + 8)?]);
                return Some((u32::from(width), u32::from(height)));
            }
            _ => {
                let len = u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]);
                i += 2 + usize::from(len);
            }
        }
    }
    None
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
    use super::{frame_size, scale_eighths};

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
