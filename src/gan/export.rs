//! Publishing a trained network: a checkpoint's (or snapshot's) D or G as float16 safetensors (half
//! the size, features within rounding of float32) with a JSON record beside it that says what it
//! is: the model, the step, the training settings and the data it was trained on.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

use super::checkpoints::{latest_checkpoint, read_state, CheckpointState};
use crate::fsutil;

/// Which of the two networks.
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
    fn name(self) -> &'static str {
        match self {
            Network::Discriminator => "discriminator",
            Network::Generator => "generator",
        }
    }
}

/// The checkpoint or snapshot to export from: `dir` when given (a checkpoints/step-N or
/// snapshots/step-N folder), else the run's newest checkpoint.
pub fn source_checkpoint(run: &Path, dir: Option<&Path>) -> Result<(std::path::PathBuf, CheckpointState)> {
    match dir {
        Some(d) => Ok((d.to_owned(), read_state(d)?)),
        None => latest_checkpoint(run)?.with_context(|| format!("{}: no checkpoint to export", run.display())),
    }
}

/// Writes `network` of the checkpoint or snapshot `dir` (of the run in `run`) to `dest` as
/// float16, and its record to `dest.json`. `data` overrides what the record says the run trained
/// on (by default: the run's summary.json, and the summary of the packed set it read, if any).
pub fn export_network(
    run: &Path,
    dir: &Path,
    state: &CheckpointState,
    network: Network,
    dest: &Path,
    data: Option<&str>,
) -> Result<Value> {
    let source = dir.join(network.file());
    // A damaged checkpoint is never published: its files are checked against its state.json.
    crate::integrity::verify_model_noting(&source)?;
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
    let trained_on = training_data(run);
    let data = match data {
        Some(d) => d.to_owned(),
        None => trained_on["description"].as_str().unwrap_or("unknown (the run has no summary.json)").to_owned(),
    };
    let written =
        crate::integrity::FileRecord::of_file(dest).with_context(|| format!("{}: unreadable", dest.display()))?;
    let record = json!({
        "file": dest.file_name().map(|n| n.to_string_lossy().into_owned()),
        "network": network.name(),
        "bytes": written.bytes,
        "sha256": written.sha256,
        "dtype": "float16",
        "preset": state.preset,
        "width": state.width,
        "z_dim": state.z_dim,
        "step": state.step,
        "epoch": state.epoch,
        "data": data,
        "data_source": trained_on,
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

/// What the run in `run` trained on, from its summary.json (`input`, image count) and, when the
/// input was a packed folder, that folder's own summary.json (the stage that made it and from
/// what): e.g. "out/imagenet32: 100000 images (crop of tiny-imagenet-32-train.tar.gz)".
pub fn training_data(run: &Path) -> Value {
    let read = |p: &Path| std::fs::read(p).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(summary) = read(&run.join("summary.json")) else { return Value::Null };
    let input = summary["input"].as_str().unwrap_or("").to_owned();
    let images = summary["report"]["images"].as_u64();
    let made_by = read(&Path::new(&input).join("summary.json")).map(|packed| {
        json!({
            "stage": packed["stage"],
            "input": packed["input"],
            "records": packed["counts"]["records"],
            "ok": packed["counts"]["ok"],
            "config_fingerprint": packed["config_fingerprint"],
        })
    });
    let mut description = match images {
        Some(n) => format!("{input}: {n} images"),
        None => input.clone(),
    };
    if let Some(m) = &made_by {
        description += &format!(" ({} of {})", m["stage"].as_str().unwrap_or("?"), m["input"].as_str().unwrap_or("?"));
    }
    json!({
        "description": description,
        "input": input,
        "images": images,
        "images_left_out": summary["images_left_out"],
        "made_by": made_by,
    })
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
        let (Some(s), Some(ips)) =
            (f.first().and_then(|v| v.parse::<u64>().ok()), f.get(6).and_then(|v| v.parse::<f64>().ok()))
        else {
            continue;
        };
        if s > step || ips <= 0.0 {
            continue;
        }
        total += (s - last) as f64 * batch / ips;
        last = s;
    }
    Some(total)
}
