//! losses.csv and losses.png: the loss rows a run logs, their plot, and reading them back so that
//! a resumed run continues its own log.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::plots::{write_line_plot, Legend, LinePlot, Panel, Series};

/// One row of losses.csv.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossRow {
    pub step: u64,
    pub epoch: u64,
    pub loss_d: f64,
    pub loss_g: f64,
    pub d_real: f64,
    pub d_fake: f64,
    pub images_per_s: f64,
}

const CSV_HEADER: &str = "step,epoch,loss_d,loss_g,d_x,d_g_z,images_per_s";

pub(super) fn write_losses(rows: &[LossRow], output: &Path) -> Result<()> {
    let mut csv = format!("{CSV_HEADER}\n");
    for r in rows {
        csv.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.1}\n",
            r.step, r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake, r.images_per_s
        ));
    }
    fsutil::write_atomic(&output.join("losses.csv"), csv.as_bytes())?;
    if rows.is_empty() {
        // A checkpoint before the first loss row (train.checkpoint_every < train.log_every): no plot yet.
        return Ok(());
    }
    let pts = |f: fn(&LossRow) -> f64| rows.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    let (ld, lg, dx, dgz) = (pts(|r| r.loss_d), pts(|r| r.loss_g), pts(|r| r.d_real), pts(|r| r.d_fake));
    Ok(write_line_plot(&loss_plot(&ld, &lg, &dx, &dgz), &output.join("losses.png"))?)
}

/// Losses on top, D's mean outputs (probabilities, 0 to 1) below, over the step.
pub fn loss_plot<'a>(
    ld: &'a [(f64, f64)],
    lg: &'a [(f64, f64)],
    dx: &'a [(f64, f64)],
    dgz: &'a [(f64, f64)],
) -> LinePlot<'a> {
    let (red, blue) = ([200, 30, 30], [30, 60, 200]);
    LinePlot {
        title: "Training: losses and D's outputs",
        x_title: "step",
        panels: vec![
            Panel {
                y_title: "loss",
                legend: Legend::UpperRight,
                y_range: None,
                series: vec![
                    Series { name: "D loss", color: red, points: ld, dots: false },
                    Series { name: "G loss", color: blue, points: lg, dots: false },
                ],
            },
            Panel {
                y_title: "D's mean output",
                // D(x) tends to 1 and D(G(z)) to 0: the middle is where neither curve usually is.
                legend: Legend::MiddleRight,
                y_range: Some((0.0, 1.0)),
                series: vec![
                    Series { name: "D(x), real", color: red, points: dx, dots: false },
                    Series { name: "D(G(z)), generated", color: blue, points: dgz, dots: false },
                ],
            },
        ],
    }
}

pub(super) fn read_losses(path: &Path, up_to_step: u64) -> Result<Vec<LossRow>> {
    Ok(read_step_rows(path, 7, up_to_step)?
        .into_iter()
        .map(|f| LossRow {
            step: f[0] as u64,
            epoch: f[1] as u64,
            loss_d: f[2],
            loss_g: f[3],
            d_real: f[4],
            d_fake: f[5],
            images_per_s: f[6],
        })
        .collect())
}

/// The rows of a per-step CSV an earlier run wrote (step first), each of `columns` numbers, up to
/// `up_to_step`: none when there is no file, so that a resumed run continues its own log.
pub(super) fn read_step_rows(path: &Path, columns: usize, up_to_step: u64) -> Result<Vec<Vec<f64>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: unreadable", path.display())),
    };
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect();
        if f.len() != columns {
            bail!("{}: row {line:?} does not have {columns} columns", path.display());
        }
        if f[0] as u64 <= up_to_step {
            rows.push(f);
        }
    }
    Ok(rows)
}
