//! RGB tiles laid out in a grid: contact sheets, sample grids.

use image::{Rgb, RgbImage};

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
