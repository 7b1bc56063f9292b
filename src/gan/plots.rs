//! Grids of generated images as PNG (the loss plot is drawn by [`crate::plots`]).

use std::path::Path;

use tch::Tensor;

/// Lays images (N x 3 x H x W in [-1, 1]) out in a grid with `cols` columns and a 2-pixel gap,
/// each image magnified `scale` times (nearest), and writes it as PNG.
pub fn write_sample_grid(images: &Tensor, cols: usize, scale: u32, path: &Path) -> anyhow::Result<()> {
    let images = ((images.to_device(tch::Device::Cpu).clamp(-1.0, 1.0) + 1.0) * 127.5)
        .round()
        .to_kind(tch::Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous();
    let size = images.size();
    let (n, h, w) = (size[0] as usize, size[1] as u32, size[2] as u32);
    let pixels: Vec<u8> = Vec::<u8>::try_from(images.flatten(0, -1))?;
    let tiles: Vec<&[u8]> = pixels.chunks_exact((h * w * 3) as usize).take(n).collect();
    let grid = crate::pictures::grid::tile_grid(&tiles, w, h, cols, scale, 2);
    Ok(crate::plots::write_png(&grid, path)?)
}
