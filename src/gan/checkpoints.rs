//! A training run's checkpoints and snapshots on disk: their state.json, where they live, which
//! there are, and writing them atomically (with the newest weights published under stable names).
//! What `train` writes and `cifar-eval --snapshots` and the exports read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::adversarial::{save_vars, Gan};
use super::models::Preset;
use crate::fsutil;
use crate::integrity::{self, FileRecord, FileRecords, IntegrityError};

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
    /// Size and sha256 of each file beside it (G, D, the optimisers' states), recorded when it was
    /// written and checked before it is resumed from or exported (absent in old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileRecords>,
    /// The settings a resume must share, key by key (what `fingerprint` hashes; absent in old
    /// ones): a refusal names the keys that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// What the run trained on (absent in old ones, and in a GPU lease's seeded state, which
    /// resumes on another shard on purpose): a resume on other data is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<super::resume_guard::TrainInput>,
}

impl CheckpointState {
    /// Records the files `names` of `dir` (written just before) in the state.
    pub fn record_files(&mut self, dir: &Path, names: &[&str]) -> Result<()> {
        let mut files = FileRecords::new();
        for name in names {
            let path = dir.join(name);
            let record = FileRecord::of_file(&path).with_context(|| format!("{}: cannot read back", path.display()))?;
            files.insert((*name).to_owned(), record);
        }
        self.files = Some(files);
        Ok(())
    }
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

/// Checks the files of the checkpoint or snapshot `dir` against the record in its state.json;
/// returns whether there was a record (old checkpoints have none).
pub fn verify_checkpoint(dir: &Path, state: &CheckpointState) -> Result<bool, IntegrityError> {
    let Some(files) = &state.files else { return Ok(false) };
    let fix = "it was altered or damaged after it was written";
    // Weights without both optimiser states are a layout of their own (a GPU lease resumes from
    // exported weights: Adam's moments restart); one state without the other is damage.
    let weights_only = ["opt_g.safetensors", "opt_d.safetensors"].iter().all(|n| !dir.join(n).exists());
    for (name, record) in files {
        if weights_only && name.starts_with("opt_") {
            continue;
        }
        integrity::verify_file(&dir.join(name), record, fix)?;
    }
    Ok(true)
}

/// The checkpoint a run resumes from: the newest that checks out, and the newer ones passed over.
pub struct Resumable {
    pub dir: PathBuf,
    pub state: CheckpointState,
    /// Whether its files matched their record (false: an old checkpoint without one).
    pub verified: bool,
    /// One line per newer checkpoint that was damaged, naming the file.
    pub passed_over: Vec<String>,
}

/// The checkpoints `latest` and those before it, newest first.
fn candidates(output: &Path, latest: &str) -> Vec<PathBuf> {
    let root = checkpoints_dir(output);
    let Ok(entries) = std::fs::read_dir(&root) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("step-") && n.as_ref() <= latest
            })
        })
        .collect();
    dirs.sort();
    dirs.reverse();
    dirs
}

/// The newest checkpoint whose files match their record, starting at `latest`: a damaged one (a
/// file altered, missing or cut short; a state.json that does not parse) is never resumed from;
/// the previous intact one is, and the damaged ones are named. None when there is no checkpoint;
/// an error naming the damaged file when none is intact.
pub fn latest_intact_checkpoint(output: &Path) -> Result<Option<Resumable>> {
    let latest = checkpoints_dir(output).join("latest");
    let Ok(name) = std::fs::read_to_string(&latest) else { return Ok(None) };
    let mut passed_over = Vec::new();
    for dir in candidates(output, name.trim()) {
        let checked = read_state(&dir).and_then(|state| {
            let verified = verify_checkpoint(&dir, &state)?;
            Ok((state, verified))
        });
        match checked {
            Ok((state, verified)) => return Ok(Some(Resumable { dir, state, verified, passed_over })),
            Err(e) => passed_over.push(format!("{e:#}")),
        }
    }
    match passed_over.first() {
        None => anyhow::bail!("{}: names {}, which is not there", latest.display(), name.trim()),
        Some(first) => anyhow::bail!(
            "{first}; no earlier intact checkpoint to resume from: restore it, or pass --force to start over"
        ),
    }
}

/// Writes one step's folder under `root` atomically: `write` fills a temporary folder, the sizes
/// and sha256 of `files` go into its state.json, and it is renamed to step-N (replacing one of
/// that step). Checkpoints and snapshots both go through here.
fn save_step_dir(
    root: &Path,
    state: &CheckpointState,
    files: &[&str],
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".{name}{}", fsutil::TMP_SUFFIX));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    write(&tmp)?;
    let mut state = state.clone();
    state.record_files(&tmp, files)?;
    fsutil::write_atomic(&tmp.join("state.json"), &serde_json::to_vec_pretty(&state)?)?;
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

/// Saves G and D (not the optimisers: a snapshot is for scoring and publishing, not resuming) as
/// snapshots/step-N/, atomically.
pub(super) fn save_snapshot(gan: &Gan, output: &Path, state: &CheckpointState) -> Result<PathBuf> {
    save_step_dir(&snapshots_dir(output), state, &["g.safetensors", "d.safetensors"], |tmp| {
        save_vars(&gan.g_vars, &tmp.join("g.safetensors"))?;
        save_vars(&gan.d_vars, &tmp.join("d.safetensors"))
    })
}

/// What [`Gan::save`] writes into a checkpoint: recorded in its state.json.
const CHECKPOINT_FILES: [&str; 4] = ["g.safetensors", "d.safetensors", "opt_g.safetensors", "opt_d.safetensors"];

/// Saves a checkpoint atomically: written under a temporary name, renamed, then `latest` moved.
pub(super) fn save_checkpoint(gan: &Gan, output: &Path, state: &CheckpointState, keep: usize) -> Result<PathBuf> {
    let root = checkpoints_dir(output);
    let dir = save_step_dir(&root, state, &CHECKPOINT_FILES, |tmp| gan.save(tmp))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
    fsutil::write_atomic(&root.join("latest"), name.as_bytes())?;
    // Keep the newest `keep`.
    let mut old: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(keep.max(1));
    for path in &old[..excess] {
        std::fs::remove_dir_all(path)?;
    }
    Ok(dir)
}

/// The newest weights under stable names, for cifar-eval and for users: generator.safetensors and
/// discriminator.safetensors, each checked against its checkpoint's record as it is copied, with a
/// record beside it (FILE.json: size, sha256, step) that their loaders check.
pub(super) fn publish_newest(dir: &Path, output: &Path) -> Result<()> {
    let state = read_state(dir)?;
    for (from, to, network) in [
        ("g.safetensors", "generator.safetensors", "generator"),
        ("d.safetensors", "discriminator.safetensors", "discriminator"),
    ] {
        let source = dir.join(from);
        let bytes = std::fs::read(&source).with_context(|| format!("{}: unreadable", source.display()))?;
        let record = FileRecord::of_bytes(&bytes);
        if let Some(expected) = state.files.as_ref().and_then(|f| f.get(from)) {
            integrity::check(&source, &record, expected, "it was altered or damaged after it was written")?;
        }
        let dest = output.join(to);
        fsutil::write_atomic(&dest, &bytes)?;
        let extra =
            serde_json::json!({"network": network, "step": state.step, "checkpoint": dir.display().to_string()});
        integrity::write_model_record(&dest, &record, extra)
            .with_context(|| format!("{}.json: cannot write", dest.display()))?;
    }
    Ok(())
}
