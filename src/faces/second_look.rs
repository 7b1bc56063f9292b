//! A second look at each kept box: the detector again on the box's neighbourhood, scaled so that
//! the box has a fixed side, and on its mirror image. A face is found again in both; most of the
//! non-faces a detector keeps (torsos, fists, backs of heads, signs) are not, or score lower.
//! The box stays when the mean of its own score and the two new ones reaches a threshold
//! (docs/faces.md: how the settings were chosen on the dev set's tune half).

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::detector::{Detection, DetectorError};
use crate::imageops::RgbImage;

/// Faces scoring below this on a second look count as not found (0).
pub const SCORE_FLOOR: f32 = 0.3;

/// Second-look settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondLookParams {
    /// The box's side, sqrt(w x h), in the neighbourhood image (px).
    pub face: f32,
    /// The neighbourhood's side as a multiple of `face`.
    pub context: f32,
    /// The box stays when (score + look + mirrored look) / 3 reaches this.
    pub threshold: f32,
}

/// What the second look saw: the best score of a face overlapping the box on the neighbourhood
/// and on its mirror (0 where none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    pub plain: f32,
    pub mirrored: f32,
}

impl Look {
    /// The mean of the first score and the two looks.
    pub fn mean_with(&self, score: f32) -> f32 {
        (score + self.plain + self.mirrored) / 3.0
    }
}

/// The neighbourhood of a box, at the second look's scale, and where the box lies in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbourhood {
    pub image: RgbImage,
    /// The box in the neighbourhood's pixels: x, y, w, h.
    pub target: [f32; 4],
}

/// Cuts the square around the box (zero outside the photo) whose side is `context` x the box
/// side, and resizes it so that the box side becomes `face` px (INTER_AREA when shrinking).
pub fn neighbourhood(
    image: &RgbImage,
    exact: &[f32; 4],
    params: &SecondLookParams,
) -> Result<Neighbourhood, DetectorError> {
    let [x, y, w, h] = *exact;
    let side = (w.max(1.0) * h.max(1.0)).sqrt();
    let out = (params.context * params.face).round().max(8.0) as usize;
    // The region of the photo that becomes the neighbourhood: a square of `region` px.
    let region = ((out as f32) * side / params.face).round().max(1.0) as usize;
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let x0 = (cx - region as f32 / 2.0).round() as i64;
    let y0 = (cy - region as f32 / 2.0).round() as i64;
    let mut pixels = vec![0u8; region * region * 3];
    let (iw, ih) = (image.width as i64, image.height as i64);
    let (cols_from, cols_to) = (x0.max(0), (x0 + region as i64).min(iw));
    if cols_from < cols_to {
        for row in y0.max(0)..(y0 + region as i64).min(ih) {
            let src = ((row * iw + cols_from) * 3) as usize;
            let len = ((cols_to - cols_from) * 3) as usize;
            let dst = (((row - y0) * region as i64 + (cols_from - x0)) * 3) as usize;
            pixels[dst..dst + len].copy_from_slice(&image.pixels[src..src + len]);
        }
    }
    let scale = out as f32 / region as f32;
    let resized = resize(&pixels, region, out)?;
    let target = [(x - x0 as f32) * scale, (y - y0 as f32) * scale, w * scale, h * scale];
    Ok(Neighbourhood { image: RgbImage::new(out as u32, out as u32, resized), target })
}

fn resize(pixels: &[u8], from: usize, to: usize) -> Result<Vec<u8>, DetectorError> {
    if from == to {
        return Ok(pixels.to_vec());
    }
    let flat = Mat::new_rows_cols_with_data(from as i32, (from * 3) as i32, pixels)?;
    let src = flat.reshape(3, from as i32)?;
    let mut dst = Mat::default();
    let interpolation = if to < from { imgproc::INTER_AREA } else { imgproc::INTER_LINEAR };
    imgproc::resize(&src, &mut dst, Size::new(to as i32, to as i32), 0.0, 0.0, interpolation)?;
    Ok(dst.data_bytes()?.to_vec())
}

/// The image flipped left to right.
pub fn mirrored(image: &RgbImage) -> RgbImage {
    let width = image.width as usize;
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for row in image.pixels.chunks_exact(width * 3) {
        for px in row.chunks_exact(3).rev() {
            pixels.extend_from_slice(px);
        }
    }
    RgbImage::new(image.width, image.height, pixels)
}

