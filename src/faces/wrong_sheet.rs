//! `faces --eval-boxes`' picture of its mistakes: each wrong box (a kept box on no face) cut from
//! its photo with some of its surroundings, the box drawn in red, tiled in a PNG so that a person
//! can see what kind of non-faces the detector keeps.

use std::path::Path;

use super::eval::Kept;
use crate::imageops::{decode_rgb_with_libjpeg, DecodeOptions, RgbImage};

pub const FILE_NAME: &str = "eval-wrong-boxes.png";
/// Each tile's side (px).
pub const TILE: u32 = 96;
const COLUMNS: u32 = 8;
const GAP: u32 = 2;
/// A sheet shows at most this many boxes (the first, in the ground truth's order).
pub const MAX_TILES: usize = 240;

/// One tile: the square of side 1.6 x the box's longer side around its centre (black outside
/// the photo), resized to [`TILE`] by nearest pixel, with the box outlined in red.
pub fn tile(image: &RgbImage, bbox: &[f64; 4]) -> Vec<u8> {
    let [x, y, w, h] = *bbox;
    let side = (w.max(h) * 1.6).max(1.0);
    let (x0, y0) = (x + w / 2.0 - side / 2.0, y + h / 2.0 - side / 2.0);
    let step = side / TILE as f64;
    let mut out = vec![0u8; (TILE * TILE * 3) as usize];
    for ty in 0..TILE {
        for tx in 0..TILE {
            let sx = (x0 + (tx as f64 + 0.5) * step).floor();
            let sy = (y0 + (ty as f64 + 0.5) * step).floor();
            if sx >= 0.0 && sy >= 0.0 && sx < image.width as f64 && sy < image.height as f64 {
                let px = image.pixel(sx as u32, sy as u32);
                let at = ((ty * TILE + tx) * 3) as usize;
                out[at..at + 3].copy_from_slice(&px);
            }
        }
    }
    // The box's outline in tile pixels.
    let to_tile = |v: f64, origin: f64| (((v - origin) / step).round() as i64).clamp(0, TILE as i64 - 1) as u32;
    let (left, right) = (to_tile(x, x0), to_tile(x + w, x0));
    let (top, bottom) = (to_tile(y, y0), to_tile(y + h, y0));
    let mut red = |tx: u32, ty: u32| {
        let at = ((ty * TILE + tx) * 3) as usize;
        out[at..at + 3].copy_from_slice(&[255, 0, 0]);
    };
    for tx in left..=right {
        red(tx, top);
        red(tx, bottom);
    }
    for ty in top..=bottom {
        red(left, ty);
        red(right, ty);
    }
    out
}

/// Tiles in rows of [`COLUMNS`] on a grey background.
pub fn grid(tiles: &[Vec<u8>]) -> image::RgbImage {
    let columns = (tiles.len() as u32).clamp(1, COLUMNS);
    let rows = (tiles.len() as u32).div_ceil(COLUMNS).max(1);
    let width = columns * (TILE + GAP) + GAP;
    let height = rows * (TILE + GAP) + GAP;
    let mut sheet = image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 128]));
    for (k, tile) in tiles.iter().enumerate() {
        let (col, row) = (k as u32 % COLUMNS, k as u32 / COLUMNS);
        let (ox, oy) = (GAP + col * (TILE + GAP), GAP + row * (TILE + GAP));
        for (i, px) in tile.chunks_exact(3).enumerate() {
            let (tx, ty) = (i as u32 % TILE, i as u32 / TILE);
            sheet.put_pixel(ox + tx, oy + ty, image::Rgb([px[0], px[1], px[2]]));
        }
    }
    sheet
}

#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    #[error("{path}: cannot draw its wrong boxes: {why}")]
    Photo { path: String, why: String },
    #[error("{0}")]
    Write(String),
}

/// Draws the wrong boxes (photos read from `folder`, decoded as the stage decodes them, so that
/// the boxes sit where the stage saw them) into `path`; returns how many it drew.
pub fn write(folder: &Path, wrong: &[(String, Kept)], path: &Path) -> Result<usize, SheetError> {
    // A photo the stage kept as damaged (keep_damaged) is drawn as it was seen.
    let options = DecodeOptions { max_pixels: u32::MAX as u64, min_decoded_side: None, keep_damaged: true };
    let mut tiles = Vec::new();
    let mut current: Option<(&str, RgbImage)> = None;
    for (file, kept) in wrong.iter().take(MAX_TILES) {
        if current.as_ref().map(|(f, _)| *f) != Some(file.as_str()) {
            let source = folder.join(file);
            let err = |why: String| SheetError::Photo { path: source.display().to_string(), why };
            let bytes = std::fs::read(&source).map_err(|e| err(e.to_string()))?;
            let decoded = decode_rgb_with_libjpeg(&bytes, &options).map_err(|e| err(e.to_string()))?;
            current = Some((file.as_str(), decoded.image));
        }
        let (_, image) = current.as_ref().expect("decoded above");
        tiles.push(tile(image, &kept.bbox));
    }
    let sheet = grid(&tiles);
    let mut bytes = std::io::Cursor::new(Vec::new());
    sheet.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| SheetError::Write(e.to_string()))?;
    crate::fsutil::write_atomic(path, bytes.get_ref()).map_err(|e| SheetError::Write(e.to_string()))?;
    Ok(tiles.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_shows_the_box_outlined_and_black_outside_the_photo() {
        let image = RgbImage::new(100, 100, vec![200; 100 * 100 * 3]);
        // A 50 px box at the corner: the tile spans 80 px from -15, so its top-left is outside.
        let t = tile(&image, &[0.0, 0.0, 50.0, 50.0]);
        assert_eq!(&t[..3], &[0, 0, 0]);
        let at = |x: u32, y: u32| &t[((y * TILE + x) * 3) as usize..((y * TILE + x) * 3 + 3) as usize];
        // The box's left edge: (0 + 15) / (80 / 96) = 18 px into the tile.
        assert_eq!(at(18, 40), &[255, 0, 0]);
        assert_eq!(at(40, 40), &[200, 200, 200]);
        let sheet = grid(&[t.clone(), t.clone(), t]);
        assert_eq!((sheet.width(), sheet.height()), (3 * (TILE + GAP) + GAP, TILE + 2 * GAP));
        assert_eq!(grid(&vec![vec![0; (TILE * TILE * 3) as usize]; 9]).height(), 2 * (TILE + GAP) + GAP);
    }
}
