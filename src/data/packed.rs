//! Packed labelled image sets in memory, and the packed folder a per-image stage writes:
//! `images-NNNNN.npy` (uint8, N x H x W x 3), `labels.npy` (int64), `classes.jsonl` (line i: the
//! name of label i as a JSON string, so that no name can split into two lines; folders written
//! before it held `classes.txt`, one plain name a line, which is still read).

use std::path::{Path, PathBuf};

use super::npy::{self, NpyError};

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

fn list_image_shards(dir: &Path) -> Result<Vec<PathBuf>, PackedError> {
    let io = |source| PackedError::Io { path: dir.to_owned(), source };
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("images") && name.ends_with(".npy")
        })
        .collect();
    shards.sort();
    Ok(shards)
}

/// Reads a packed folder back: every images-*.npy in name order, labels.npy and classes.txt.
pub fn read_packed(dir: &Path) -> Result<LabeledImages, PackedError> {
    let shards = list_image_shards(dir)?;
    if shards.is_empty() {
        return Err(PackedError::NoImages(dir.to_owned()));
    }
    let mut images = Vec::new();
    let mut shape: Option<Vec<u64>> = None;
    let mut count = 0u64;
    for shard in &shards {
        let (s, data) = npy::read_array::<u8>(shard)?;
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
    let labels_path = dir.join("labels.npy");
    let labels = if labels_path.exists() { npy::read_array::<i64>(&labels_path)?.1 } else { vec![-1; count as usize] };
    if labels.len() as u64 != count {
        return Err(PackedError::Inconsistent {
            path: labels_path,
            why: format!("{} labels for {count} images", labels.len()),
        });
    }
    let classes = read_classes(dir)?;
    Ok(LabeledImages { height: shape[1] as u32, width: shape[2] as u32, images, labels, classes })
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
    let path = dir.join(CLASSES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text
                .lines()
                .enumerate()
                .map(|(i, line)| {
                    serde_json::from_str::<String>(line).map_err(|e| PackedError::Inconsistent {
                        path: path.clone(),
                        why: format!("line {}: not a JSON string ({e})", i + 1),
                    })
                })
                .collect();
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(PackedError::Io { path, source }),
    }
    let old = dir.join(OLD_CLASSES_FILE);
    match std::fs::read_to_string(&old) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(PackedError::Io { path: old, source }),
    }
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
