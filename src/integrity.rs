//! Content records of what one stage hands to the next: each file's size and sha256, written
//! beside it when it is made, checked by whoever reads it. A file that is missing, of another size
//! or of another hash is refused with the file named and what to do; a file written before records
//! existed is read with a note that it is unverified.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a file held when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub bytes: u64,
    pub sha256: String,
    /// Rows of a packed array (images-*.npy, labels.npy), where that is what it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// Records by file name, relative to the folder they describe (`images-00000.npy`,
/// `parts/manifest-00000.jsonl`); sorted, so the JSON is stable.
pub type FileRecords = BTreeMap<String, FileRecord>;

impl FileRecord {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self { bytes: bytes.len() as u64, sha256: crate::fsutil::sha256_hex(bytes), rows: None }
    }

    /// Reads `path` once, hashing as it goes.
    pub fn of_file(path: &Path) -> io::Result<Self> {
        let mut hashing = HashingReader::new(std::fs::File::open(path)?);
        io::copy(&mut hashing, &mut io::sink())?;
        Ok(hashing.record())
    }

    pub fn with_rows(mut self, rows: u64) -> Self {
        self.rows = Some(rows);
        self
    }

    /// Whether the content matches (rows, a count read off the file itself, are checked apart).
    pub fn same_content(&self, other: &FileRecord) -> bool {
        self.bytes == other.bytes && self.sha256 == other.sha256
    }
}

/// Why a file does not match its record. `fix` says what to do (which stage to re-run).
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("{path}: missing, though its record lists it; {fix}")]
    Missing { path: PathBuf, fix: String },
    #[error(
        "{path}: damaged: {found_bytes} bytes with sha256 {found}, recorded {bytes} bytes with sha256 {sha256}; {fix}"
    )]
    Damaged { path: PathBuf, found_bytes: u64, found: String, bytes: u64, sha256: String, fix: String },
    #[error("{path}: {why}; {fix}")]
    Inconsistent { path: PathBuf, why: String, fix: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl IntegrityError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing { path, .. }
            | Self::Damaged { path, .. }
            | Self::Inconsistent { path, .. }
            | Self::Io { path, .. } => path,
        }
    }
}

/// Compares what was read (`found`) with the record.
pub fn check(path: &Path, found: &FileRecord, record: &FileRecord, fix: &str) -> Result<(), IntegrityError> {
    if found.same_content(record) {
        return Ok(());
    }
    Err(IntegrityError::Damaged {
        path: path.to_owned(),
        found_bytes: found.bytes,
        found: short(&found.sha256),
        bytes: record.bytes,
        sha256: short(&record.sha256),
        fix: fix.to_owned(),
    })
}

/// Reads `path` and checks it against `record`: a missing file, another size (checked first,
/// without reading) or another hash is an error naming it.
pub fn verify_file(path: &Path, record: &FileRecord, fix: &str) -> Result<(), IntegrityError> {
    check_size(path, record, fix)?;
    let found = FileRecord::of_file(path).map_err(|source| io_error(path, source, fix))?;
    check(path, &found, record, fix)
}

/// The cheap half of the check, before a file is read: it exists and has the recorded size.
pub fn check_size(path: &Path, record: &FileRecord, fix: &str) -> Result<(), IntegrityError> {
    let size = std::fs::metadata(path).map_err(|source| io_error(path, source, fix))?.len();
    if size == record.bytes {
        return Ok(());
    }
    let found = FileRecord { bytes: size, sha256: "(not read)".into(), rows: None };
    check(path, &found, record, fix)
}

/// A missing file is [`IntegrityError::Missing`] (its record lists it); anything else an io error.
fn io_error(path: &Path, source: io::Error, fix: &str) -> IntegrityError {
    if source.kind() == io::ErrorKind::NotFound {
        IntegrityError::Missing { path: path.to_owned(), fix: fix.to_owned() }
    } else {
        IntegrityError::Io { path: path.to_owned(), source }
    }
}

