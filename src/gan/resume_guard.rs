//! Whether a train output may be resumed by this run: the same settings (the keys of
//! [`super::train_config::TrainConfig::resume_settings`]) and the same input, judged by the input's
//! content records (a packed folder's recorded sizes and sha256, else the images as read). A
//! refusal names what changed and that `--force` starts over; resuming on other data without a
//! word mixed two data sets into one model whose record named only the second.

use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoints::{latest_checkpoint, CheckpointState};
use crate::integrity::FileRecords;

/// What a run trains on: the path as given, and its content records
/// ([`crate::data::content_records`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainInput {
    pub path: String,
    pub files: FileRecords,
}

/// The settings keys whose values differ, as "train.lr 0.0002 (this run: 0.001)".
pub fn changed_settings(recorded: &Value, ours: &Value) -> Vec<String> {
    let (Some(recorded), Some(ours)) = (recorded.as_object(), ours.as_object()) else { return Vec::new() };
    let mut keys: Vec<&String> = recorded.keys().chain(ours.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| recorded.get(*k) != ours.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "unset".to_owned(), Value::to_string);
            format!("train.{k} {} (this run: {})", show(recorded.get(k)), show(ours.get(k)))
        })
        .collect()
}

/// The input's files that differ from the recorded ones, each with what happened to it.
pub fn changed_files(recorded: &FileRecords, ours: &FileRecords) -> Vec<String> {
    let short = |sha: &str| sha.chars().take(12).collect::<String>();
    let mut changes = Vec::new();
    for (name, old) in recorded {
        match ours.get(name) {
            None => changes.push(format!("{name} is not in this input")),
            Some(new) if !new.same_content(old) => changes.push(format!(
                "{name} changed ({} bytes, sha256 {}..., recorded {} bytes, sha256 {}...)",
                new.bytes,
                short(&new.sha256),
                old.bytes,
                short(&old.sha256)
            )),
            Some(_) => {}
        }
    }
    changes.extend(ours.keys().filter(|n| !recorded.contains_key(*n)).map(|n| format!("{n} was not in its input")));
    changes
}

/// Refuses to continue the run whose checkpoint says `state` with `settings` (this run's
/// [`super::train_config::TrainConfig::resume_settings`]) and `fingerprint`, on `input`.
pub fn refuse_other_run(
    output: &Path,
    state: &CheckpointState,
    settings: &Value,
    fingerprint: &str,
    input: &TrainInput,
) -> Result<()> {
    let start_over =
        "pass --force to start over (its checkpoints, samples and losses are removed) or choose another --output";
    if state.fingerprint != fingerprint {
        let changed = state.settings.as_ref().map(|s| changed_settings(s, settings)).unwrap_or_default();
        let what = if changed.is_empty() {
            // A checkpoint written before its settings were recorded key by key.
            format!("other settings ({} width {} z {})", state.preset, state.width, state.z_dim)
        } else {
            format!("other settings: {}", changed.join(", "))
        };
        bail!("{}: holds a run with {what}; {start_over}", output.display());
    }
    let Some(recorded) = &state.input else { return Ok(()) };
    let changed = changed_files(&recorded.files, &input.files);
    if !changed.is_empty() {
        bail!(
            "{}: holds a run trained on other data ({}; it trained on {}, this run reads {}); {start_over}",
            output.display(),
            changed.join(", "),
            recorded.path,
            input.path
        );
    }
    Ok(())
}

/// [`refuse_other_run`] against `output`'s newest checkpoint, before anything is written (its
/// state.json only; the files are checked when the run resumes). Nothing to resume: Ok.
pub fn check_resumable(output: &Path, settings: &Value, fingerprint: &str, input: &TrainInput) -> Result<()> {
    match latest_checkpoint(output) {
        Ok(Some((_, state))) => refuse_other_run(output, &state, settings, fingerprint, input),
        // Missing or damaged: the resume itself finds the intact one, or says what is wrong.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::FileRecord;

    #[test]
    fn the_changed_keys_and_files_are_named() {
        let old = serde_json::json!({"lr": 0.0002, "width": 8, "batch": 4});
        let new = serde_json::json!({"lr": 0.001, "width": 8, "batch": 4});
        assert_eq!(changed_settings(&old, &new), ["train.lr 0.0002 (this run: 0.001)"]);
        let files = |pairs: &[(&str, &[u8])]| -> FileRecords {
            pairs.iter().map(|(n, b)| ((*n).to_owned(), FileRecord::of_bytes(b))).collect()
        };
        let a = files(&[("images-00000.npy", b"aaaa"), ("labels.npy", b"l")]);
        let b = files(&[("images-00000.npy", b"bbbbb"), ("labels.npy", b"l"), ("images-00001.npy", b"c")]);
        let changes = changed_files(&a, &b);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].starts_with("images-00000.npy changed (5 bytes") && changes[0].contains("recorded 4 bytes"));
        assert_eq!(changes[1], "images-00001.npy was not in its input");
        assert!(changed_files(&a, &a).is_empty());
    }
}
