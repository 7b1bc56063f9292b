//! Packed labelled image sets in memory, and the packed folder a per-image stage writes:
//! `images-NNNNN.npy` (uint8, N x H x W x 3), `labels.npy` (int64), `classes.jsonl` (line i: the
//! name of label i as a JSON string, so that no name can split into two lines; folders written
//! before it held `classes.txt`, one plain name a line, which is still read).

use std::path::{Path, PathBuf};

use super::npy::{self, NpyError};
use crate::integrity::{self, FileRecord, FileRecords, IntegrityError};

/// Images of one size with their labels: what training and evaluation consume.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledImages {
    pub height: u32,
    pub width: u32,
    /// N x H x W x 3, uint8, row-major.
    pub images: Vec<u8>,
    /// One per image; -1 where the image has no class.
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackedError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{0}: no images-*.npy in this folder (is it the output of crop, faces or dedupe?)")]
    NoImages(PathBuf),
    #[error("{path}: {why}")]
    Inconsistent { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

impl LabeledImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_bytes(&self) -> usize {
        (self.height * self.width * 3) as usize
    }

    /// The i-th image, H x W x 3.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.images[i * n..(i + 1) * n]
    }

    /// The whole set as a uint8 tensor of shape [N, H, W, 3] (the layout on disk), on the CPU.
    pub fn to_tensor(&self) -> tch::Tensor {
        tch::Tensor::from_slice(&self.images).view([self.len() as i64, self.height as i64, self.width as i64, 3])
    }
}

fn is_image_shard(name: &str) -> bool {
    name.starts_with("images") && name.ends_with(".npy")
}

fn list_image_shards(dir: &Path) -> Result<Vec<PathBuf>, PackedError> {
    let io = |source| PackedError::Io { path: dir.to_owned(), source };
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image_shard(&p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    shards.sort();
    Ok(shards)
}

/// What the stage that wrote a packed folder recorded of it in summary.json: every file's size and
/// sha256 (`files`), and how to make it again.
struct PackedRecord {
    files: FileRecords,
    output_rows: Option<u64>,
    /// What to do about a file that does not match: re-run the stage that wrote the folder.
    fix: String,
}

/// How a packed folder's files were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackedCheck {
    /// Every file matched the record in summary.json.
    Verified { files: usize },
    /// summary.json records no files (written before records were kept): read unverified.
    Unrecorded,
}

fn summary_record(dir: &Path) -> Result<Option<PackedRecord>, PackedError> {
    let path = dir.join("summary.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.join("parts").is_dir() => {
            return Err(PackedError::Integrity(IntegrityError::Missing {
                path,
                fix: format!(
                    "the stage's parts were never merged (or its summary was deleted): run the stage again \
                     with --merge --output {}",
                    dir.display()
                ),
            }));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PackedError::Io { path, source }),
    };
    let summary: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| PackedError::Inconsistent {
        path: path.clone(),
        why: format!("not JSON ({e}); run the stage that wrote this folder again"),
    })?;
    let Some(files) = summary.get("files") else { return Ok(None) };
    let files: FileRecords = serde_json::from_value(files.clone())
        .map_err(|e| PackedError::Inconsistent { path: path.clone(), why: format!("its \"files\" record: {e}") })?;
    let stage = summary["stage"].as_str().unwrap_or("the stage that wrote it");
    let fix = match summary["input"].as_str() {
        Some(input) => format!(
            "re-run `{stage} --input {input} --output {}` (it redoes missing or damaged parts), or add --force to redo all",
            dir.display()
        ),
        None => format!("re-run {stage} into {} (with --force to redo all)", dir.display()),
    };
    Ok(Some(PackedRecord { files, output_rows: summary["counts"]["output_rows"].as_u64(), fix }))
}

/// The records of a packed folder's files as its summary.json holds them (None: none recorded, or
/// no readable summary).
pub fn recorded_files(dir: &Path) -> Option<FileRecords> {
    summary_record(dir).ok().flatten().map(|r| r.files)
}