/// The first 16 hex digits: enough to tell two hashes apart on one line.
fn short(sha: &str) -> String {
    sha.chars().take(16).collect()
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// What has been read so far.
    pub fn record(self) -> FileRecord {
        FileRecord { bytes: self.bytes, sha256: format!("{:x}", self.hasher.finalize()), rows: None }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Where a model file's record is: `FILE.json` beside it (an export's record, or train's record
/// of generator.safetensors and discriminator.safetensors), or the `files` of the state.json of the
/// checkpoint or snapshot folder it is in.
fn model_record(path: &Path) -> Option<FileRecord> {
    let read = |p: &Path| std::fs::read(p).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let name = path.file_name()?.to_string_lossy().into_owned();
    let sidecar = path.with_file_name(format!("{name}.json"));
    if let Some(record) = read(&sidecar) {
        let sha256 = record["sha256"].as_str()?.to_owned();
        // Exports made before sizes were recorded hold only the hash.
        let bytes = record["bytes"].as_u64().or_else(|| std::fs::metadata(path).ok().map(|m| m.len()))?;
        return Some(FileRecord { bytes, sha256, rows: None });
    }
    let state = read(&path.with_file_name("state.json"))?;
    serde_json::from_value(state["files"][&name].clone()).ok()
}

/// What a model's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCheck {
    /// It matches its record.
    Verified,
    /// It has no record (written before records existed, or by hand).
    Unrecorded,
}

/// Checks a model file (safetensors) against its record before it is loaded: see [`model_record`].
/// Without a record the caller loads it with a note; a mismatch is an error naming the file.
pub fn verify_model(path: &Path) -> Result<ModelCheck, IntegrityError> {
    let Some(record) = model_record(path) else { return Ok(ModelCheck::Unrecorded) };
    let fix = "it was altered or damaged after it was written: export it again (train --export-*), \
               copy it again, or re-run the training that wrote it";
    verify_file(path, &record, fix)?;
    Ok(ModelCheck::Verified)
}

/// [`verify_model`], printing the one-line note for a model without a record.
pub fn verify_model_noting(path: &Path) -> Result<(), IntegrityError> {
    if verify_model(path)? == ModelCheck::Unrecorded {
        eprintln!("note: {}: no recorded sha256 (written before records were kept); loaded unverified", path.display());
    }
    Ok(())
}

/// Writes `record` as `FILE.json` beside `path` (atomically): the record a loader checks.
pub fn write_model_record(path: &Path, record: &FileRecord, extra: serde_json::Value) -> io::Result<()> {
    let mut value = serde_json::json!({
        "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "bytes": record.bytes,
        "sha256": record.sha256,
    });
    if let (Some(map), serde_json::Value::Object(more)) = (value.as_object_mut(), extra) {
        map.extend(more);
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let bytes = serde_json::to_vec_pretty(&value).map_err(io::Error::other)?;
    crate::fsutil::write_atomic(&path.with_file_name(format!("{name}.json")), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_or_size_is_named_and_a_missing_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let record = FileRecord::of_file(&path).unwrap();
        assert_eq!(record, FileRecord::of_bytes(b"0123456789"));
        verify_file(&path, &record, "re-run it").unwrap();
        std::fs::write(&path, b"0123456780").unwrap();
        let e = verify_file(&path, &record, "re-run it").unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: damaged", path.display())) && e.ends_with("re-run it"), "{e}");
        std::fs::write(&path, b"01234").unwrap();
        let e = verify_file(&path, &record, "re-run it").unwrap_err().to_string();
        assert!(e.contains("5 bytes") && e.contains("recorded 10 bytes"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = verify_file(&path, &record, "re-run it").unwrap_err();
        assert!(matches!(e, IntegrityError::Missing { .. }), "{e}");
    }

    #[test]
    fn a_model_is_checked_against_its_sidecar_or_its_folders_state() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("d.safetensors");
        std::fs::write(&model, b"weights").unwrap();
        assert_eq!(verify_model(&model).unwrap(), ModelCheck::Unrecorded);
        let files: FileRecords = [("d.safetensors".to_owned(), FileRecord::of_bytes(b"weights"))].into();
        std::fs::write(
            dir.path().join("state.json"),
            serde_json::to_vec(&serde_json::json!({"files": files})).unwrap(),
        )
        .unwrap();
        assert_eq!(verify_model(&model).unwrap(), ModelCheck::Verified);
        write_model_record(&model, &FileRecord::of_bytes(b"weighs"), serde_json::json!({"network": "d"})).unwrap();
        let e = verify_model(&model).unwrap_err().to_string();
        assert!(e.contains("d.safetensors: damaged"), "the sidecar wins over state.json: {e}");
    }
}
