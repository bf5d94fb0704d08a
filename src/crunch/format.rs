//! Which image format a byte string is, judged by its magic bytes only.
//!
//! The web role uses [`detect`] for its 415 check before anything is stored,
//! and the crunch path uses it to pick a decoder: a file's name or declared
//! `Content-Type` is never trusted.

/// The input formats crunchbox accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl Format {
    /// The MIME type uploads of this format are declared with.
    pub fn mime(&self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
        }
    }

    /// The format for a declared MIME type, if it is one we accept.
    pub fn from_mime(mime: &str) -> Option<Format> {
        match mime.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" => Some(Format::Jpeg),
            "image/png" => Some(Format::Png),
            "image/gif" => Some(Format::Gif),
            "image/webp" => Some(Format::Webp),
            _ => None,
        }
    }

    /// The matching `image` crate format, for the generic decode path.
    pub(crate) fn image_format(&self) -> image::ImageFormat {
        match self {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Gif => image::ImageFormat::Gif,
            Format::Webp => image::ImageFormat::WebP,
        }
    }
}

/// The format whose magic bytes `bytes` starts with, or `None`.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect(b"\xFF\xD8\xFF\xE0rest"), Some(Format::Jpeg));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\nrest"), Some(Format::Png));
        assert_eq!(detect(b"GIF89a..."), Some(Format::Gif));
        assert_eq!(detect(b"GIF87a..."), Some(Format::Gif));
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(detect(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(detect(b"BM"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"\xFF\xD8"), None);
    }

    #[test]
    fn mime_round_trip() {
        for f in [Format::Jpeg, Format::Png, Format::Gif, Format::Webp] {
            assert_eq!(Format::from_mime(f.mime()), Some(f));
        }
        assert_eq!(Format::from_mime("text/plain"), None);
    }
}
