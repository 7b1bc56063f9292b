//! Crop geometry: a square around a detection, enlarged by a margin, kept inside the image
//! (clamp) or completed with black (pad), resized with area interpolation.

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use super::detector::FaceBox;
use crate::imageops::RgbImage;

/// What to do where the enlarged square leaves the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Border {
    /// Move the square inside the image (shrinking it only if the image is smaller).
    Clamp,
    /// Keep the square centred on the face; what lies outside the image is black.
    Pad,
}

/// A square in source pixels; may extend past the image with [`Border::Pad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Square {
    pub x: i64,
    pub y: i64,
    pub side: i64,
}

/// The square to crop for `face`: centred on it, side = longer box side x (1 + margin).
pub fn face_square(face: &FaceBox, margin: f64, border: Border, width: u32, height: u32) -> Square {
    let cx = face.x as f64 + face.w as f64 / 2.0;
    let cy = face.y as f64 + face.h as f64 / 2.0;
    let mut side = (face.w.max(face.h) as f64 * (1.0 + margin)).round().max(1.0) as i64;
    let (w, h) = (width as i64, height as i64);
    if border == Border::Clamp {
        side = side.min(w).min(h);
    }
    let mut x = (cx - side as f64 / 2.0).round() as i64;
    let mut y = (cy - side as f64 / 2.0).round() as i64;
    if border == Border::Clamp {
        x = x.clamp(0, w - side);
        y = y.clamp(0, h - side);
    }
    Square { x, y, side }
}

/// Cuts `square` out of `image` (black outside it) and resizes it to `size` x `size` with
/// OpenCV's INTER_AREA.
pub fn crop_square(image: &RgbImage, square: Square, size: u32) -> Result<Vec<u8>, opencv::Error> {
    let side = square.side as usize;
    let mut patch = vec![0u8; side * side * 3];
    let (w, h) = (image.width as i64, image.height as i64);
    for row in 0..square.side {
        let sy = square.y + row;
        if sy < 0 || sy >= h {
            continue;
        }
        let x0 = square.x.max(0);
        let x1 = (square.x + square.side).min(w);
        if x0 >= x1 {
            continue;
        }
        let src = ((sy * w + x0) * 3) as usize..((sy * w + x1) * 3) as usize;
        let dst_start = ((row * square.side + (x0 - square.x)) * 3) as usize;
        patch[dst_start..dst_start + src.len()].copy_from_slice(&image.pixels[src]);
    }
    if side == size as usize {
        return Ok(patch);
    }
    let flat = Mat::new_rows_cols_with_data(side as i32, (side * 3) as i32, &patch)?;
    let src = flat.reshape(3, side as i32)?;
    let mut dst = Mat::default();
    imgproc::resize(&src, &mut dst, Size::new(size as i32, size as i32), 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(dst.data_bytes()?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: i32, y: i32, w: i32) -> FaceBox {
        FaceBox { x, y, w, h: w, neighbours: 5 }
    }

    #[test]
    fn margin_enlarges_around_the_centre() {
        let s = face_square(&face(100, 100, 100), 0.2, Border::Pad, 1000, 1000);
        assert_eq!(s, Square { x: 90, y: 90, side: 120 });
    }

    #[test]
    fn clamp_moves_inside_and_pad_stays_centred() {
        let f = face(0, 10, 50);
        assert_eq!(face_square(&f, 0.4, Border::Clamp, 200, 100), Square { x: 0, y: 0, side: 70 });
        assert_eq!(face_square(&f, 0.4, Border::Pad, 200, 100), Square { x: -10, y: 0, side: 70 });
        // Larger than the image: clamp shrinks to the shorter side.
        assert_eq!(face_square(&face(10, 10, 80), 1.0, Border::Clamp, 120, 90).side, 90);
    }

    #[test]
    fn padding_is_black_and_content_lands_where_it_belongs() {
        let img = RgbImage::new(4, 4, [200u8, 100, 50].repeat(16));
        let out = crop_square(&img, Square { x: -2, y: -2, side: 4 }, 4).unwrap();
        // Top-left 2x2 of the square is outside the image, bottom-right 2x2 is inside.
        assert_eq!(&out[..3], &[0, 0, 0]);
        assert_eq!(&out[(3 * 4 + 3) * 3..], &[200, 100, 50]);
        let resized = crop_square(&img, Square { x: 0, y: 0, side: 4 }, 2).unwrap();
        assert_eq!(resized, [200u8, 100, 50].repeat(4));
    }
}
