//! WebP through libwebp (C, built from source by `libwebp-sys`; no system
//! library at build or run time): decoded scaled on load, and encoded for
//! the WebP twins.
//!
//! The pure-Rust decoder has no scaled decode, so a 4096² WebP was decoded
//! whole (320 ms) to make a 600 px variant. libwebp rescales row by row as it
//! decodes, straight to the size asked for, as libvips' shrink-on-load does.
//! Every call into C is in this file, behind safe functions that hand C only
//! buffers they own, sized as C is told.

use std::ffi::c_int;

use libwebp_sys as ffi;

use super::CrunchError;
use super::raster::{Layout, Raster};
use super::resize::fit;

/// Quality of the lossy WebP twins (SPEC "Content negotiation").
pub const WEBP_QUALITY: f32 = 80.0;

/// libwebp's effort/speed trade-off (0 fastest … 6 smallest). Measured
/// with cwebp on three 600 px photos, one core: method 4 (its default)
/// 17 ms and 39.2 KB each, 2: 8 ms and 40.8 KB, 1: 6 ms and 48.1 KB. The
/// twins are on the crunch's critical path; 2 halves their cost for 4 %
/// more bytes.
const WEBP_METHOD: c_int = 2;

/// The twins carry no loop (deblocking) filter. Measured with cwebp on the
/// corpus's 600 px variants, one core: 14 % less encode time (0.281 vs
/// 0.327 s for all of them), the same bytes, and decoded PSNR against the
/// source 39.94 vs 39.99 dB (at most 0.22 dB lower on any one image): at
/// quality 80 the filter levels the photo preset picks are low, and
/// browsers decoding the twin skip the filter pass too.
const WEBP_FILTER_STRENGTH: c_int = 0;

/// What a WebP's header says, read without decoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub animated: bool,
}

/// Reads the header. A file that ends inside it is truncated; one libwebp
/// cannot parse is refused.
pub(crate) fn header(bytes: &[u8]) -> Result<Header, CrunchError> {
    // SAFETY: an all-zero `WebPBitstreamFeatures` is a valid value (plain
    // integers); libwebp only writes into it.
    let mut f: ffi::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes and `f` is a
    // valid, exclusive out-pointer for the duration of the call.
    let status = unsafe { ffi::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut f) };
    check(status)?;
    let width = u32::try_from(f.width).unwrap_or(0);
    let height = u32::try_from(f.height).unwrap_or(0);
    Ok(Header { width, height, has_alpha: f.has_alpha != 0, animated: f.has_animation != 0 })
}

/// Decodes a still WebP fitted inside a `want` box (or at full size when it
/// already fits). The header must have passed the pixel limit.
///
/// An image with alpha is decoded to twice the box: libwebp rescales
/// colour without weighting it by alpha (libvips' shrink-on-load has the
/// same flaw), so invisible pixels' colour bleeds into a one-pixel fringe
/// at the decoded size; the premultiplied Lanczos step that follows halves
/// that fringe away. Decoding whole instead would write a full-size RGBA
/// buffer for nothing.
pub(crate) fn decode(bytes: &[u8], header: Header, want: u32) -> Result<Raster, CrunchError> {
    let target = if header.has_alpha { want.saturating_mul(2) } else { want };
    let (width, height) = fit(header.width, header.height, target);
    let shrinking = (width, height) != (header.width, header.height);
    let layout = if header.has_alpha { Layout::Rgba } else { Layout::Rgb };
    let stride = width as usize * layout.channels();
    let mut data = vec![0u8; stride * height as usize];

    let mut config = ffi::WebPDecoderConfig::new().map_err(|()| failed("libwebp version mismatch"))?;
    config.options.use_threads = 0;
    if shrinking {
        config.options.use_scaling = 1;
        config.options.scaled_width = to_c(width)?;
        config.options.scaled_height = to_c(height)?;
        // libwebp itself then skips the deblocking filter and the fancy
        // chroma upsampling for reductions below 3/4 (webp_dec.c): detail
        // the area-averaging rescaler would average away.
    }
    config.output.colorspace =
        if header.has_alpha { ffi::WEBP_CSP_MODE::MODE_RGBA } else { ffi::WEBP_CSP_MODE::MODE_RGB };
    config.output.is_external_memory = 1;
    config.output.u.RGBA =
        ffi::WebPRGBABuffer { rgba: data.as_mut_ptr(), stride: to_c_usize(stride)?, size: data.len() };
    // SAFETY: `bytes` is valid for reads of its length; `config` points at
    // `data`, which outlives the call, is not otherwise touched during it,
    // and is exactly `stride * height` bytes long as the buffer says, for
    // the output size the options ask for. With external memory libwebp
    // allocates no output buffer, so there is nothing to free afterwards.
    let status = unsafe { ffi::WebPDecode(bytes.as_ptr(), bytes.len(), &mut config) };
    check(status)?;
    Ok(Raster { width, height, layout, data })
}