/// The images shards a record lists, in order; a shard in the folder that it does not list is an error.
fn recorded_shards(dir: &Path, record: &PackedRecord) -> Result<Vec<PathBuf>, PackedError> {
    let listed: Vec<PathBuf> = record.files.keys().filter(|n| is_image_shard(n)).map(|n| dir.join(n)).collect();
    if let Some(extra) = list_image_shards(dir)?.into_iter().find(|p| !listed.contains(p)) {
        return Err(IntegrityError::Inconsistent {
            path: extra,
            why: "not in the record of this folder's files (summary.json)".into(),
            fix: record.fix.clone(),
        }
        .into());
    }
    if listed.is_empty() {
        return Err(PackedError::NoImages(dir.to_owned()));
    }
    Ok(listed)
}

/// Reads one array, checked against its record when there is one: its size before reading, its
/// hash and rows as read.
fn read_checked<T: npy::NpyElement>(
    path: &Path,
    record: Option<(&FileRecord, &str)>,
) -> Result<(Vec<u64>, Vec<T>), PackedError> {
    let Some((expected, fix)) = record else { return Ok(npy::read_array(path)?) };
    integrity::check_size(path, expected, fix)?;
    let (shape, values, found) = npy::read_array_recorded::<T>(path)?;
    integrity::check(path, &found, expected, fix)?;
    Ok((shape, values))
}

/// Reads a packed folder back: every images-*.npy in name order, labels.npy and classes.jsonl.
/// Checked against the record in summary.json when it has one (see [`read_packed_checked`]).
pub fn read_packed(dir: &Path) -> Result<LabeledImages, PackedError> {
    read_packed_checked(dir).map(|(set, _)| set)
}

/// [`read_packed`], saying how it was checked. With a record in summary.json, every shard it lists
/// must be there with its size and sha256 (each hashed as it is read, not read twice), no other
/// shard may be, labels.npy and classes.jsonl must match, and the rows must add up to the count
/// recorded. A mismatch is an error naming the file and the stage to re-run.
pub fn read_packed_checked(dir: &Path) -> Result<(LabeledImages, PackedCheck), PackedError> {
    let record = summary_record(dir)?;
    let shards = match &record {
        Some(r) => recorded_shards(dir, r)?,
        None => list_image_shards(dir)?,
    };
    if shards.is_empty() {
        return Err(PackedError::NoImages(dir.to_owned()));
    }
    let lookup = |path: &Path| {
        let r = record.as_ref()?;
        let name = path.file_name()?.to_string_lossy().into_owned();
        r.files.get(&name).map(|f| (f, r.fix.as_str()))
    };
    let mut images = Vec::new();
    let mut shape: Option<Vec<u64>> = None;
    let mut count = 0u64;
    for shard in &shards {
        let (s, data) = read_checked::<u8>(shard, lookup(shard))?;
        if s.len() != 4 || s[3] != 3 {
            return Err(PackedError::Inconsistent {
                path: shard.clone(),
                why: format!("shape {s:?} is not N x H x W x 3"),
            });
        }
        if let Some(first) = &shape {
            if first[1..] != s[1..] {
                return Err(PackedError::Inconsistent {
                    path: shard.clone(),
                    why: format!("images of {}x{}, the first shard's are {}x{}", s[2], s[1], first[2], first[1]),
                });
            }
        }
        count += s[0];
        shape.get_or_insert(s);
        images.extend_from_slice(&data);
    }
    let shape = shape.expect("at least one shard");
    if let Some(r) = &record {
        if let Some(recorded) = r.output_rows.filter(|&n| n != count) {
            return Err(IntegrityError::Inconsistent {
                path: dir.join("summary.json"),
                why: format!("records {recorded} images, the shards hold {count}"),
                fix: r.fix.clone(),
            }
            .into());
        }
    }
    let labels_path = dir.join("labels.npy");
    let labels_record = lookup(&labels_path);
    let labels = if labels_path.exists() || labels_record.is_some() {
        read_checked::<i64>(&labels_path, labels_record)?.1
    } else {
        vec![-1; count as usize]
    };
    if labels.len() as u64 != count {
        return Err(PackedError::Inconsistent {
            path: labels_path,
            why: format!("{} labels for {count} images", labels.len()),
        });
    }
    let classes = read_classes_recorded(dir, |path: &Path| lookup(path))?;
    let check = match &record {
        Some(r) => PackedCheck::Verified { files: r.files.len() },
        None => PackedCheck::Unrecorded,
    };
    Ok((LabeledImages { height: shape[1] as u32, width: shape[2] as u32, images, labels, classes }, check))
}

