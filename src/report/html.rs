//! Small pieces for self-contained HTML pages: escaping, base64 data URIs, image grids.

use std::path::Path;

use image::{Rgb, RgbImage};

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(BASE64[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An RGB image (row-major, 3 bytes a pixel) as a PNG data URI.
pub fn rgb_data_uri(pixels: &[u8], width: u32, height: u32) -> String {
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::write_image(encoder, pixels, width, height, image::ExtendedColorType::Rgb8).expect("PNG of an RGB buffer");
    format!("data:image/png;base64,{}", base64(&png))
}

/// A PNG file as a data URI (None when it cannot be read).
pub fn png_file_data_uri(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    bytes.starts_with(b"\x89PNG").then(|| format!("data:image/png;base64,{}", base64(&bytes)))
}

/// RGB tiles (`width` x `height`, row-major) laid out `cols` wide, each magnified `scale` times
/// (nearest), with a white `gap` around them: a contact sheet or a sample grid.
pub fn tile_grid(tiles: &[&[u8]], width: u32, height: u32, cols: usize, scale: u32, gap: u32) -> RgbImage {
    let cols = cols.max(1);
    let rows = tiles.len().div_ceil(cols).max(1);
    let (cell_w, cell_h) = (width * scale + gap, height * scale + gap);
    let mut grid = RgbImage::from_pixel(cols as u32 * cell_w + gap, rows as u32 * cell_h + gap, Rgb([255, 255, 255]));
    for (i, tile) in tiles.iter().enumerate() {
        let (gx, gy) = ((i % cols) as u32 * cell_w + gap, (i / cols) as u32 * cell_h + gap);
        for y in 0..height * scale {
            for x in 0..width * scale {
                let p = (((y / scale) * width + x / scale) * 3) as usize;
                grid.put_pixel(gx + x, gy + y, Rgb([tile[p], tile[p + 1], tile[p + 2]]));
            }
        }
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn grid_places_each_tile() {
        let red = [255u8, 0, 0].repeat(4);
        let blue = [0u8, 0, 255].repeat(4);
        let grid = tile_grid(&[&red, &blue, &red], 2, 2, 2, 1, 1);
        assert_eq!(grid.dimensions(), (7, 7));
        assert_eq!(grid.get_pixel(1, 1), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(4, 1), &Rgb([0, 0, 255]));
        assert_eq!(grid.get_pixel(1, 4), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(4, 4), &Rgb([255, 255, 255]), "no fourth tile");
        assert_eq!(grid.get_pixel(3, 1), &Rgb([255, 255, 255]), "gap");
    }

    #[test]
    fn grid_magnifies_and_keeps_its_columns() {
        let red = [255u8, 0, 0].repeat(4);
        let grid = tile_grid(&[&red], 2, 2, 3, 2, 2);
        assert_eq!(grid.dimensions(), (3 * 6 + 2, 6 + 2), "three columns even for one tile");
        assert_eq!(grid.get_pixel(2, 2), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(5, 5), &Rgb([255, 0, 0]), "4x4 pixels for a 2x2 tile");
        assert_eq!(grid.get_pixel(6, 2), &Rgb([255, 255, 255]));
    }
}
