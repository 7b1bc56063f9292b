//! `manifest.jsonl`: one row per input, saying what became of it.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// The input: path relative to the input folder, path inside the archive, or LMDB key.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The shard file (images-NNNNN.npy) that holds its outputs.
    pub part: u64,
    /// Row of its first output: within the part in parts/, in the whole packed set in
    /// manifest.jsonl (the row of the concatenated images-*.npy and of labels.npy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// How many output rows it produced.
    #[serde(default)]
    pub outputs: u32,
    /// Stage-specific facts (size, format, decode scale, boxes...).
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}, line {line}: {message}")]
    Parse { path: String, line: usize, message: String },
}

pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>, ManifestError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ManifestError::Io { path: name.clone(), source })?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ManifestError::Io { path: name.clone(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line).map_err(|e| ManifestError::Parse {
            path: name.clone(),
            line: i + 1,
            message: e.to_string(),
        })?;
        rows.push(row);
    }
    Ok(rows)
}

pub fn encode_manifest(rows: &[ManifestRow]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, row).expect("manifest rows serialise");
        out.push(b'\n');
    }
    out
}
