//! A part on disk: `images-NNNNN.npy` beside `parts/manifest-NNNNN.jsonl` and the record of their
//! files (`parts/files-NNNNN.json`); which parts are done, and checking one against its record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::manifest::{read_manifest, ManifestRow};
use crate::data::npy;
use crate::integrity::{self, FileRecord, FileRecords, IntegrityError};

pub(super) fn part_images(output: &Path, part: u64) -> PathBuf {
    output.join(format!("images-{part:05}.npy"))
}
pub(super) fn parts_dir(output: &Path) -> PathBuf {
    output.join("parts")
}
pub(super) fn part_manifest(output: &Path, part: u64) -> PathBuf {
    parts_dir(output).join(format!("manifest-{part:05}.jsonl"))
}
/// The record of a part's files (images and manifest: size, sha256), written before the manifest.
pub(super) fn part_record(output: &Path, part: u64) -> PathBuf {
    parts_dir(output).join(format!("files-{part:05}.json"))
}
pub(super) fn part_manifest_name(part: u64) -> String {
    format!("parts/manifest-{part:05}.jsonl")
}
pub(super) fn fingerprint_path(output: &Path) -> PathBuf {
    parts_dir(output).join("fingerprint")
}

pub(super) fn part_images_name(part: u64) -> String {
    format!("images-{part:05}.npy")
}

/// Parts whose manifest and images are both in place.
pub(super) fn done_parts(output: &Path) -> Result<BTreeSet<u64>> {
    let mut done = BTreeSet::new();
    let dir = parts_dir(output);
    if !dir.is_dir() {
        return Ok(done);
    }
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(number) = name.strip_prefix("manifest-").and_then(|n| n.strip_suffix(".jsonl")) else { continue };
        let Ok(part) = number.parse::<u64>() else { continue };
        if part_images(output, part).is_file() {
            done.insert(part);
        }
    }
    Ok(done)
}

/// A finished part that checked out, with what the check read (the merge joins it without
/// reading the manifest and the header again).
#[derive(Debug)]
pub(super) struct CheckedPart {
    /// The images' record; `None` for a part written before records were kept, whose manifest
    /// parses and counts its images' rows.
    pub(super) images_record: Option<FileRecord>,
    pub(super) rows: Vec<ManifestRow>,
    /// The images' shape (rows x H x W x C).
    pub(super) shape: Vec<u64>,
}

/// Checks a finished part: its files against their record (parts/files-NNNNN.json), its manifest
/// parsed and its rows counted against the images' header. `fix` says what to do about a mismatch.
pub(super) fn verify_part(output: &Path, part: u64, fix: &str) -> Result<CheckedPart, IntegrityError> {
    let record_path = part_record(output, part);
    let mut images_record = None;
    match std::fs::read(&record_path) {
        Ok(bytes) => {
            let record: FileRecords = serde_json::from_slice(&bytes).map_err(|e| IntegrityError::Inconsistent {
                path: record_path.clone(),
                why: format!("not a record of the part's files ({e})"),
                fix: fix.to_owned(),
            })?;
            for (name, file) in &record {
                integrity::verify_file(&output.join(name), file, fix)?;
            }
            images_record = record.get(&part_images_name(part)).cloned();
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IntegrityError::Io { path: record_path, source }),
    }
    let inconsistent = |path: PathBuf, why: String| IntegrityError::Inconsistent { path, why, fix: fix.to_owned() };
    let manifest = part_manifest(output, part);
    let rows = read_manifest(&manifest).map_err(|e| inconsistent(manifest.clone(), format!("unreadable ({e})")))?;
    let images = part_images(output, part);
    let header = npy::read_header(&images).map_err(|e| inconsistent(images.clone(), e.to_string()))?;
    let outputs: u64 = rows.iter().map(|r| r.outputs as u64).sum();
    if outputs != header.shape[0] {
        return Err(inconsistent(images, format!("holds {} rows but its manifest lists {outputs}", header.shape[0])));
    }
    Ok(CheckedPart { images_record, rows, shape: header.shape })
}
