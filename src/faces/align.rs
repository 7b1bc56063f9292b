//! Eye-levelled crops from YuNet's five landmarks, the way aligned face sets are made (CelebA's
//! aligned images, FFHQ): the square is turned so that the line through the eyes is horizontal,
//! its size follows the larger of the eye distance and the eye-to-mouth distance, and it sits on
//! the line from the eyes to the mouth.

use opencv::core::{Mat, Scalar, Size, BORDER_CONSTANT};
use opencv::imgproc;
use opencv::prelude::*;

use super::detector::Landmarks;
use super::geometry::{crop_square, Square};
use crate::imageops::RgbImage;

/// Side of the square per max(2 x eye distance, 1.8 x eye-to-mouth distance) (FFHQ's measure of
/// a face's size): 1.45 frames the face as YuNet's box does (median box height over that measure
/// on 154 WIDER FACE faces of side >= 64 px: 1.44), so "box" and "eyes" crops show the same extent.
pub const SIDE_PER_FACE_SIZE: f32 = 1.45;
/// Where the square's centre sits, from the eyes' midpoint towards the mouth's, in eye-to-mouth
/// distances (median of YuNet's box centres on the same faces: 0.35).
pub const CENTRE_TOWARDS_MOUTH: f32 = 0.35;

/// A square in source pixels, turned by `angle` (radians, clockwise on screen as y points down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnedSquare {
    pub centre: [f32; 2],
    pub side: f32,
    pub angle: f32,
}

/// The eye-levelled square of a face, enlarged by `margin` as the box crop is.
pub fn eyes_square(points: &Landmarks, margin: f64) -> TurnedSquare {
    let [right_eye, left_eye, _nose, mouth_right, mouth_left] = *points;
    let eyes = midpoint(right_eye, left_eye);
    let mouth = midpoint(mouth_right, mouth_left);
    let eye_line = [left_eye[0] - right_eye[0], left_eye[1] - right_eye[1]];
    let eye_to_mouth = [mouth[0] - eyes[0], mouth[1] - eyes[1]];
    let size = (2.0 * eye_line[0].hypot(eye_line[1])).max(1.8 * eye_to_mouth[0].hypot(eye_to_mouth[1]));
    let side = (size * SIDE_PER_FACE_SIZE * (1.0 + margin as f32)).max(1.0);
    let centre = [eyes[0] + CENTRE_TOWARDS_MOUTH * eye_to_mouth[0], eyes[1] + CENTRE_TOWARDS_MOUTH * eye_to_mouth[1]];
    TurnedSquare { centre, side, angle: eye_line[1].atan2(eye_line[0]) }
}

fn midpoint(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0]
}

/// Where a source point lands in the `size` x `size` crop of `square`.
pub fn to_crop(square: &TurnedSquare, size: u32, point: [f32; 2]) -> [f32; 2] {
    let scale = size as f32 / square.side;
    let (sin, cos) = square.angle.sin_cos();
    let (dx, dy) = (point[0] - square.centre[0], point[1] - square.centre[1]);
    // Turning by -angle levels the eye line.
    let half = size as f32 / 2.0;
    [half + scale * (cos * dx + sin * dy), half + scale * (-sin * dx + cos * dy)]
}

/// Cuts the turned square out of `image` into `size` x `size` (black outside the photo). The
/// axis-aligned square around it is shrunk first with INTER_AREA (no aliasing however large the
/// face), then turned with bilinear interpolation at about one to one.
pub fn crop_rotated(image: &RgbImage, square: &TurnedSquare, size: u32) -> Result<Vec<u8>, opencv::Error> {
    let (sin, cos) = square.angle.sin_cos();
    let spread = cos.abs() + sin.abs();
    let outer_side = (square.side * spread).ceil().max(1.0) as i64;
    let outer = Square {
        x: (square.centre[0] - outer_side as f32 / 2.0).round() as i64,
        y: (square.centre[1] - outer_side as f32 / 2.0).round() as i64,
        side: outer_side,
    };
    let outer_size = ((size as f32 * spread).ceil() as u32).max(size);
    let patch = crop_square(image, outer, outer_size)?;
    // Patch pixels per source pixel, and the square's centre in the patch.
    let k = outer_size as f32 / outer_side as f32;
    let pc = [(square.centre[0] - outer.x as f32) * k, (square.centre[1] - outer.y as f32) * k];
    let scale = size as f32 / (square.side * k);
    let half = size as f32 / 2.0;
    let (a, b) = (scale * cos, scale * sin);
    let matrix = Mat::from_slice_2d(&[
        [a as f64, b as f64, (half - a * pc[0] - b * pc[1]) as f64],
        [-b as f64, a as f64, (half + b * pc[0] - a * pc[1]) as f64],
    ])?;
    let flat = Mat::new_rows_cols_with_data(outer_size as i32, (outer_size * 3) as i32, &patch)?;
    let src = flat.reshape(3, outer_size as i32)?;
    let mut dst = Mat::default();
    let dsize = Size::new(size as i32, size as i32);
    imgproc::warp_affine(&src, &mut dst, &matrix, dsize, imgproc::INTER_LINEAR, BORDER_CONSTANT, Scalar::all(0.0))?;
    Ok(dst.data_bytes()?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face turned 30 degrees clockwise on screen, eyes 40 px apart.
    fn tilted_face() -> Landmarks {
        let (sin, cos) = 30f32.to_radians().sin_cos();
        let at = |x: f32, y: f32| [200.0 + cos * x - sin * y, 150.0 + sin * x + cos * y];
        [at(-20.0, 0.0), at(20.0, 0.0), at(0.0, 20.0), at(-15.0, 40.0), at(15.0, 40.0)]
    }

    #[test]
    fn the_eyes_come_out_level_and_the_face_upright() {
        let points = tilted_face();
        let square = eyes_square(&points, 0.0);
        assert!((square.angle.to_degrees() - 30.0).abs() < 1e-3, "{square:?}");
        let [re, le, nose, _, _] = points.map(|p| to_crop(&square, 64, p));
        assert!((re[1] - le[1]).abs() < 1e-3, "eyes {re:?} {le:?}");
        assert!(re[0] < le[0] && nose[1] > re[1], "right eye left of the left one, nose below");
        // Size: max(2 x 40, 1.8 x 40) x 1.45 = 116 px; centre 0.35 x 40 px below the eyes.
        assert!((square.side - 116.0).abs() < 1e-3, "{square:?}");
        assert!((32.0 - re[1] - 14.0 * 64.0 / 116.0).abs() < 1e-3, "{re:?}");
    }

    #[test]
    fn the_crop_turns_the_photo_as_the_landmarks_say() {
        // A white disc on the right eye of a black photo: it must land where to_crop puts it.
        let points = tilted_face();
        let square = eyes_square(&points, 0.0);
        let (w, h) = (400u32, 300u32);
        let mut pixels = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 - points[0][0], y as f32 - points[0][1]);
                if dx * dx + dy * dy < 36.0 {
                    pixels[((y * w + x) * 3) as usize..][..3].copy_from_slice(&[255, 255, 255]);
                }
            }
        }
        let crop = crop_rotated(&RgbImage::new(w, h, pixels), &square, 64).unwrap();
        let [ex, ey] = to_crop(&square, 64, points[0]);
        let at = |x: f32, y: f32| crop[((y.round() as usize) * 64 + x.round() as usize) * 3];
        assert!(at(ex, ey) > 150, "the eye's disc is not where expected: {}", at(ex, ey));
        assert!(at(64.0 - ex, ey) < 30, "the left eye's place is dark");
    }
}
