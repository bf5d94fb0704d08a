//! The crunch library: detect, decode (limits, orientation), resize, encode.
//!
//! [`crunch`] turns an uploaded original into the three variants SPEC
//! "Crunching" asks for. It is synchronous and CPU-only (the worker runs it
//! on a blocking thread) and never lets a decoder's panic escape. The image
//! is decoded once, at the smallest size the largest variant needs; the
//! large variant is resampled from it and the two smaller ones from the
//! large one. JPEG and WebP decode through C libraries built from source
//! (libjpeg-turbo, libwebp) because they can shrink on load; PNG and GIF
//! stay with the pure-Rust `image` decoders.

pub mod cli;
mod color;
mod decode;
mod encode;
mod error;
mod format;
mod jpeg;
mod raster;
mod resize;
mod webp;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use encode::JPEG_QUALITY;
pub use error::CrunchError;
pub use format::{Format, detect};
pub use resize::fit;
pub use webp::WEBP_QUALITY;

/// Bounds on what an input may cost to decode.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Width × height above which an image is refused, read from its header.
    pub max_pixels: u64,
}

impl Default for Limits {
    /// SPEC's default for `crunch.max_pixels`.
    fn default() -> Self {
        Limits { max_pixels: 50_000_000 }
    }
}

/// What a crunch makes beside each variant's JPEG/PNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs {
    /// A lossy WebP twin of every variant (SPEC "Content negotiation").
    pub webp: bool,
}

/// The variants every upload is crunched into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VariantName {
    Default,
    Small,
    Large,
}

impl VariantName {
    pub const ALL: [VariantName; 3] = [VariantName::Default, VariantName::Small, VariantName::Large];

    /// What follows the id in the variant's key and URL (`/a/{id}_small`).
    pub fn suffix(&self) -> &'static str {
        match self {
            VariantName::Default => "",
            VariantName::Small => "_small",
            VariantName::Large => "_large",
        }
    }

    /// The side of the square box the variant fits inside.
    pub fn box_size(&self) -> u32 {
        match self {
            VariantName::Default => 200,
            VariantName::Small => 100,
            VariantName::Large => 600,
        }
    }

    /// The name used in the status API's `variants` object.
    pub fn as_str(&self) -> &'static str {
        match self {
            VariantName::Default => "default",
            VariantName::Small => "small",
            VariantName::Large => "large",
        }
    }
}

/// One encoded output image.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: VariantName,
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    /// The WebP twin; `None` when the crunch was not asked for one.
    pub webp: Option<Vec<u8>>,
}

impl Variant {
    /// File extension matching the content type: `jpg` or `png`.
    pub fn extension(&self) -> &'static str {
        if self.content_type == "image/png" { "png" } else { "jpg" }
    }
}

/// Crunches an original into its variants, in [`VariantName::ALL`] order.
/// Every error is a permanent property of the input.
pub fn crunch(bytes: &[u8], limits: &Limits) -> Result<Vec<Variant>, CrunchError> {
    crunch_with(bytes, limits, Outputs::default())
}

/// [`crunch`], with the extra `outputs` asked for.
pub fn crunch_with(bytes: &[u8], limits: &Limits, outputs: Outputs) -> Result<Vec<Variant>, CrunchError> {
    if bytes.is_empty() {
        return Err(CrunchError::Empty);
    }
    let format = detect(bytes).ok_or(CrunchError::UnsupportedFormat)?;
    // Decoders parse hostile input; a panic in one must fail this input,
    // not take down the worker thread.
    catch_unwind(AssertUnwindSafe(|| crunch_detected(bytes, format, limits, outputs)))
        .unwrap_or(Err(CrunchError::DecoderPanicked(decode::name(format))))
}

fn crunch_detected(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
    outputs: Outputs,
) -> Result<Vec<Variant>, CrunchError> {
    let large_box = VariantName::Large.box_size();
    let mut decoded = decode::decode(bytes, format, limits.max_pixels, large_box)?;
    if let Some(icc) = decoded.icc.take() {
        color::to_srgb(&mut decoded.raster, &icc);
    }
    let source = decoded.raster.drop_alpha_if_opaque();
    let mut resizer = resize::Resizer::new();
    let large = resizer.fit(&source, large_box)?;
    drop(source);
    let large = large.orient(decoded.orientation)?;
    VariantName::ALL
        .iter()
        .map(|&name| {
            let small;
            let raster = if name == VariantName::Large {
                &large
            } else {
                small = resizer.fit(&large, name.box_size())?;
                &small
            };
            let out = encode::encode(raster)?;
            let webp = if outputs.webp { Some(webp::encode(raster)?) } else { None };
            Ok(Variant {
                name,
                bytes: out.bytes,
                content_type: out.content_type,
                width: raster.width,
                height: raster.height,
                webp,
            })
        })
        .collect()
}
