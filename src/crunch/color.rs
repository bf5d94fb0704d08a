//! Colour: pixels tagged with an ICC profile other than sRGB are converted
//! to sRGB before the profile is dropped with the rest of the metadata (SPEC:
//! "ICC beyond sRGB conversion" is stripped). Without it a Display P3 photo,
//! what phones take, would be shown as though its numbers were sRGB: dull,
//! its reds and greens washed out. `moxcms` (already built for `image`) does
//! the conversion.

use moxcms::{ColorProfile, DataColorSpace, Layout as CmsLayout, TransformOptions, Xyzd};

use super::raster::{Layout, Raster};

/// How far a profile's primaries may be from sRGB's and still be taken as
/// sRGB (the profile then costs nothing): what the many sRGB profiles
/// cameras and editors embed differ by in rounding.
const SAME_PRIMARIES: f64 = 0.002;

/// Converts `raster`'s colour to sRGB from the `icc` profile it was tagged
/// with. Pixels stay as they are for a profile that is sRGB already, one
/// that is not RGB (grey images, CMYK ones the decoder has turned into RGB
/// on its own), or one that cannot be read: browsers show such images as
/// sRGB too, and an upload is not refused for its metadata.
pub(crate) fn to_srgb(raster: &mut Raster, icc: &[u8]) {
    let layout = match raster.layout {
        Layout::Rgb => CmsLayout::Rgb,
        Layout::Rgba => CmsLayout::Rgba,
        Layout::L | Layout::La => return,
    };
    let profile = match ColorProfile::new_from_slice(icc) {
        Ok(p) if p.color_space == DataColorSpace::Rgb => p,
        Ok(_) => return,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring an unreadable ICC profile");
            return;
        }
    };
    let srgb = ColorProfile::new_srgb();
    if profile.is_matrix_shaper() && same_primaries(&profile, &srgb) {
        return;
    }
    let transform = match profile.create_transform_8bit(layout, &srgb, layout, TransformOptions::default()) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "cannot convert from an ICC profile; kept as sRGB");
            return;
        }
    };
    let mut out = vec![0u8; raster.data.len()];
    match transform.transform(&raster.data, &mut out) {
        Ok(()) => raster.data = out,
        Err(e) => tracing::debug!(error = %e, "ICC conversion failed; kept as sRGB"),
    }
}

fn same_primaries(a: &ColorProfile, b: &ColorProfile) -> bool {
    let near = |p: &Xyzd, q: &Xyzd| (p.x - q.x).abs().max((p.y - q.y).abs()).max((p.z - q.z).abs()) < SAME_PRIMARIES;
    near(&a.red_colorant, &b.red_colorant)
        && near(&a.green_colorant, &b.green_colorant)
        && near(&a.blue_colorant, &b.blue_colorant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(rgb: [u8; 3]) -> Raster {
        Raster { width: 1, height: 1, layout: Layout::Rgb, data: rgb.to_vec() }
    }

    /// Display P3 and sRGB share their transfer curve and white point, so
    /// the conversion is one matrix on linear light; its coefficients here
    /// are the published P3-to-sRGB ones, not moxcms's.
    fn p3_to_srgb(rgb: [u8; 3]) -> [f64; 3] {
        let lin = |v: u8| {
            let c = f64::from(v) / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        let enc = |l: f64| {
            let l = l.clamp(0.0, 1.0);
            255.0 * if l <= 0.003_130_8 { l * 12.92 } else { 1.055 * l.powf(1.0 / 2.4) - 0.055 }
        };
        let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
        [
            enc(1.224_940_2 * r - 0.224_940_2 * g),
            enc(-0.042_056_95 * r + 1.042_056_95 * g),
            enc(-0.019_637_55 * r - 0.078_636_05 * g + 1.098_273_6 * b),
        ]
    }

    #[test]
    fn display_p3_pixels_become_their_srgb_colour() {
        let icc = ColorProfile::new_display_p3().encode().expect("encode P3");
        for rgb in [[200, 60, 40], [40, 180, 70], [120, 120, 220], [255, 255, 255]] {
            let mut r = raster(rgb);
            to_srgb(&mut r, &icc);
            let want = p3_to_srgb(rgb);
            for (got, want) in r.data.iter().zip(want) {
                assert!((f64::from(*got) - want).abs() <= 2.0, "{rgb:?} -> {:?}, want {want:?}", r.data);
            }
        }
    }

    #[test]
    fn srgb_grey_or_unreadable_profiles_leave_pixels_alone() {
        let srgb = ColorProfile::new_srgb().encode().expect("encode sRGB");
        for icc in [srgb.as_slice(), b"not a profile".as_slice()] {
            let mut r = raster([200, 60, 40]);
            to_srgb(&mut r, icc);
            assert_eq!(r.data, [200, 60, 40]);
        }
        let p3 = ColorProfile::new_display_p3().encode().expect("encode P3");
        let mut grey = Raster { width: 1, height: 1, layout: Layout::L, data: vec![90] };
        to_srgb(&mut grey, &p3);
        assert_eq!(grey.data, [90]);
    }
}
