//! The paper's geometry: scale so the shorter side is `size`, then keep the central `size` x `size`.
//!
//! Done in one pass with fast_image_resize (SIMD convolution): the source rectangle that the
//! central crop of the resized image covers is resampled straight to `size` x `size`. The filter is
//! Catmull-Rom, which is Pillow's BICUBIC, widened by the scale factor when shrinking (proper
//! antialiasing, as Pillow does).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::RgbImage;

/// Where the central square of the min-resized image lies, in source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropWindow {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// The source window that "resize the shorter side to `size` (rounding the other side to whole
/// pixels), then cut the centre with integer offsets" keeps.
pub fn center_crop_window(width: u32, height: u32, size: u32) -> CropWindow {
    let shorter = width.min(height) as f64;
    let scale = size as f64 / shorter;
    let resized_w = ((width as f64 * scale).round() as u32).max(size);
    let resized_h = ((height as f64 * scale).round() as u32).max(size);
    // The scale actually applied along each axis once sizes are whole pixels.
    let sx = resized_w as f64 / width as f64;
    let sy = resized_h as f64 / height as f64;
    let left = ((resized_w - size) / 2) as f64;
    let top = ((resized_h - size) / 2) as f64;
    let (left, top) = (left / sx, top / sy);
    // Rounding may push the far edge a hair past the image; the window must stay inside it.
    let width = (size as f64 / sx).min(width as f64 - left);
    let height = (size as f64 / sy).min(height as f64 - top);
    CropWindow { left, top, width, height }
}

/// Min-resizes `image` to `size` and cuts the central `size` x `size` square.
pub fn min_resize_center_crop(image: &RgbImage, size: u32) -> RgbImage {
    assert!(image.width > 0 && image.height > 0 && size > 0);
    let window = center_crop_window(image.width, image.height, size);
    let src = ImageRef::new(image.width, image.height, &image.pixels, PixelType::U8x3)
        .expect("buffer length matches its dimensions");
    let mut dst = Image::new(size, size, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom)).crop(
        window.left,
        window.top,
        window.width,
        window.height,
    );
    Resizer::new().resize(&src, &mut dst, &options).expect("pixel types match");
    RgbImage::new(size, size, dst.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_of_a_landscape_keeps_the_middle() {
        let w = center_crop_window(500, 375, 32);
        // 500 * 32/375 = 42.67 -> 43 wide; offset (43 - 32) / 2 = 5 resized pixels.
        assert!((w.height - 375.0).abs() < 1e-9);
        assert!((w.top).abs() < 1e-9);
        let sx = 43.0 / 500.0;
        assert!((w.left - 5.0 / sx).abs() < 1e-9);
        assert!((w.width - 32.0 / sx).abs() < 1e-9);
    }

    #[test]
    fn a_square_is_only_resized() {
        let w = center_crop_window(64, 64, 32);
        assert_eq!(w, CropWindow { left: 0.0, top: 0.0, width: 64.0, height: 64.0 });
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::new(300, 200, [10u8, 200, 30].repeat(300 * 200));
        let out = min_resize_center_crop(&img, 32);
        assert!(out.pixels.chunks(3).all(|p| p == [10, 200, 30]));
    }
}
