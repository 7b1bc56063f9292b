//! The copy test's files: copy_test.json (the settings, C_T and the per-cell table), cells.csv,
//! neighbours.csv (every sample's nearest training image), distances.png (the two distributions
//! of distances, plotted together) and closest.png (the 16 samples nearest to a training image,
//! each beside that image).

use std::path::Path;

use super::copying::{CopyTest, CopyTestSettings, Images};
use crate::plots::{write_line_plot, Legend, LinePlot, Panel, Series};

/// Pairs on the contact sheet.
pub const CLOSEST: usize = 16;
const BINS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Plot(#[from] crate::plots::PlotError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("the test holds no neighbours to write")]
    NoNeighbours,
}

/// The share of `values` in each of `BINS` bins over [0, top], as (bin centre, share).
fn histogram(values: &[f64], top: f64) -> Vec<(f64, f64)> {
    let width = top / BINS as f64;
    let mut counts = vec![0usize; BINS];
    for &v in values {
        counts[((v / width) as usize).min(BINS - 1)] += 1;
    }
    counts.iter().enumerate().map(|(i, &c)| ((i as f64 + 0.5) * width, c as f64 / values.len().max(1) as f64)).collect()
}

/// Both distributions of distances to the nearest training image in one panel.
pub fn write_distance_plot(generated: &[f64], held_out: &[f64], path: &Path) -> Result<(), OutputError> {
    let top = generated.iter().chain(held_out).copied().fold(0.0f64, f64::max).max(1e-6) * 1.02;
    let (g, h) = (histogram(generated, top), histogram(held_out, top));
    let plot = LinePlot {
        title: "Distance to the nearest training image",
        x_title: "RMS pixel distance (0-1 scale)",
        panels: vec![Panel {
            y_title: "share of the set",
            legend: Legend::UpperRight,
            y_range: None,
            series: vec![
                Series { name: "G's samples", color: [200, 30, 30], points: &g, dots: false },
                Series { name: "held-out real images", color: [30, 60, 200], points: &h, dots: false },
            ],
        }],
    };
    Ok(write_line_plot(&plot, path)?)
}

/// The `CLOSEST` samples nearest to a training image, each followed by that image, four pairs a row.
pub fn write_closest_sheet(
    test: &CopyTest,
    training: Images,
    generated: Images,
    path: &Path,
) -> Result<(), OutputError> {
    let nn = test.generated_neighbours.as_ref().ok_or(OutputError::NoNeighbours)?;
    let per = (generated.side * generated.side * 3) as usize;
    let mut order: Vec<usize> = (0..nn.len()).collect();
    order.sort_by_key(|&i| (nn.ssd[i * nn.k], i));
    let mut tiles: Vec<&[u8]> = Vec::with_capacity(2 * CLOSEST);
    for &i in order.iter().take(CLOSEST) {
        let j = nn.nearest(i) as usize;
        tiles.push(&generated.pixels[i * per..(i + 1) * per]);
        tiles.push(&training.pixels[j * per..(j + 1) * per]);
    }
    let scale = if generated.side <= 32 { 2 } else { 1 };
    let sheet = crate::pictures::grid::tile_grid(&tiles, generated.side, generated.side, 8, scale, 2);
    Ok(crate::plots::write_png(&sheet, path)?)
}

fn cells_csv(test: &CopyTest) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.6}"));
    let mut csv = String::from(
        "cell,held_out,generated,held_out_share,used,u,z,median_distance_held_out,median_distance_generated\n",
    );
    for r in &test.cells {
        csv.push_str(&format!(
            "{},{},{},{:.6},{},{},{},{},{}\n",
            r.cell,
            r.held_out,
            r.generated,
            r.held_out_share,
            r.used,
            opt(r.u),
            opt(r.z),
            opt(r.median_distance_held_out),
            opt(r.median_distance_generated)
        ));
    }
    csv
}

fn neighbours_csv(test: &CopyTest) -> Result<String, OutputError> {
    let nn = test.generated_neighbours.as_ref().ok_or(OutputError::NoNeighbours)?;
    let mut csv = String::from("sample,nearest_training_image,distance,squared_difference\n");
    for i in 0..nn.len() {
        csv.push_str(&format!("{i},{},{:.6},{}\n", nn.nearest(i), nn.nearest_distance(i), nn.ssd[i * nn.k]));
    }
    Ok(csv)
}

/// Writes the test's files into `dir` (created), each atomically; returns copy_test.json's value.
/// `about` (where the images came from) is stored with it.
pub fn write_copy_test(
    dir: &Path,
    test: &CopyTest,
    settings: &CopyTestSettings,
    training: Images,
    generated: Images,
    about: serde_json::Value,
) -> Result<serde_json::Value, OutputError> {
    std::fs::create_dir_all(dir)?;
    let held = test.held_out_neighbours.as_ref().ok_or(OutputError::NoNeighbours)?;
    let gen = test.generated_neighbours.as_ref().ok_or(OutputError::NoNeighbours)?;
    write_distance_plot(&gen.nearest_distances(), &held.nearest_distances(), &dir.join("distances.png"))?;
    write_closest_sheet(test, training, generated, &dir.join("closest.png"))?;
    crate::fsutil::write_atomic(&dir.join("cells.csv"), cells_csv(test).as_bytes())?;
    crate::fsutil::write_atomic(&dir.join("neighbours.csv"), neighbours_csv(test)?.as_bytes())?;
    let value = serde_json::json!({
        "test": "data-copying (Meehan, Chaudhuri, Dasgupta, AISTATS 2020)",
        "settings": settings,
        "images": about,
        "result": test,
        "files": {"cells": "cells.csv", "neighbours": "neighbours.csv", "distances": "distances.png", "closest": "closest.png"},
    });
    crate::fsutil::write_atomic(&dir.join("copy_test.json"), &serde_json::to_vec_pretty(&value)?)?;
    Ok(value)
}
