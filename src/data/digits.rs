//! OpenCV's handwritten digits sheet (`digits.png` of Debian's opencv-doc): 5,000 grey 20x20
//! digits in one 2000x1000 image, 50 rows of 100 tiles, five rows per digit 0..9 (the layout
//! OpenCV's own digits samples read it with).
//!
//! The split is fixed: every fifth tile of each digit in sheet order (its 5th, 10th, ... tile, so
//! each of the digit's five rows gives 20) is a test tile: 4,000 training and 1,000 test digits,
//! 400 and 100 per digit. Tiles are upscaled (bilinear) to the side a model takes and the grey
//! value is copied to R, G and B, so the RGB presets and the committed discriminator take them
//! as they are.
//!
//! The sheet is read directly wherever a labelled set is read ([`super::open_labeled`]: `train`,
//! `cifar-eval`), and [`write_class_folders`] writes it as `train/<digit>/*.png` and
//! `test/<digit>/*.png` for anything that takes class folders or photos.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::GrayImage;

use super::cifar::Split;
use super::packed::LabeledImages;

/// Where Debian's opencv-doc installs the sheet.
pub const DIGITS_SHEET: &str = "/usr/share/doc/opencv-doc/examples/data/digits.png";

/// A tile's side in the sheet.
pub const TILE: u32 = 20;
const COLUMNS: u32 = 100;
const ROWS: u32 = 50;
const ROWS_PER_DIGIT: u32 = 5;
const SHEET_WIDTH: u32 = COLUMNS * TILE;
const SHEET_HEIGHT: u32 = ROWS * TILE;
/// One test tile in this many of each digit.
const TEST_EVERY: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DigitsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable image: {why}")]
    Decode { path: PathBuf, why: String },
    #[error("{path}: {width}x{height} pixels; OpenCV's digits sheet is {SHEET_WIDTH}x{SHEET_HEIGHT} (50 rows of 100 tiles of 20x20)")]
    WrongSize { path: PathBuf, width: u32, height: u32 },
}

/// The 5,000 tiles in sheet order (row by row, left to right), with their digits.
#[derive(Debug, Clone)]
pub struct DigitTiles {
    /// 20x20 grey tiles, 400 bytes each, row-major.
    pub tiles: Vec<u8>,
    pub labels: Vec<i64>,
}

/// True when `path` is a PNG file whose header says 2000x1000: the digits sheet (nothing else in
/// the pipeline's inputs is one PNG of that size). Reads 24 bytes.
pub fn is_digits_sheet(path: &Path) -> bool {
    let mut head = [0u8; 24];
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    if !path.is_file() || f.read_exact(&mut head).is_err() {
        return false;
    }
    let be = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    head.starts_with(b"\x89PNG\r\n\x1a\n")
        && &head[12..16] == b"IHDR"
        && be(16) == SHEET_WIDTH
        && be(20) == SHEET_HEIGHT
}

/// Reads the sheet and cuts it into tiles.
pub fn read_sheet(path: &Path) -> Result<DigitTiles, DigitsError> {
    let bytes = std::fs::read(path).map_err(|source| DigitsError::Io { path: path.to_owned(), source })?;
    let sheet = image::load_from_memory(&bytes)
        .map_err(|e| DigitsError::Decode { path: path.to_owned(), why: e.to_string() })?
        .to_luma8();
    if sheet.dimensions() != (SHEET_WIDTH, SHEET_HEIGHT) {
        return Err(DigitsError::WrongSize { path: path.to_owned(), width: sheet.width(), height: sheet.height() });
    }
    let mut tiles = Vec::with_capacity((ROWS * COLUMNS * TILE * TILE) as usize);
    let mut labels = Vec::with_capacity((ROWS * COLUMNS) as usize);
    for row in 0..ROWS {
        for col in 0..COLUMNS {
            for y in 0..TILE {
                let start = ((row * TILE + y) * SHEET_WIDTH + col * TILE) as usize;
                tiles.extend_from_slice(&sheet.as_raw()[start..start + TILE as usize]);
            }
            labels.push((row / ROWS_PER_DIGIT) as i64);
        }
    }
    Ok(DigitTiles { tiles, labels })
}

