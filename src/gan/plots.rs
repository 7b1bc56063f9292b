//! PNG outputs of training: a grid of samples, and the loss curves.

use std::path::Path;

use image::{Rgb, RgbImage};
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
    let grid = crate::report::html::tile_grid(&tiles, w, h, cols, scale, 2);
    save_png(&grid, path)
}

fn save_png(image: &RgbImage, path: &Path) -> anyhow::Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png)?;
    crate::fsutil::write_atomic(path, bytes.get_ref())?;
    Ok(())
}

/// One curve of a plot panel.
pub struct Series<'a> {
    pub color: [u8; 3],
    pub points: &'a [(f64, f64)],
}

fn draw_line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: [u8; 3]) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, Rgb(color));
            }
        }
    }
}

/// Panels stacked vertically, each with its own y range (padded 5%) and a shared x range; light
/// grid lines at quarters. No text: the colours are documented where the plot is written, and the
/// numbers are in the CSV beside it.
pub fn write_line_plot(panels: &[Vec<Series>], path: &Path) -> anyhow::Result<()> {
    let (width, panel_h, margin) = (800u32, 300u32, 20u32);
    let mut img = RgbImage::from_pixel(width, panels.len() as u32 * (panel_h + margin) + margin, Rgb([255, 255, 255]));
    let all_x = panels.iter().flatten().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_min, x_max) = all_x.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    for (k, panel) in panels.iter().enumerate() {
        let top = margin + k as u32 * (panel_h + margin);
        let (left, right, bottom) = (margin as f64, (width - margin) as f64, (top + panel_h) as f64);
        let ys = panel.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite());
        let (mut y_min, mut y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
        if !y_min.is_finite() {
            continue;
        }
        let pad = ((y_max - y_min) * 0.05).max(1e-6);
        y_min -= pad;
        y_max += pad;
        for q in 0..=4 {
            let y = top as f64 + panel_h as f64 * q as f64 / 4.0;
            draw_line(&mut img, (left, y), (right, y), [225, 225, 225]);
            let x = left + (right - left) * q as f64 / 4.0;
            draw_line(&mut img, (x, top as f64), (x, bottom), [225, 225, 225]);
        }
        let to_px = |(x, y): (f64, f64)| {
            let fx = if x_max > x_min { (x - x_min) / (x_max - x_min) } else { 0.5 };
            (left + fx * (right - left), bottom - (y - y_min) / (y_max - y_min) * panel_h as f64)
        };
        for series in panel {
            for pair in series.points.windows(2) {
                if pair[0].1.is_finite() && pair[1].1.is_finite() {
                    draw_line(&mut img, to_px(pair[0]), to_px(pair[1]), series.color);
                }
            }
        }
        draw_line(&mut img, (left, top as f64), (left, bottom), [0, 0, 0]);
        draw_line(&mut img, (left, bottom), (right, bottom), [0, 0, 0]);
    }
    save_png(&img, path)
}
