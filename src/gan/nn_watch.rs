//! During training, a cheap watch on copying: at every epoch's end, the mean distance from G's
//! images for the fixed z to their nearest image among a fixed subset of the training set, beside
//! the same for real training images outside that subset (what a new real image scores). A
//! generator that starts to copy shows its curve falling below the real images' line.
//! Written to nn_distance.csv and nn_distance.png beside losses.png.

use std::path::Path;

use anyhow::Result;
use tch::Tensor;

use super::copying::to_pixels;
use super::loss_log::read_step_rows;
use super::trainer::epoch_permutation;
use crate::neighbours::{nearest, PixelRows};
use crate::plots::{write_line_plot, Legend, LinePlot, Panel, Series};

/// Training images searched, and real images measured against them (not among them).
const SUBSET: usize = 2048;
const PROBE: usize = 64;
pub const CSV: &str = "nn_distance.csv";
pub const PNG: &str = "nn_distance.png";
const HEADER: &str = "step,epoch,mean_nn_generated,mean_nn_real";

/// One row of nn_distance.csv.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NnRow {
    pub step: u64,
    pub epoch: u64,
    pub mean_nn_generated: f64,
    pub mean_nn_real: f64,
}

pub struct NnWatch {
    subset: Vec<u8>,
    dims: usize,
    /// Real training images outside the subset: their mean distance to it (NaN for a set too small).
    mean_nn_real: f64,
    pub rows: Vec<NnRow>,
}

fn mean_nearest(reference: &[u8], queries: &[u8], dims: usize) -> Result<f64> {
    let found = nearest(PixelRows::new("subset", reference, dims)?, PixelRows::new("queries", queries, dims)?, 1)?;
    let d = found.nearest_distances();
    Ok(d.iter().sum::<f64>() / d.len().max(1) as f64)
}

impl NnWatch {
    /// The subset and the real probe from `images` (uint8 N x H x W x 3, any device), chosen by
    /// `seed`; rows of an earlier run up to `start_step` read from `output`.
    pub fn new(images: &Tensor, seed: u64, output: &Path, start_step: u64) -> Result<Self> {
        let size = images.size();
        let (n, dims) = (size[0] as usize, (size[1] * size[2] * size[3]) as usize);
        let order = epoch_permutation(n, seed, u64::MAX - 1);
        let probe = PROBE.min(n / 4);
        let pick = |ids: &[i64]| -> Result<Vec<u8>> {
            let index = Tensor::from_slice(ids).to_device(images.device());
            Ok(Vec::<u8>::try_from(images.index_select(0, &index).to_device(tch::Device::Cpu).flatten(0, -1))?)
        };
        let subset = pick(&order[probe..(probe + SUBSET).min(n)])?;
        let mean_nn_real = if probe > 0 { mean_nearest(&subset, &pick(&order[..probe])?, dims)? } else { f64::NAN };
        Ok(Self { subset, dims, mean_nn_real, rows: read_rows(&output.join(CSV), start_step)? })
    }

    /// Measures G's images for the fixed z (N x 3 x H x W in [-1, 1]) at `step`.
    pub fn observe(&mut self, step: u64, epoch: u64, samples: &Tensor) -> Result<NnRow> {
        let row = NnRow {
            step,
            epoch,
            mean_nn_generated: mean_nearest(&self.subset, &to_pixels(samples)?, self.dims)?,
            mean_nn_real: self.mean_nn_real,
        };
        self.rows.retain(|r| r.step != step);
        self.rows.push(row);
        Ok(row)
    }

    /// nn_distance.csv and nn_distance.png in `output`.
    pub fn write(&self, output: &Path) -> Result<()> {
        let mut csv = format!("{HEADER}\n");
        for r in &self.rows {
            csv.push_str(&format!("{},{},{:.6},{:.6}\n", r.step, r.epoch, r.mean_nn_generated, r.mean_nn_real));
        }
        crate::fsutil::write_atomic(&output.join(CSV), csv.as_bytes())?;
        if self.rows.is_empty() {
            return Ok(());
        }
        let gen: Vec<(f64, f64)> = self.rows.iter().map(|r| (r.step as f64, r.mean_nn_generated)).collect();
        let real: Vec<(f64, f64)> = self.rows.iter().map(|r| (r.step as f64, r.mean_nn_real)).collect();
        let plot = LinePlot {
            title: "Distance to the nearest training image (a subset of 2,048)",
            x_title: "step",
            panels: vec![Panel {
                y_title: "mean RMS pixel distance",
                legend: Legend::UpperRight,
                y_range: None,
                series: vec![
                    Series { name: "G(z), the fixed z", color: [200, 30, 30], points: &gen, dots: true },
                    Series { name: "real images outside the subset", color: [30, 60, 200], points: &real, dots: false },
                ],
            }],
        };
        Ok(write_line_plot(&plot, &output.join(PNG))?)
    }
}

/// Rows of an earlier run up to `up_to_step` (none when there is no file).
fn read_rows(path: &Path, up_to_step: u64) -> Result<Vec<NnRow>> {
    Ok(read_step_rows(path, 4, up_to_step)?
        .into_iter()
        .map(|f| NnRow { step: f[0] as u64, epoch: f[1] as u64, mean_nn_generated: f[2], mean_nn_real: f[3] })
        .collect())
}