/// Encodes a raster as a lossy WebP at [`WEBP_QUALITY`], alpha kept
/// (losslessly compressed), no metadata chunks.
pub(crate) fn encode(raster: &Raster) -> Result<Vec<u8>, CrunchError> {
    let failed = |what: &str| CrunchError::EncodeFailed(format!("WebP: {what}"));
    let mut config = ffi::WebPConfig::new_with_preset(ffi::WebPPreset::WEBP_PRESET_PHOTO, WEBP_QUALITY)
        .map_err(|()| failed("libwebp version mismatch"))?;
    config.method = WEBP_METHOD;
    config.filter_strength = WEBP_FILTER_STRENGTH;
    let mut picture = ffi::WebPPicture::new().map_err(|()| failed("libwebp version mismatch"))?;
    picture.use_argb = 0;
    picture.width = to_c(raster.width)?;
    picture.height = to_c(raster.height)?;
    let expanded;
    let (pixels, channels) = match raster.layout {
        Layout::Rgb | Layout::Rgba => (&raster.data, raster.layout.channels()),
        Layout::L | Layout::La => {
            expanded = gray_to_rgb(raster);
            (&expanded, if raster.layout.has_alpha() { 4 } else { 3 })
        }
    };
    let stride = to_c_usize(raster.width as usize * channels)?;
    if pixels.len() != raster.width as usize * channels * raster.height as usize {
        return Err(failed("pixel buffer does not match its size"));
    }
    // SAFETY: `picture` was initialised by `WebPPicture::new`; `pixels`
    // holds `height` rows of `stride` bytes (checked above) and is only read.
    // The import allocates the picture's own planes, freed below.
    let imported = unsafe {
        if channels == 4 {
            ffi::WebPPictureImportRGBA(&mut picture, pixels.as_ptr(), stride)
        } else {
            ffi::WebPPictureImportRGB(&mut picture, pixels.as_ptr(), stride)
        }
    };
    if imported == 0 {
        // SAFETY: freeing a picture whose import failed is allowed (it frees
        // whatever was allocated, possibly nothing).
        unsafe { ffi::WebPPictureFree(&mut picture) };
        return Err(failed("out of memory importing pixels"));
    }
    // SAFETY: a zeroed writer is what `WebPMemoryWriterInit` makes; it is
    // initialised before use anyway.
    let mut writer: ffi::WebPMemoryWriter = unsafe { std::mem::zeroed() };
    // SAFETY: `writer` is a valid, exclusive pointer; the picture's writer
    // callback is libwebp's own memory writer, given `writer` as its custom
    // pointer, and both live until `WebPEncode` returns. The writer's buffer
    // (allocated by libwebp) is copied out and released with
    // `WebPMemoryWriterClear`, the picture with `WebPPictureFree`.
    unsafe {
        ffi::WebPMemoryWriterInit(&mut writer);
        picture.writer = Some(ffi::WebPMemoryWrite);
        picture.custom_ptr = (&raw mut writer).cast();
        let ok = ffi::WebPEncode(&config, &mut picture);
        let error = picture.error_code;
        let out = if ok != 0 && !writer.mem.is_null() {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        } else {
            Err(failed(&format!("{error:?}")))
        };
        ffi::WebPMemoryWriterClear(&mut writer);
        ffi::WebPPictureFree(&mut picture);
        out
    }
}