/// The class names file of a packed folder.
pub const CLASSES_FILE: &str = "classes.jsonl";
/// What packed folders held before [`CLASSES_FILE`]: one name a line (a name with a newline split).
pub const OLD_CLASSES_FILE: &str = "classes.txt";

/// `classes`, one JSON string a line: line i names label i.
pub fn encode_classes(classes: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for class in classes {
        serde_json::to_writer(&mut out, class).expect("a string serialises");
        out.push(b'\n');
    }
    out
}

/// The class names of a packed folder: classes.jsonl, or an older folder's classes.txt; none when
/// it has neither. A line of classes.jsonl that is not a JSON string is an error naming the line.
pub fn read_classes(dir: &Path) -> Result<Vec<String>, PackedError> {
    read_classes_recorded(dir, |_: &Path| None)
}

/// [`read_classes`], the file checked against its record (from summary.json) when `record` gives
/// one; a recorded file that is missing is an error, not an empty list.
fn read_classes_recorded<'r>(
    dir: &Path,
    record: impl Fn(&Path) -> Option<(&'r FileRecord, &'r str)>,
) -> Result<Vec<String>, PackedError> {
    let jsonl = dir.join(CLASSES_FILE);
    let old = dir.join(OLD_CLASSES_FILE);
    // The file the record names, else whichever exists (classes.jsonl first).
    let path = if record(&jsonl).is_some() || !old.exists() && record(&old).is_none() { jsonl } else { old };
    let expected = record(&path);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match expected {
            Some((_, fix)) => return Err(IntegrityError::Missing { path, fix: fix.to_owned() }.into()),
            None => return Ok(Vec::new()),
        },
        Err(source) => return Err(PackedError::Io { path, source }),
    };
    if let Some((expected, fix)) = expected {
        integrity::check(&path, &FileRecord::of_bytes(&bytes), expected, fix)?;
    }
    let text = String::from_utf8_lossy(&bytes);
    if path.ends_with(OLD_CLASSES_FILE) {
        return Ok(text.lines().map(str::to_owned).collect());
    }
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str::<String>(line).map_err(|e| PackedError::Inconsistent {
                path: path.clone(),
                why: format!("line {}: not a JSON string ({e})", i + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_with_newlines_keep_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let classes: Vec<String> = ["a\nb", "c\u{1b}[31m", "d\\xff", "plain"].map(String::from).to_vec();
        let bytes = encode_classes(&classes);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), classes.len());
        std::fs::write(dir.path().join(CLASSES_FILE), &bytes).unwrap();
        assert_eq!(read_classes(dir.path()).unwrap(), classes);
        std::fs::write(dir.path().join(CLASSES_FILE), b"\"ok\"\nnot json\n").unwrap();
        let err = read_classes(dir.path()).unwrap_err().to_string();
        assert!(err.contains("classes.jsonl") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_older_folders_classes_txt_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_classes(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join(OLD_CLASSES_FILE), "cats\ndogs\n").unwrap();
        assert_eq!(read_classes(dir.path()).unwrap(), vec!["cats", "dogs"]);
    }
}
