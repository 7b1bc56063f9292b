//! Which stage an output folder belongs to. Each stage writes its own summary.json, config.toml
//! and state into its --output; two stages in one folder overwrite each other (`sample -g out/train
//! -o out/train` replaced train's summary.json, and the report then showed only "sample"). A stage
//! marks the folder it writes into (`stage.json`, the stage's name) and refuses one that another
//! stage marked, or that holds another stage's outputs (folders written before the mark: their
//! summary.json's "stage", or train's checkpoints/).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::lock::OutputLock;

/// The mark a stage leaves in its output folder: `{"stage": NAME}`.
pub const MARK: &str = "stage.json";

/// Who wrote a folder, and what says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The stage's name as its summary.json gives it ("train", "crop"), or a description where
    /// only the layout tells ("a per-image stage (crop, faces or dedupe)").
    pub stage: String,
    /// What says so: "its stage.json", "its summary.json", "its checkpoints/".
    pub evidence: &'static str,
}

/// The stage that wrote `output`, if any stage did.
pub fn owner(output: &Path) -> Option<Owner> {
    let stage_of = |file: &str| -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(output.join(file)).ok()?).ok()?;
        value.get("stage")?.as_str().map(str::to_owned)
    };
    if let Some(stage) = stage_of(MARK) {
        return Some(Owner { stage, evidence: "its stage.json" });
    }
    if let Some(stage) = stage_of("summary.json") {
        return Some(Owner { stage, evidence: "its summary.json" });
    }
    if output.join("checkpoints").join("latest").is_file() {
        return Some(Owner { stage: "train".into(), evidence: "its checkpoints/" });
    }
    if output.join("parts").join("fingerprint").is_file() {
        return Some(Owner { stage: PER_IMAGE.into(), evidence: "its parts/" });
    }
    None
}

const PER_IMAGE: &str = "a per-image stage (crop, faces or dedupe)";

/// `output` ready for `stage` to write into: created (a dangling symbolic link is named as such),
/// refused when another stage wrote it, and marked as `stage`'s.
pub fn claim_output(output: &Path, stage: &str) -> Result<()> {
    create_output(output)?;
    refuse_other_stage(output, stage)?;
    if !output.join(MARK).is_file() {
        let mark = serde_json::to_vec(&serde_json::json!({ "stage": stage }))?;
        crate::fsutil::write_atomic(&output.join(MARK), &mark)?;
    }
    Ok(())
}

/// Refuses `output` when a stage other than `stage` wrote it (both named, and what says so);
/// creates and writes nothing.
pub fn refuse_other_stage(output: &Path, stage: &str) -> Result<()> {
    if let Some(other) = owner(output) {
        // A per-image folder of an older layout is judged by the stage's own fingerprint check.
        let per_image_self = other.stage == PER_IMAGE && matches!(stage, "crop" | "faces" | "dedupe");
        if other.stage != stage && !per_image_self {
            bail!(
                "--output {}: written by {} ({} says so), not by {stage}; each stage writes into a folder of its \
                 own: choose another --output",
                output.display(),
                other.stage,
                other.evidence
            );
        }
    }
    Ok(())
}

/// [`claim_output`], then a lock on the folder (`stage.lock`) so that a second run of `stage` into
/// it stops and names the first; held until the returned lock is dropped.
pub fn claim_and_lock(output: &Path, stage: &str) -> Result<OutputLock> {
    claim_output(output, stage)?;
    Ok(OutputLock::acquire(&lock_path(output), stage)?)
}

/// The lock of a stage that writes its folder as a whole (train, cifar-eval, sample).
pub fn lock_path(output: &Path) -> PathBuf {
    output.join("stage.lock")
}

/// Creates `output` and its parents; a symbolic link to nowhere is named with where it points
/// (create_dir_all's own error said only "File exists").
pub fn create_output(output: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(output) {
        if meta.file_type().is_symlink() && !output.exists() {
            let target = std::fs::read_link(output).map(|t| t.display().to_string()).unwrap_or_default();
            bail!(
                "--output {}: a symbolic link to {target}, which does not exist; create {target} first or remove the link",
                output.display()
            );
        }
    }
    std::fs::create_dir_all(output).with_context(|| format!("--output {}: cannot create", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_another_stage_is_refused_naming_both_and_a_fresh_one_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t");
        claim_output(&out, "train").unwrap();
        assert_eq!(owner(&out), Some(Owner { stage: "train".into(), evidence: "its stage.json" }));
        claim_output(&out, "train").expect("the same stage again");
        let e = claim_output(&out, "sample").unwrap_err().to_string();
        assert!(e.contains("written by train") && e.contains("not by sample") && e.contains("/t"), "{e}");
        // A folder written before the mark: its summary.json says who wrote it.
        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("summary.json"), br#"{"stage": "crop"}"#).unwrap();
        let e = claim_output(&old, "cifar-eval").unwrap_err().to_string();
        assert!(e.contains("written by crop") && e.contains("summary.json"), "{e}");
        assert!(!old.join(MARK).exists(), "a refused folder is left as it was");
    }

    #[test]
    fn a_dangling_link_is_named_with_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let e = create_output(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("nowhere") && e.contains("does not exist"), "{e}");
    }
}
