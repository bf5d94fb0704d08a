//! Box fitting and SIMD resampling (`fast_image_resize`).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions};

use super::CrunchError;
use super::raster::Raster;

/// The size of a `width`×`height` image fitted inside a `side`×`side` box:
/// aspect ratio kept (rounded to whole pixels, at least 1), never upscaled.
pub fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    if width <= side && height <= side {
        return (width, height);
    }
    let scale = |short: u32, long: u32| {
        let v = (u64::from(short) * u64::from(side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(v).unwrap_or(side).clamp(1, side)
    };
    if width >= height { (side, scale(height, width)) } else { (scale(width, height), side) }
}

/// A reusable resampler: its scratch buffers survive from one variant to
/// the next.
pub(crate) struct Resizer {
    inner: fast_image_resize::Resizer,
    options: ResizeOptions,
}

impl Resizer {
    pub(crate) fn new() -> Resizer {
        // Alpha is premultiplied during filtering (the crate's default) so
        // transparent pixels' colours do not bleed into their neighbours.
        let options = ResizeOptions::new().resize_alg(LANCZOS);
        Resizer { inner: fast_image_resize::Resizer::new(), options }
    }

    /// `src` fitted inside a `side` box; a copy when it already fits.
    ///
    /// A large reduction (more than [`BOX_FIRST_ABOVE`]×) first box-averages
    /// to twice the box, then Lanczos3 does the last 2×: libvips' shrink +
    /// reduce. Lanczos3 straight from a 3700 px PNG to 600 px weighs ~37
    /// source pixels per output pixel in each direction; the box pass reads
    /// every pixel once and the Lanczos pass then has 12 taps, for the same
    /// look (the box's softness is below what the 2× Lanczos keeps).
    pub(crate) fn fit(&mut self, src: &Raster, side: u32) -> Result<Raster, CrunchError> {
        let (width, height) = fit(src.width, src.height, side);
        if (width, height) == (src.width, src.height) {
            return Ok(src.clone());
        }
        if src.width.max(src.height) > side.saturating_mul(BOX_FIRST_ABOVE) {
            let (w2, h2) = fit(src.width, src.height, side.saturating_mul(2));
            let halfway = self.resize(src, w2, h2, ResizeAlg::Convolution(FilterType::Box))?;
            return self.resize(&halfway, width, height, LANCZOS);
        }
        self.resize(src, width, height, LANCZOS)
    }

    fn resize(&mut self, src: &Raster, width: u32, height: u32, alg: ResizeAlg) -> Result<Raster, CrunchError> {
        let pixel_type = src.layout.pixel_type();
        let failed = |e: &dyn std::fmt::Display| CrunchError::ResizeFailed(e.to_string());
        let from = ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(|e| failed(&e))?;
        let mut to = Image::new(width, height, pixel_type);
        let options = self.options.resize_alg(alg);
        self.inner.resize(&from, &mut to, &options).map_err(|e| failed(&e))?;
        Ok(Raster { width, height, layout: src.layout, data: to.into_vec() })
    }
}

/// Reductions larger than this go through a box pass first.
const BOX_FIRST_ABOVE: u32 = 4;

/// Lanczos3 is the sharpest of the usual filters.
const LANCZOS: ResizeAlg = ResizeAlg::Convolution(FilterType::Lanczos3);

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fits_inside_the_box_keeping_aspect() {
        assert_eq!(fit(4000, 3000, 600), (600, 450));
        assert_eq!(fit(3000, 4000, 200), (150, 200));
        assert_eq!(fit(1000, 1000, 100), (100, 100));
        assert_eq!(fit(10000, 1, 100), (100, 1));
        assert_eq!(fit(1, 10000, 100), (1, 100));
    }

    #[test]
    fn never_upscales() {
        assert_eq!(fit(50, 30, 600), (50, 30));
        assert_eq!(fit(1, 1, 100), (1, 1));
        assert_eq!(fit(600, 200, 600), (600, 200));
    }
}
