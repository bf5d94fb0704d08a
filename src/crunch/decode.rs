//! Bytes → oriented-later pixels: the header check, then one decode.
//!
//! The pixel limit is checked from the header before any pixel buffer is
//! allocated, so a 100000×100000 "bomb" costs a few bytes of parsing.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::raster::Raster;
use super::{CrunchError, Format, jpeg, webp};

/// Decoded pixels plus the EXIF orientation still to be applied. Orientation
/// is applied after the first resize, where there are fewer pixels to move
/// (the variant boxes are square, so the result is the same).
pub(crate) struct Decoded {
    pub raster: Raster,
    pub orientation: Orientation,
    /// The embedded ICC profile, if any: the colour the pixels are in.
    pub icc: Option<Vec<u8>>,
}

/// Decodes `bytes` (already detected as `format`). `want` is the largest
/// variant box: a decoder that can shrink on load may return any size whose
/// longer side is at least that.
pub(crate) fn decode(bytes: &[u8], format: Format, max_pixels: u64, want: u32) -> Result<Decoded, CrunchError> {
    if format == Format::Jpeg
        && let jpeg::Outcome::Decoded(d) = jpeg::decode(bytes, max_pixels, want)?
    {
        return Ok(d);
    }
    if format == Format::Webp {
        if riff_truncated(bytes) {
            return Err(CrunchError::Truncated("WebP"));
        }
        let header = webp::header(bytes)?;
        // Animations go to the `image` crate, which takes their first frame
        // as it does a GIF's.
        if !header.animated {
            if let Some(e) = CrunchError::too_many_pixels(header.width, header.height, max_pixels) {
                return Err(e);
            }
            let (orientation, icc) = if webp_flags(bytes) & (EXIF_FLAG | ICC_FLAG) != 0 {
                container_metadata(bytes, format)
            } else {
                (NO_TRANSFORMS, None)
            };
            return Ok(Decoded { raster: webp::decode(bytes, header, want)?, orientation, icc });
        }
    }
    decode_generic(bytes, format, max_pixels)
}

const NO_TRANSFORMS: Orientation = Orientation::NoTransforms;

const EXIF_FLAG: u8 = 0x08;
const ICC_FLAG: u8 = 0x20;

/// An extended WebP (`VP8X`) flags its EXIF and ICC chunks in its header;
/// only then is the container walked for them.
fn webp_flags(bytes: &[u8]) -> u8 {
    if bytes.get(12..16) == Some(b"VP8X") { bytes.get(20).copied().unwrap_or(0) } else { 0 }
}

/// The EXIF orientation and ICC profile as the `image` crate's decoder
/// reads them (from the container only, no pixels decoded).
fn container_metadata(bytes: &[u8], format: Format) -> (Orientation, Option<Vec<u8>>) {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.no_limits();
    let Ok(mut decoder) = reader.into_decoder() else { return (NO_TRANSFORMS, None) };
    (decoder.orientation().unwrap_or(NO_TRANSFORMS), decoder.icc_profile().ok().flatten())
}

/// A RIFF container states its own length; `image-webp` reports a short
/// file as a generic format error, so truncation is checked here.
fn riff_truncated(bytes: &[u8]) -> bool {
    let declared = bytes.get(4..8).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    declared.is_some_and(|n| bytes.len() < usize::try_from(n).unwrap_or(usize::MAX).saturating_add(8))
}

/// The `image` crate's decoders: PNG, GIF (first frame), animated WebP
/// (first frame), and the JPEGs the fast path declines.
fn decode_generic(bytes: &[u8], format: Format, max_pixels: u64) -> Result<Decoded, CrunchError> {
    let name = name(format);
    let fail = |e| CrunchError::from_image(name, e, max_pixels);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    // Limits are set on the decoder once its header is read, so the
    // too-many-pixels answer can name the dimensions.
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(fail)?;
    let (width, height) = decoder.dimensions();
    if let Some(e) = CrunchError::too_many_pixels(width, height, max_pixels) {
        return Err(e);
    }
    let mut limits = image::Limits::default();
    // 16-bit RGBA is the widest thing these decoders produce; allow slack
    // for their working buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(limits).map_err(fail)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let img = DynamicImage::from_decoder(decoder).map_err(fail)?;
    Ok(Decoded { raster: Raster::from_dynamic(img), orientation, icc })
}

/// The format's name for error messages.
pub(crate) fn name(format: Format) -> &'static str {
    match format {
        Format::Jpeg => "JPEG",
        Format::Png => "PNG",
        Format::Gif => "GIF",
        Format::Webp => "WebP",
    }
}