/// libwebp imports only RGB(A): grey (and grey + alpha) is widened.
fn gray_to_rgb(raster: &Raster) -> Vec<u8> {
    let alpha = raster.layout.has_alpha();
    let mut out = Vec::with_capacity(raster.data.len() * if alpha { 2 } else { 3 });
    for p in raster.data.chunks_exact(if alpha { 2 } else { 1 }) {
        out.extend_from_slice(&[p[0], p[0], p[0]]);
        if alpha {
            out.push(p[1]);
        }
    }
    out
}

fn check(status: ffi::VP8StatusCode) -> Result<(), CrunchError> {
    use ffi::VP8StatusCode as S;
    match status {
        S::VP8_STATUS_OK => Ok(()),
        S::VP8_STATUS_NOT_ENOUGH_DATA => Err(CrunchError::Truncated("WebP")),
        S::VP8_STATUS_OUT_OF_MEMORY => Err(failed("out of memory")),
        S::VP8_STATUS_UNSUPPORTED_FEATURE => Err(failed("unsupported feature")),
        S::VP8_STATUS_BITSTREAM_ERROR => Err(failed("invalid bitstream")),
        S::VP8_STATUS_INVALID_PARAM | S::VP8_STATUS_SUSPENDED | S::VP8_STATUS_USER_ABORT => {
            Err(failed(&format!("{status:?}")))
        }
    }
}

fn failed(message: &str) -> CrunchError {
    CrunchError::DecodeFailed { format: "WebP", message: message.to_owned() }
}

fn to_c(v: u32) -> Result<c_int, CrunchError> {
    c_int::try_from(v).map_err(|_| failed("dimension out of range"))
}

fn to_c_usize(v: usize) -> Result<c_int, CrunchError> {
    c_int::try_from(v).map_err(|_| failed("row out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32, layout: Layout) -> Raster {
        let n = layout.channels();
        let mut data = Vec::with_capacity((width * height) as usize * n);
        for y in 0..height {
            for x in 0..width {
                for c in 0..n {
                    let alpha = layout.has_alpha() && c == n - 1;
                    data.push(if alpha { (x * 255 / width) as u8 } else { ((x + y + c as u32 * 40) % 256) as u8 });
                }
            }
        }
        Raster { width, height, layout, data }
    }

    #[test]
    fn encodes_and_decodes_back_at_a_smaller_size() {
        for layout in [Layout::L, Layout::La, Layout::Rgb, Layout::Rgba] {
            let bytes = encode(&gradient(64, 48, layout)).unwrap();
            assert_eq!(&bytes[..4], b"RIFF");
            assert_eq!(&bytes[8..12], b"WEBP");
            let h = header(&bytes).unwrap();
            assert_eq!((h.width, h.height, h.has_alpha, h.animated), (64, 48, layout.has_alpha(), false));
            let small = decode(&bytes, h, 16).unwrap();
            // Alpha: decoded to twice the box, the resize step does the rest.
            let want = if layout.has_alpha() { (32, 24) } else { (16, 12) };
            assert_eq!((small.width, small.height), want);
            assert_eq!(small.layout, if layout.has_alpha() { Layout::Rgba } else { Layout::Rgb });
            assert_eq!(small.data.len(), (want.0 * want.1) as usize * small.layout.channels());
            let full = decode(&bytes, h, 600).unwrap();
            assert_eq!((full.width, full.height), (64, 48));
        }
    }

    #[test]
    fn alpha_survives_the_round_trip() {
        let bytes = encode(&gradient(64, 8, Layout::Rgba)).unwrap();
        let back = decode(&bytes, header(&bytes).unwrap(), 600).unwrap();
        let alpha = |x: usize| back.data[x * 4 + 3];
        assert!(alpha(0) < 16, "left edge nearly transparent, got {}", alpha(0));
        assert!(alpha(63) > 240, "right edge nearly opaque, got {}", alpha(63));
    }

    #[test]
    fn a_cut_file_is_truncated_and_garbage_is_refused() {
        let bytes = encode(&gradient(64, 48, Layout::Rgb)).unwrap();
        let h = header(&bytes).unwrap();
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(decode(cut, h, 600), Err(CrunchError::Truncated("WebP"))));
        assert!(matches!(header(&bytes[..10]), Err(CrunchError::Truncated("WebP"))));
        let mut garbage = bytes.clone();
        garbage[30..].fill(0x5a);
        assert!(decode(&garbage, h, 600).is_err());
    }
}
