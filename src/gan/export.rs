//! Publishing a trained network: the newest checkpoint's D (or G) as float16 safetensors (half the
//! size, outputs within rounding of float32) with a JSON record beside it that says what it is.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use tch::{Kind, Tensor};

use super::trainer::latest_checkpoint;
use crate::fsutil;

/// Which network of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Discriminator,
    Generator,
}

impl Network {
    fn file(self) -> &'static str {
        match self {
            Network::Discriminator => "d.safetensors",
            Network::Generator => "g.safetensors",
        }
    }
}

/// Writes `dest` (float16 safetensors) and `dest` with `.json` appended (the record) from the
/// newest checkpoint's D of the training run in `run`. `data` describes what it was trained on.
pub fn export_discriminator(run: &Path, dest: &Path, data: &str) -> Result<serde_json::Value> {
    export(run, Network::Discriminator, dest, data)
}

/// [`export_discriminator`] for the generator (what `sample` and the demo's pictures use).
pub fn export_generator(run: &Path, dest: &Path, data: &str) -> Result<serde_json::Value> {
    export(run, Network::Generator, dest, data)
}

/// The newest checkpoint's `network` of `run` as float16 safetensors at `dest`, with its record.
pub fn export(run: &Path, network: Network, dest: &Path, data: &str) -> Result<serde_json::Value> {
    let (dir, state) = latest_checkpoint(run)?.with_context(|| format!("{}: no checkpoint to export", run.display()))?;
    let source = dir.join(network.file());
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&source)
        .with_context(|| format!("{}: unreadable", source.display()))?
        .into_iter()
        .map(|(name, t)| {
            // Integer buffers (BatchNorm's batch counter) stay as they are.
            let t = if t.kind() == Kind::Float { t.to_kind(Kind::Half) } else { t };
            (name, t)
        })
        .collect();
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = dest.with_extension(format!("safetensors{}", fsutil::TMP_SUFFIX));
    Tensor::write_safetensors(&tensors, &tmp)?;
    std::fs::rename(&tmp, dest)?;
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap_or_default();
    let train_table = config.parse::<toml::Table>().ok().and_then(|t| t.get("train").cloned());
    let (wall_s, wall_note) = match state.train_wall_s {
        Some(s) => (Some(s), "measured"),
        None => (estimate_wall_s(run, state.step), "estimated from losses.csv (images/s of each logged window)"),
    };
    let record = json!({
        "network": format!("{network:?}").to_lowercase(),
        "file": dest.file_name().map(|n| n.to_string_lossy().into_owned()),
        "sha256": crate::fsutil::sha256_file(dest)?,
        "dtype": "float16",
        "preset": state.preset,
        "width": state.width,
        "z_dim": state.z_dim,
        "step": state.step,
        "epoch": state.epoch,
        "data": data,
        "device": state.device,
        "train_wall_s": wall_s,
        "train_wall_s_is": wall_note,
        "train_config": train_table,
        "checkpoint": dir.display().to_string(),
        "exported_by": format!("dcgan-pipeline {}", env!("CARGO_PKG_VERSION")),
    });
    let record_path = dest.with_extension("safetensors.json");
    fsutil::write_atomic(&record_path, &serde_json::to_vec_pretty(&record)?)?;
    Ok(record)
}

/// Training seconds up to `step` from losses.csv: each row covers the steps since the previous
/// one at its images/s.
fn estimate_wall_s(run: &Path, step: u64) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("losses.csv")).ok()?;
    let config: toml::Table = std::fs::read_to_string(run.join("config.toml")).ok()?.parse().ok()?;
    let batch = config.get("train")?.get("batch")?.as_integer()? as f64;
    let (mut last, mut total) = (0u64, 0.0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(s), Some(ips)) = (f.first().and_then(|v| v.parse::<u64>().ok()), f.get(6).and_then(|v| v.parse::<f64>().ok())) else { continue };
        if s > step || ips <= 0.0 {
            continue;
        }
        total += (s - last) as f64 * batch / ips;
        last = s;
    }
    Some(total)
}
