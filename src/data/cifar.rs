//! CIFAR-10 in the two layouts users have: the official binary batches (`cifar-10-batches-bin`)
//! and class folders (`train/<class>/*.jpg`, `test/<class>/*.jpg`, as a folder or an archive).

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::packed::LabeledImages;
use super::source::{ImageSource, Record, SourceError};
use crate::imageops::decode_rgb;

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

const SIDE: usize = 32;
const RECORD_BYTES: usize = 1 + 3 * SIDE * SIDE;
const RECORDS_PER_BATCH: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn folder_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    pub(crate) fn batch_files(self) -> Vec<String> {
        match self {
            Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Split::Test => vec!["test_batch.bin".to_owned()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CifarError {
    #[error("{path}: missing (expected the official CIFAR-10 binary batches here)")]
    MissingBatch { path: PathBuf },
    #[error("{path}: {len} bytes, a CIFAR-10 batch has {expected} ({RECORDS_PER_BATCH} records of {RECORD_BYTES})")]
    WrongSize { path: PathBuf, len: u64, expected: u64 },
    #[error("{path}: record {record} has label {label}, CIFAR-10 labels are 0..=9")]
    BadLabel { path: PathBuf, record: usize, label: u8 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{path}: no {split}/<class>/ images found")]
    NoImages { path: PathBuf, split: &'static str },
    #[error(
        "{path}: the {split} split's class folders are not the training split's: {what}; labels are matched by \
         class name (never by position), so every split needs the same class folders"
    )]
    ClassesDiffer { path: PathBuf, split: &'static str, what: String },
}

/// Reads the official binary batches of one split from `dir` (the `cifar-10-batches-bin` folder,
/// or a folder that contains it).
pub fn read_cifar10_binary(dir: &Path, split: Split) -> Result<LabeledImages, CifarError> {
    let dir = if dir.join("cifar-10-batches-bin").is_dir() { dir.join("cifar-10-batches-bin") } else { dir.to_owned() };
    let files = split.batch_files();
    let mut images = Vec::with_capacity(files.len() * RECORDS_PER_BATCH * 3 * SIDE * SIDE);
    let mut labels = Vec::with_capacity(files.len() * RECORDS_PER_BATCH);
    for name in files {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CifarError::MissingBatch { path: path.clone() },
            _ => CifarError::Io { path: path.clone(), source },
        })?;
        let expected = (RECORDS_PER_BATCH * RECORD_BYTES) as u64;
        if bytes.len() as u64 != expected {
            return Err(CifarError::WrongSize { path, len: bytes.len() as u64, expected });
        }
        for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = chunk[0];
            if label > 9 {
                return Err(CifarError::BadLabel { path, record, label });
            }
            labels.push(label as i64);
            // Stored as three 32x32 planes (R, G, B); we keep pixels interleaved (H x W x 3).
            let planes = &chunk[1..];
            for p in 0..SIDE * SIDE {
                images.extend_from_slice(&[planes[p], planes[SIDE * SIDE + p], planes[2 * SIDE * SIDE + p]]);
            }
        }
    }
    let meta = dir.join("batches.meta.txt");
    let classes: Vec<String> = std::fs::read_to_string(&meta)
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .ok()
        .filter(|c: &Vec<String>| c.len() == 10)
        .unwrap_or_else(|| CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect());
    Ok(LabeledImages { height: SIDE as u32, width: SIDE as u32, images, labels, classes })
}

/// Images of a class-folder layout that could not be used: (source, reason).
pub type Rejected = Vec<(String, String)>;

/// True when `<split>/<class>/` is the path of some record (the records' bytes are not read).
pub fn class_folder_split_exists(path: &Path, split: Split) -> bool {
    let Ok(source) = ImageSource::open(path) else { return false };
    let mut found = false;
    let _ = source.for_each_record(&|_| false, 0, &mut |record| {
        found = in_split(&record.name, split) && record.class.is_some();
        if found {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found
}

fn in_split(name: &str, split: Split) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() >= 3 && parts[parts.len() - 3] == split.folder_name()
}

/// The class names of another split, matched by name against the training split's: the training
/// split's names, in sorted order. A class the training split has and this split lacks, or the
/// other way round, is an error naming each (numbering this split's own classes shifted every
/// label after a missing one).
fn classes_by_training_split(
    path: &Path,
    split: Split,
    own: &BTreeSet<String>,
    training: &BTreeSet<String>,
) -> Result<Vec<String>, CifarError> {
    let name = split.folder_name();
    let mut differences: Vec<String> =
        training.difference(own).map(|c| format!("{name}/{c} is missing (train/{c} has images)")).collect();
    differences.extend(own.difference(training).map(|c| format!("{name}/{c} is not a training class (no train/{c})")));
    if !differences.is_empty() {
        return Err(CifarError::ClassesDiffer { path: path.to_owned(), split: name, what: differences.join(", ") });
    }
    Ok(training.iter().cloned().collect())
}

/// Reads `<split>/<class>/<image>` from a folder or an archive. Every image must be
/// `side` x `side`; images that are not (or do not decode) are returned as rejected, naming the
/// file, and the rest is read. Classes are numbered in sorted order of the training split's class
/// folders, and another split must hold the same ones ([`classes_by_training_split`]).
pub fn read_class_folders(path: &Path, split: Split, side: u32) -> Result<(LabeledImages, Rejected), CifarError> {
    let source = ImageSource::open(path)?;
    let split_name = split.folder_name();
    let mut records: Vec<Record> = Vec::new();
    let mut training = BTreeSet::new();
    source.for_each_record(&|_| true, 64 << 20, &mut |record| {
        if let Some(class) = record.class.as_ref().filter(|_| in_split(&record.name, Split::Train)) {
            training.insert(class.clone());
        }
        if in_split(&record.name, split) && record.class.is_some() {
            records.push(record);
        }
        ControlFlow::Continue(())
    })?;
    if records.is_empty() {
        return Err(CifarError::NoImages { path: path.to_owned(), split: split_name });
    }
    let own: BTreeSet<String> = records.iter().filter_map(|r| r.class.clone()).collect();
    let classes: Vec<String> = if split == Split::Train || training.is_empty() {
        own.into_iter().collect()
    } else {
        classes_by_training_split(path, split, &own, &training)?
    };
    let decoded: Vec<Result<Vec<u8>, String>> = records
        .par_iter()
        .map(|record| {
            let bytes = record.load(64 << 20)?;
            let image = decode_rgb(&bytes, 1 << 24).map_err(|e| e.to_string())?.image;
            if (image.width, image.height) != (side, side) {
                return Err(format!("{}x{} pixels, expected {side}x{side}", image.width, image.height));
            }
            Ok(image.pixels)
        })
        .collect();
    let mut images = Vec::with_capacity(records.len() * (side * side * 3) as usize);
    let mut labels = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (record, result) in records.iter().zip(decoded) {
        match result {
            Ok(pixels) => {
                images.extend_from_slice(&pixels);
                let class = record.class.as_deref().expect("filtered above");
                labels.push(classes.iter().position(|c| c == class).expect("listed above") as i64);
            }
            Err(reason) => rejected.push((record.name.clone(), reason)),
        }
    }
    Ok((LabeledImages { height: side, width: side, images, labels, classes }, rejected))
}