/// Whether the `index`-th tile of the sheet (sheet order) is in the test split.
pub fn is_test_tile(index: usize) -> bool {
    // Position within its digit's 500 tiles.
    let within = index % (ROWS_PER_DIGIT * COLUMNS) as usize;
    within % TEST_EVERY == TEST_EVERY - 1
}

impl DigitTiles {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Tile `i` as a 20x20 grey image.
    pub fn tile(&self, i: usize) -> GrayImage {
        let n = (TILE * TILE) as usize;
        GrayImage::from_raw(TILE, TILE, self.tiles[i * n..(i + 1) * n].to_vec()).expect("20x20 bytes")
    }

    /// Sheet indices of `split`, in sheet order.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.len()).filter(|&i| is_test_tile(i) == (split == Split::Test)).collect()
    }

    /// Tile `i` upscaled to `side` x `side` (bilinear), grey copied to R, G and B.
    pub fn rgb(&self, i: usize, side: u32) -> Vec<u8> {
        let tile = self.tile(i);
        let grey = if side == TILE { tile } else { image::imageops::resize(&tile, side, side, FilterType::Triangle) };
        grey.as_raw().iter().flat_map(|&v| [v, v, v]).collect()
    }

    /// One split as `side` x `side` RGB images with labels 0..9 (classes "0".."9").
    pub fn split(&self, split: Split, side: u32) -> LabeledImages {
        let indices = self.indices(split);
        let mut images = Vec::with_capacity(indices.len() * (side * side * 3) as usize);
        for &i in &indices {
            images.extend_from_slice(&self.rgb(i, side));
        }
        LabeledImages {
            height: side,
            width: side,
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: (0..10).map(|d| d.to_string()).collect(),
        }
    }
}

/// Writes `<root>/{train,test}/<digit>/<sheet index>.png` (`side` x `side`, RGB); returns the
/// number of images written. Files already there are left alone (a re-run is cheap), but only
/// when they are `side` x `side`: a folder written with another side is refused, naming a file,
/// before anything is written (it said "64x64" over files that stayed 32x32).
pub fn write_class_folders(tiles: &DigitTiles, root: &Path, side: u32) -> std::io::Result<usize> {
    let path_of = |i: usize| {
        let split = if is_test_tile(i) { Split::Test } else { Split::Train };
        root.join(split.folder_name()).join(tiles.labels[i].to_string()).join(format!("{i:04}.png"))
    };
    for i in 0..tiles.len() {
        let path = path_of(i);
        if !path.exists() {
            continue;
        }
        let found = image::image_dimensions(&path).map_err(|e| {
            std::io::Error::other(format!("{}: already there but not a readable PNG ({e})", path.display()))
        })?;
        if found != (side, side) {
            return Err(std::io::Error::other(format!(
                "{} is {}x{}, and --side {side} asks for {side}x{side} (files already there are kept): choose \
                 another --output, or remove this one",
                path.display(),
                found.0,
                found.1
            )));
        }
    }
    let mut written = 0;
    for i in 0..tiles.len() {
        let path = path_of(i);
        let dir = path.parent().expect("a class folder");
        if path.exists() {
            continue;
        }
        std::fs::create_dir_all(dir)?;
        let mut png = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_raw(side, side, tiles.rgb(i, side))
            .expect("side x side x 3 bytes")
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&path, png.get_ref())?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fifth_tile_of_each_digit_is_a_test_tile() {
        let test: Vec<usize> = (0..5000).filter(|&i| is_test_tile(i)).collect();
        assert_eq!(test.len(), 1000);
        for d in 0..10 {
            let of_digit = test.iter().filter(|&&i| i / 500 == d).count();
            assert_eq!(of_digit, 100, "digit {d}");
        }
        assert!(is_test_tile(4) && is_test_tile(9) && !is_test_tile(0) && !is_test_tile(5));
    }

    #[test]
    fn a_png_of_another_size_is_not_the_sheet_and_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.png");
        GrayImage::new(200, 100).save(&path).unwrap();
        assert!(!is_digits_sheet(&path));
        let e = read_sheet(&path).unwrap_err().to_string();
        assert!(e.contains("small.png") && e.contains("200x100"), "{e}");
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        assert!(read_sheet(&junk).unwrap_err().to_string().contains("junk.png"));
    }
}
