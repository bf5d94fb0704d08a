//! Why an input could not be crunched.

use std::io;

/// A failure of the input itself: retrying the same bytes gives the same
/// answer, so the worker marks the upload `failed` instead of retrying.
#[derive(Debug, thiserror::Error)]
pub enum CrunchError {
    #[error("the file is empty")]
    Empty,
    #[error("not a JPEG, PNG, GIF or WebP image")]
    UnsupportedFormat,
    #[error("the {0} file ends early (truncated)")]
    Truncated(&'static str),
    #[error("the image is {width}x{height} = {pixels} pixels, more than the limit of {max}")]
    TooManyPixels { width: u32, height: u32, pixels: u64, max: u64 },
    #[error("decoding the image would need more memory than {max} pixels allow")]
    TooLarge { max: u64 },
    #[error("the image has no pixels ({width}x{height})")]
    ZeroSize { width: u32, height: u32 },
    #[error("the {format} image could not be decoded: {message}")]
    DecodeFailed { format: &'static str, message: String },
    #[error("the {0} decoder crashed on this file")]
    DecoderPanicked(&'static str),
    #[error("the image could not be resized: {0}")]
    ResizeFailed(String),
    #[error("the variant could not be encoded: {0}")]
    EncodeFailed(String),
}

impl CrunchError {
    /// A short, stable snake_case code for metrics labels and the status API.
    pub fn reason(&self) -> &'static str {
        match self {
            CrunchError::Empty => "empty",
            CrunchError::UnsupportedFormat => "unsupported_format",
            CrunchError::Truncated(_) => "truncated",
            CrunchError::TooManyPixels { .. } | CrunchError::TooLarge { .. } => "too_many_pixels",
            CrunchError::ZeroSize { .. } => "zero_size",
            CrunchError::DecodeFailed { .. } => "decode_failed",
            CrunchError::DecoderPanicked(_) => "decoder_panicked",
            CrunchError::ResizeFailed(_) => "resize_failed",
            CrunchError::EncodeFailed(_) => "encode_failed",
        }
    }

    pub(crate) fn too_many_pixels(width: u32, height: u32, max: u64) -> Option<CrunchError> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > max {
            Some(CrunchError::TooManyPixels { width, height, pixels, max })
        } else if pixels == 0 {
            Some(CrunchError::ZeroSize { width, height })
        } else {
            None
        }
    }

    /// Classifies an `image` crate error: running out of input is
    /// `truncated`, a tripped allocation limit is `too_many_pixels`.
    pub(crate) fn from_image(format: &'static str, err: image::ImageError, max: u64) -> CrunchError {
        match err {
            image::ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => CrunchError::Truncated(format),
            image::ImageError::Limits(_) => CrunchError::TooLarge { max },
            other => {
                let message = other.to_string();
                if looks_truncated(&message) {
                    CrunchError::Truncated(format)
                } else {
                    CrunchError::DecodeFailed { format, message }
                }
            }
        }
    }
}

/// Decoders report running out of data in their own words, often wrapped in
/// a generic "format error"; these are the phrasings they use.
fn looks_truncated(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["unexpected eof", "unexpected end", "end of file", "failed to fill whole buffer", "no more data", "truncated"]
        .iter()
        .any(|p| m.contains(p))
}