/// IoU of two x, y, w, h boxes.
pub fn overlap(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let h = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The best score among `found` (x, y, w, h, score) overlapping `target` at IoU >= 0.5; 0 if none.
pub fn best_overlapping(found: &[([f32; 4], f32)], target: &[f32; 4]) -> f32 {
    found.iter().filter(|(b, _)| overlap(b, target) >= 0.5).map(|(_, s)| *s).fold(0.0, f32::max)
}

/// Looks again at `detection` with `detect` (the detector at a given input, returning x, y, w,
/// h and score in that input's pixels).
pub fn look_again<F>(
    image: &RgbImage,
    detection: &Detection,
    params: &SecondLookParams,
    detect: F,
) -> Result<Look, DetectorError>
where
    F: Fn(&RgbImage) -> Result<Vec<([f32; 4], f32)>, DetectorError>,
{
    let near = neighbourhood(image, &detection.exact, params)?;
    let plain = best_overlapping(&detect(&near.image)?, &near.target);
    let width = near.image.width as f32;
    let flipped: Vec<([f32; 4], f32)> =
        detect(&mirrored(&near.image))?.into_iter().map(|([x, y, w, h], s)| ([width - x - w, y, w, h], s)).collect();
    let mirrored = best_overlapping(&flipped, &near.target);
    Ok(Look { plain, mirrored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> RgbImage {
        let pixels = (0..width * height).flat_map(|i| [(i % width) as u8, (i / width) as u8, 7]).collect();
        RgbImage::new(width, height, pixels)
    }

    #[test]
    fn the_neighbourhood_is_centred_on_the_box_at_the_chosen_scale() {
        let image = gradient(200, 100);
        let params = SecondLookParams { face: 20.0, context: 2.0, threshold: 0.6 };
        // A 40 px box: the region is 80 px, shrunk to 40.
        let near = neighbourhood(&image, &[100.0, 30.0, 40.0, 40.0], &params).unwrap();
        assert_eq!((near.image.width, near.image.height), (40, 40));
        let close = |a: f32, b: f32| (a - b).abs() < 1e-4;
        assert!(close(near.target[0], 10.0) && close(near.target[2], 20.0), "{:?}", near.target);
        // Region x from 80 to 160: the middle pixel's red channel is about 120.
        let mid = ((20 * 40 + 20) * 3) as usize;
        assert!((near.image.pixels[mid] as i32 - 120).abs() <= 2, "{}", near.image.pixels[mid]);
        // Region y from 10 to 90 stays inside; x inside too: no black.
        assert!(near.image.pixels.chunks_exact(3).all(|p| p[2] == 7));
    }

    #[test]
    fn outside_the_photo_is_black_and_the_mirror_flips_rows() {
        let image = gradient(50, 50);
        let params = SecondLookParams { face: 25.0, context: 2.0, threshold: 0.6 };
        let near = neighbourhood(&image, &[0.0, 0.0, 25.0, 25.0], &params).unwrap();
        assert_eq!(near.image.width, 50);
        assert_eq!(&near.image.pixels[..3], &[0, 0, 0]);
        let flipped = mirrored(&near.image);
        assert_eq!(flipped.pixels[..3], near.image.pixels[49 * 3..50 * 3]);
        assert_eq!(mirrored(&flipped), near.image);
    }

    #[test]
    fn a_look_counts_only_faces_on_the_box_and_mirrored_boxes_are_flipped_back() {
        let image = gradient(100, 100);
        let params = SecondLookParams { face: 50.0, context: 2.0, threshold: 0.6 };
        let det = Detection::from_box(super::super::detector::FaceBox { x: 10, y: 25, w: 50, h: 50, neighbours: 0 });
        // The neighbourhood is 100 px from x = -15: the box sits at 25..75; a fake detector finds a
        // face at 25 (on the box) with 0.8 and one at 0 (off it) with 0.9, whatever it is shown.
        let look = look_again(&image, &det, &params, |_| {
            Ok(vec![([25.0, 25.0, 50.0, 50.0], 0.8), ([0.0, 0.0, 20.0, 20.0], 0.9)])
        })
        .unwrap();
        assert_eq!(look, Look { plain: 0.8, mirrored: 0.8 });
        // A face found right of the box: mirrored back it lies left of it and does not count.
        let look = look_again(&image, &det, &params, |_| Ok(vec![([60.0, 25.0, 40.0, 50.0], 0.7)])).unwrap();
        assert_eq!(look, Look { plain: 0.0, mirrored: 0.0 });
        assert!((Look { plain: 0.6, mirrored: 0.3 }.mean_with(0.9) - 0.6).abs() < 1e-6);
    }
}
