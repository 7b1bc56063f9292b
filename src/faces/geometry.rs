//! Crop geometry: a square around a detection, enlarged by a margin, kept inside the image
//! (clamp) or completed with black (pad), resized with area interpolation.

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use super::detector::{Detection, FaceBox};
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

/// The shorter side, in pixels, below which a detector's input is not looked at: YuNet's finest
/// stride is 8 px and the cascade's smallest window 24 px. Thinner inputs (a 20000x20 banner
/// shrunk to 640x1 for YuNet) gave boxes of w = 2147483647 that changed from run to run.
pub const MIN_DETECT_SIDE: u32 = 16;

/// Why a photo whose detector sees it at `detect_size` is not looked at, if it is not.
pub fn too_thin(width: u32, height: u32, detect_size: (u32, u32)) -> Option<String> {
    let (w, h) = detect_size;
    if w.min(h) >= MIN_DETECT_SIDE {
        return None;
    }
    let seen = if (w, h) == (width, height) { String::new() } else { format!(" (the detector's copy: {w}x{h})") };
    Some(format!("photo of {width}x{height} pixels{seen} is thinner than {MIN_DETECT_SIDE} px: no face is looked for"))
}

/// Why `detection` cannot be a face of a `width` x `height` photo, if it cannot: a coordinate,
/// score or landmark that is not finite, a box of no size, a box larger than twice the photo, one
/// whose centre lies outside it, or a landmark farther than half the box's size outside it. Such
/// boxes are dropped, whatever the detector.
pub fn invalid_box(detection: &Detection, width: u32, height: u32) -> Option<String> {
    let [x, y, w, h] = detection.exact;
    let finite = detection.exact.iter().all(|v| v.is_finite())
        && detection.score.is_none_or(f32::is_finite)
        && detection.landmarks.is_none_or(|points| points.iter().flatten().all(|v| v.is_finite()));
    if !finite {
        return Some("a coordinate, score or landmark is not a finite number".into());
    }
    let face = &detection.face;
    if face.w <= 0 || face.h <= 0 || w <= 0.0 || h <= 0.0 {
        return Some(format!("box of {}x{} pixels", face.w, face.h));
    }
    let (fw, fh) = (width as f64, height as f64);
    if face.w as f64 > 2.0 * fw || face.h as f64 > 2.0 * fh {
        return Some(format!("box of {}x{} pixels in a photo of {width}x{height}", face.w, face.h));
    }
    let (cx, cy) = (x as f64 + w as f64 / 2.0, y as f64 + h as f64 / 2.0);
    if !(0.0..=fw).contains(&cx) || !(0.0..=fh).contains(&cy) {
        return Some(format!("box centre ({cx:.1}, {cy:.1}) outside the photo of {width}x{height}"));
    }
    // The eye-levelled crop is sized from the landmarks: one far from its face would make it huge.
    let (w, h) = (w as f64, h as f64);
    let near = |p: &[f32; 2]| {
        let (px, py) = (p[0] as f64, p[1] as f64);
        (x as f64 - w / 2.0..=x as f64 + 1.5 * w).contains(&px)
            && (y as f64 - h / 2.0..=y as f64 + 1.5 * h).contains(&py)
    };
    if detection.landmarks.is_some_and(|points| !points.iter().all(near)) {
        return Some("a landmark lies far outside its box".into());
    }
    None
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

    fn detection(exact: [f32; 4]) -> Detection {
        let face = FaceBox {
            x: exact[0].round() as i32,
            y: exact[1].round() as i32,
            w: exact[2].round() as i32,
            h: exact[3].round() as i32,
            neighbours: 0,
        };
        Detection { face, exact, score: Some(0.9), landmarks: Some([[exact[0], exact[1]]; 5]) }
    }

    #[test]
    fn boxes_that_cannot_be_faces_are_named() {
        assert_eq!(invalid_box(&detection([10.0, 10.0, 40.0, 50.0]), 100, 100), None);
        // A face cut by the border is fine.
        assert_eq!(invalid_box(&detection([-10.0, 70.0, 40.0, 50.0]), 100, 100), None);
        for bad in [
            [f32::NAN, 10.0, 40.0, 50.0],
            [10.0, 10.0, f32::INFINITY, 50.0],
            [10.0, 10.0, 0.0, 50.0],
            [10.0, 10.0, 40.0, -5.0],
            [10.0, 10.0, 2.1e9, 50.0],
            [200.0, 10.0, 40.0, 50.0],
            [10.0, -80.0, 40.0, 50.0],
        ] {
            assert!(invalid_box(&detection(bad), 100, 100).is_some(), "{bad:?}");
        }
        let mut far = detection([10.0, 10.0, 40.0, 50.0]);
        far.landmarks = Some([[30.0, 30.0], [40.0, 30.0], [35.0, 40.0], [30.0, 50.0], [1.0e7, 50.0]]);
        assert!(invalid_box(&far, 100, 100).unwrap().contains("landmark"));
        let mut nan_score = detection([10.0, 10.0, 40.0, 50.0]);
        nan_score.score = Some(f32::NAN);
        assert!(invalid_box(&nan_score, 100, 100).is_some());
    }

    #[test]
    fn thin_photos_are_named() {
        assert!(too_thin(20000, 20, (640, 1)).unwrap().contains("640x1"));
        assert!(too_thin(1000, 2, (1000, 2)).unwrap().contains("1000x2 pixels is"));
        assert_eq!(too_thin(640, 16, (640, 16)), None);
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
