//! Pixels → output bytes: JPEG q85 4:2:0 for opaque images, PNG for images
//! with transparency. Neither encoder is given any metadata, so the outputs
//! carry no EXIF, XMP, ICC profile or comment.

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use super::CrunchError;
use super::raster::{Layout, Raster};

/// JPEG quality of every opaque variant (SPEC "Crunching").
pub const JPEG_QUALITY: u8 = 85;

/// An encoded variant: the bytes and their MIME type.
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

pub(crate) fn encode(raster: &Raster) -> Result<Encoded, CrunchError> {
    if raster.layout.has_alpha() { png(raster) } else { jpeg(raster) }
}

fn jpeg(raster: &Raster) -> Result<Encoded, CrunchError> {
    let failed = |e: &dyn std::fmt::Display| CrunchError::EncodeFailed(e.to_string());
    let color = if raster.layout == Layout::L { ColorType::Luma } else { ColorType::Rgb };
    let width = u16::try_from(raster.width).map_err(|e| failed(&e))?;
    let height = u16::try_from(raster.height).map_err(|e| failed(&e))?;
    let mut bytes = Vec::with_capacity(raster.data.len() / 8);
    let mut encoder = Encoder::new(&mut bytes, JPEG_QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    // No optimised Huffman tables: jpeg-encoder then writes one scan per
    // component, which some decoders (zune-jpeg, so the `image` crate)
    // mis-decode when chroma is subsampled. Interleaved baseline is what
    // every decoder handles.
    encoder.encode(&raster.data, width, height, color).map_err(|e| failed(&e))?;
    Ok(Encoded { bytes, content_type: "image/jpeg" })
}

fn png(raster: &Raster) -> Result<Encoded, CrunchError> {
    let color =
        if raster.layout == Layout::La { image::ExtendedColorType::La8 } else { image::ExtendedColorType::Rgba8 };
    let mut bytes = Vec::with_capacity(raster.data.len() / 2);
    // `Fast` is fdeflate's own compressor, much quicker than the zlib-style
    // level for somewhat more bytes (bench/crunch.py prints both tools'
    // output sizes; PNG is only for images with transparency, and most
    // browsers get the WebP twin).
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::Adaptive)
        .write_image(&raster.data, raster.width, raster.height, color)
        .map_err(|e| CrunchError::EncodeFailed(e.to_string()))?;
    Ok(Encoded { bytes, content_type: "image/png" })
}
