//! A training run's checkpoints and snapshots on disk: their state.json, where they live, which
//! there are. What `train` writes and `cifar-eval --snapshots` and the exports read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::models::Preset;

/// What a checkpoint directory's state.json says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: u64,
    pub epoch: u64,
    pub fingerprint: String,
    pub preset: Preset,
    pub z_dim: i64,
    pub width: i64,
    /// Seconds of training up to this checkpoint, over all resumed runs (absent in old ones).
    #[serde(default)]
    pub train_wall_s: Option<f64>,
    /// The device it trained on last.
    #[serde(default)]
    pub device: Option<String>,
    /// Steps per epoch of the run (absent in old ones): fractional epochs of a snapshot.
    #[serde(default)]
    pub steps_per_epoch: Option<u64>,
}

/// Where a run keeps its checkpoints (checkpoints/step-N/ and `latest`).
pub fn checkpoints_dir(output: &Path) -> PathBuf {
    output.join("checkpoints")
}

/// Where a run keeps its D and G snapshots.
pub fn snapshots_dir(output: &Path) -> PathBuf {
    output.join("snapshots")
}

/// Reads a checkpoint's or a snapshot's state.json.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: unreadable", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a checkpoint state", path.display()))
}

/// A run's snapshots (snapshots/step-N/ with state.json), oldest first.
pub fn list_snapshots(output: &Path) -> Result<Vec<(PathBuf, CheckpointState)>> {
    let root = snapshots_dir(output);
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(Vec::new()) };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    dirs.sort();
    dirs.into_iter().map(|d| read_state(&d).map(|s| (d, s))).collect()
}

/// The newest complete checkpoint, if any.
pub fn latest_checkpoint(output: &Path) -> Result<Option<(PathBuf, CheckpointState)>> {
    let latest = checkpoints_dir(output).join("latest");
    let Ok(name) = std::fs::read_to_string(&latest) else { return Ok(None) };
    let dir = checkpoints_dir(output).join(name.trim());
    let state = read_state(&dir)?;
    Ok(Some((dir, state)))
}
