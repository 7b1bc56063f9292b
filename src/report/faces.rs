//! The faces section's pictures: photos with their boxes and landmarks drawn, and each kept face
//! cropped both ways ("box" and "eyes"), read back from the photos that the run's manifest names.

use std::path::Path;

use serde_json::Value;

use crate::faces::align::{crop_rotated, eyes_square};
use crate::faces::detector::FaceBox;
use crate::faces::geometry::{crop_square, face_square, Border};
use crate::imageops::{decode_rgb_with_libjpeg, DecodeOptions, RgbImage};
use crate::pictures::data_uri::rgb_data_uri;

/// Width of a drawn photo in the page.
const DRAWN_WIDTH: u32 = 360;
/// Side of the crops shown (the stage's default).
const CROP_SIDE: u32 = 64;

/// One photo with kept faces.
pub struct DrawnPhoto {
    pub source: String,
    pub uri: String,
    /// Per kept face: its box crop, its eyes crop (none without landmarks), and its score.
    pub crops: Vec<(String, Option<String>, String)>,
}

/// The first `limit` photos of a faces run with a kept face, drawn; none when the photos cannot
/// be read (an archive input, a moved folder).
pub fn drawn_photos(dir: &Path, input: &str, limit: usize) -> Vec<DrawnPhoto> {
    let text = std::fs::read_to_string(dir.join("manifest.jsonl")).unwrap_or_default();
    let rows = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
    rows.filter(|r| r["faces"].as_u64().unwrap_or(0) > 0)
        .filter_map(|row| draw_photo(Path::new(input), &row))
        .take(limit)
        .collect()
}

fn face_box(b: &Value) -> FaceBox {
    let get = |k: &str| b[k].as_i64().unwrap_or(0) as i32;
    FaceBox { x: get("x"), y: get("y"), w: get("w"), h: get("h"), neighbours: 0 }
}

fn landmarks(b: &Value) -> Option<[[f32; 2]; 5]> {
    let points = b["landmarks"].as_array()?;
    let coords: Vec<f32> = points
        .iter()
        .flat_map(|p| p.as_array().into_iter().flatten())
        .filter_map(Value::as_f64)
        .map(|v| v as f32)
        .collect();
    (coords.len() == 10).then(|| std::array::from_fn(|n| [coords[2 * n], coords[2 * n + 1]]))
}

fn draw_photo(input: &Path, row: &Value) -> Option<DrawnPhoto> {
    let source = row["source"].as_str()?;
    // The manifest keeps names in the sources' lossless escape: the file is at the decoded bytes.
    let raw = crate::data::names::decode_name(source).unwrap_or_else(|| source.as_bytes().to_vec());
    let bytes = std::fs::read(input.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&raw))).ok()?;
    let options = DecodeOptions::checked(1 << 28);
    let photo = decode_rgb_with_libjpeg(&bytes, &options).ok()?.image;
    let scale = (DRAWN_WIDTH as f32 / photo.width as f32).min(1.0);
    let mut small = shrink(&photo, scale)?;
    let mut crops = Vec::new();
    for b in row["boxes"].as_array()? {
        let face = face_box(b);
        let kept = b["kept"] == Value::Bool(true);
        let colour = if kept { [40, 220, 60] } else { [160, 160, 160] };
        draw_rect(&mut small, &face, scale, colour);
        let points = landmarks(b);
        for (k, p) in points.iter().flatten().enumerate() {
            const COLOURS: [[u8; 3]; 5] = [[255, 60, 60], [60, 120, 255], [255, 220, 0], [255, 0, 255], [0, 230, 230]];
            draw_dot(&mut small, p[0] * scale, p[1] * scale, COLOURS[k]);
        }
        if kept {
            let square = face_square(&face, 0.0, Border::Clamp, photo.width, photo.height);
            let boxed = crop_square(&photo, square, CROP_SIDE).ok()?;
            let eyes = points.and_then(|p| crop_rotated(&photo, &eyes_square(&p, 0.0), CROP_SIDE).ok());
            let score = b["score"].as_f64().map_or(String::new(), |s| format!("{s:.2}"));
            crops.push((
                rgb_data_uri(&boxed, CROP_SIDE, CROP_SIDE),
                eyes.map(|e| rgb_data_uri(&e, CROP_SIDE, CROP_SIDE)),
                score,
            ));
        }
    }
    let uri = rgb_data_uri(&small.pixels, small.width, small.height);
    Some(DrawnPhoto { source: source.to_string(), uri, crops })
}

fn shrink(photo: &RgbImage, scale: f32) -> Option<RgbImage> {
    let (w, h) =
        (((photo.width as f32 * scale).round() as u32).max(1), ((photo.height as f32 * scale).round() as u32).max(1));
    let img = image::RgbImage::from_raw(photo.width, photo.height, photo.pixels.clone())?;
    let small = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    Some(RgbImage::new(w, h, small.into_raw()))
}

fn put(image: &mut RgbImage, x: i64, y: i64, colour: [u8; 3]) {
    if x >= 0 && y >= 0 && x < image.width as i64 && y < image.height as i64 {
        let at = ((y as u32 * image.width + x as u32) * 3) as usize;
        image.pixels[at..at + 3].copy_from_slice(&colour);
    }
}

/// A 2-pixel outline of `face` scaled by `scale`.
fn draw_rect(image: &mut RgbImage, face: &FaceBox, scale: f32, colour: [u8; 3]) {
    let x0 = (face.x as f32 * scale).round() as i64;
    let y0 = (face.y as f32 * scale).round() as i64;
    let x1 = ((face.x + face.w) as f32 * scale).round() as i64;
    let y1 = ((face.y + face.h) as f32 * scale).round() as i64;
    for t in 0..2 {
        for x in x0..=x1 {
            put(image, x, y0 + t, colour);
            put(image, x, y1 - t, colour);
        }
        for y in y0..=y1 {
            put(image, x0 + t, y, colour);
            put(image, x1 - t, y, colour);
        }
    }
}

/// A 3 x 3 dot at (x, y).
fn draw_dot(image: &mut RgbImage, x: f32, y: f32, colour: [u8; 3]) {
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for dy in -1..=1 {
        for dx in -1..=1 {
            put(image, cx + dx, cy + dy, colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlines_and_dots_land_on_their_pixels() {
        let mut image = RgbImage::new(20, 20, vec![0; 20 * 20 * 3]);
        draw_rect(&mut image, &FaceBox { x: 4, y: 4, w: 10, h: 8, neighbours: 0 }, 1.0, [0, 255, 0]);
        let at = |img: &RgbImage, x: u32, y: u32| img.pixels[((y * 20 + x) * 3) as usize + 1];
        assert_eq!((at(&image, 4, 4), at(&image, 14, 12), at(&image, 9, 8)), (255, 255, 0));
        draw_dot(&mut image, 9.2, 8.4, [0, 200, 0]);
        assert_eq!((at(&image, 8, 7), at(&image, 10, 9), at(&image, 11, 8)), (200, 200, 0));
    }
}
