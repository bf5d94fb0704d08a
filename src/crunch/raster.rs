//! The one in-memory pixel shape the crunch pipeline works on: 8-bit
//! channels, tightly packed, in one of four layouts.
//!
//! Every decoder's output is brought to this shape once, so the resize and
//! encode steps each handle four cases instead of every colour type a
//! decoder can produce.

use fast_image_resize::PixelType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageBuffer};

use super::CrunchError;

/// Channel layout of a [`Raster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    L,
    La,
    Rgb,
    Rgba,
}

impl Layout {
    pub(crate) fn channels(self) -> usize {
        match self {
            Layout::L => 1,
            Layout::La => 2,
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }

    pub(crate) fn has_alpha(self) -> bool {
        matches!(self, Layout::La | Layout::Rgba)
    }

    pub(crate) fn pixel_type(self) -> PixelType {
        match self {
            Layout::L => PixelType::U8,
            Layout::La => PixelType::U8x2,
            Layout::Rgb => PixelType::U8x3,
            Layout::Rgba => PixelType::U8x4,
        }
    }
}

/// Packed 8-bit pixels; `data.len() == width * height * layout.channels()`.
#[derive(Debug, Clone)]
pub(crate) struct Raster {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub data: Vec<u8>,
}

impl Raster {
    /// Brings any decoded image to 8 bits per channel (16-bit PNGs, float
    /// images) in the nearest of the four layouts.
    pub(crate) fn from_dynamic(img: DynamicImage) -> Raster {
        let (width, height) = (img.width(), img.height());
        let (layout, data) = match img {
            DynamicImage::ImageLuma8(b) => (Layout::L, b.into_raw()),
            DynamicImage::ImageLumaA8(b) => (Layout::La, b.into_raw()),
            DynamicImage::ImageRgb8(b) => (Layout::Rgb, b.into_raw()),
            DynamicImage::ImageRgba8(b) => (Layout::Rgba, b.into_raw()),
            DynamicImage::ImageLuma16(_) => (Layout::L, img.to_luma8().into_raw()),
            DynamicImage::ImageLumaA16(_) => (Layout::La, img.to_luma_alpha8().into_raw()),
            DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgb32F(_) => (Layout::Rgb, img.to_rgb8().into_raw()),
            other => (Layout::Rgba, other.to_rgba8().into_raw()),
        };
        Raster { width, height, layout, data }
    }

    /// Drops an alpha channel in which every pixel is fully opaque, so such
    /// images become JPEGs and resize as 3 (or 1) channels.
    pub(crate) fn drop_alpha_if_opaque(self) -> Raster {
        let keep = match self.layout {
            Layout::La => 1,
            Layout::Rgba => 3,
            _ => return self,
        };
        let n = keep + 1;
        if self.data.chunks_exact(n).any(|p| p[keep] != 255) {
            return self;
        }
        let mut data = Vec::with_capacity(self.data.len() / n * keep);
        for p in self.data.chunks_exact(n) {
            data.extend_from_slice(&p[..keep]);
        }
        let layout = if keep == 1 { Layout::L } else { Layout::Rgb };
        Raster { width: self.width, height: self.height, layout, data }
    }

    /// Applies an EXIF orientation (rotation and/or mirror), by way of the
    /// `image` crate's own transforms.
    pub(crate) fn orient(self, orientation: Orientation) -> Result<Raster, CrunchError> {
        if orientation == Orientation::NoTransforms {
            return Ok(self);
        }
        let mut img = self.into_dynamic()?;
        img.apply_orientation(orientation);
        Ok(Raster::from_dynamic(img))
    }

    fn into_dynamic(self) -> Result<DynamicImage, CrunchError> {
        let (w, h) = (self.width, self.height);
        let img = match self.layout {
            Layout::L => ImageBuffer::from_raw(w, h, self.data).map(DynamicImage::ImageLuma8),
            Layout::La => ImageBuffer::from_raw(w, h, self.data).map(DynamicImage::ImageLumaA8),
            Layout::Rgb => ImageBuffer::from_raw(w, h, self.data).map(DynamicImage::ImageRgb8),
            Layout::Rgba => ImageBuffer::from_raw(w, h, self.data).map(DynamicImage::ImageRgba8),
        };
        img.ok_or_else(|| CrunchError::DecodeFailed {
            format: "decoded",
            message: format!("pixel buffer does not match {w}x{h}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_alpha_is_dropped_and_translucent_kept() {
        let opaque = Raster { width: 2, height: 1, layout: Layout::Rgba, data: vec![1, 2, 3, 255, 4, 5, 6, 255] };
        let r = opaque.drop_alpha_if_opaque();
        assert_eq!(r.layout, Layout::Rgb);
        assert_eq!(r.data, vec![1, 2, 3, 4, 5, 6]);
        let seethrough = Raster { width: 2, height: 1, layout: Layout::La, data: vec![1, 255, 2, 254] };
        assert_eq!(seethrough.drop_alpha_if_opaque().layout, Layout::La);
    }

    #[test]
    fn rotate_90_swaps_dimensions() {
        let r = Raster { width: 2, height: 1, layout: Layout::L, data: vec![10, 20] };
        let r = r.orient(Orientation::Rotate90).unwrap();
        assert_eq!((r.width, r.height), (1, 2));
        assert_eq!(r.data, vec![10, 20]);
    }
}
