//! The fast JPEG path: `jpeg-decoder` with DCT-domain downscaling.
//!
//! A 12 MP photo becomes a 600 px variant, so decoding it at full size is
//! wasted work. `jpeg-decoder` can run a reduced IDCT (1/2, 1/4, 1/8), which
//! skips most of the decode cost; the resize step then only has a small image
//! to filter. This is libvips' "shrink-on-load", and the reason crunch is fast.

use image::metadata::Orientation;
use jpeg_decoder::{Decoder, Error, PixelFormat};

use super::CrunchError;
use super::decode::Decoded;
use super::raster::{Layout, Raster};

/// What the fast path made of the input.
pub(crate) enum Outcome {
    Decoded(Decoded),
    /// `jpeg-decoder` refused something that is not plainly truncation
    /// (an unsupported coding process, a quirk it is strict about): let the
    /// `image` crate's decoder have a go and give the verdict.
    Fallback,
}

/// Decodes `bytes` at the smallest DCT scale whose longer side still reaches
/// `want` pixels (or at full size if the image is smaller than that).
pub(crate) fn decode(bytes: &[u8], max_pixels: u64, want: u32) -> Result<Outcome, CrunchError> {
    let mut dec = Decoder::new(bytes);
    if let Err(e) = dec.read_info() {
        return fallback_unless_truncated(e);
    }
    let Some(info) = dec.info() else {
        return Ok(Outcome::Fallback);
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if let Some(e) = CrunchError::too_many_pixels(width, height, max_pixels) {
        return Err(e);
    }
    let layout = match info.pixel_format {
        PixelFormat::L8 => Layout::L,
        PixelFormat::RGB24 | PixelFormat::CMYK32 => Layout::Rgb,
        // 12-bit samples: rare enough to leave to the generic path.
        PixelFormat::L16 => return Ok(Outcome::Fallback),
    };
    // Belt and braces: the header check above already bounds this.
    let buffer_limit = usize::try_from(max_pixels.saturating_mul(4)).unwrap_or(usize::MAX);
    dec.set_max_decoding_buffer_size(buffer_limit);
    let orientation = dec.exif_data().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    let want = u16::try_from(want).unwrap_or(u16::MAX);
    let (out_w, out_h) = match dec.scale(want, want) {
        Ok(size) => size,
        Err(e) => return fallback_unless_truncated(e),
    };
    let pixels = match dec.decode() {
        Ok(p) => p,
        Err(e) => return fallback_unless_truncated(e),
    };
    let data = match info.pixel_format {
        PixelFormat::CMYK32 => cmyk_to_rgb(&pixels),
        _ => pixels,
    };
    let raster = Raster { width: u32::from(out_w), height: u32::from(out_h), layout, data };
    if raster.data.len() != raster.width as usize * raster.height as usize * layout.channels() {
        return Ok(Outcome::Fallback);
    }
    Ok(Outcome::Decoded(Decoded { raster, orientation }))
}

fn fallback_unless_truncated(e: Error) -> Result<Outcome, CrunchError> {
    match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Err(CrunchError::Truncated("JPEG")),
        _ => Ok(Outcome::Fallback),
    }
}

/// `jpeg-decoder` hands back ink amounts (Adobe's inversion already undone);
/// this is the naive, profile-less conversion every viewer without a CMS uses.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let k = 255 - u16::from(p[3]);
        for &ink in &p[..3] {
            rgb.push(((255 - u16::from(ink)) * k / 255) as u8);
        }
    }
    rgb
}
