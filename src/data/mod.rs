//! Data in and out: image sources, CIFAR-10 readers, numpy's `.npy`, packed datasets.

pub mod cifar;
pub mod digits;
pub mod lmdb;
pub mod names;
pub mod npy;
pub mod packed;
pub mod source;
pub mod sources;
pub mod tar_stream;

pub use packed::LabeledImages;
pub use source::{EntryKind, FolderEntry, ImageSource, Record, RecordData};
pub use sources::SourceOptions;

use std::path::Path;

/// A labelled image set in whichever layout `path` holds: a packed folder (the output of crop,
/// faces or dedupe), CIFAR-10's binary batches, OpenCV's digits sheet (its fixed split, upscaled
/// to `side`: [`digits`]), or class folders (`<split>/<class>/*`, in a folder or an archive;
/// images must be `side` x `side`). Also returns the images that were passed over, with the reason.
pub fn open_labeled(path: &Path, split: cifar::Split, side: u32) -> anyhow::Result<(LabeledImages, cifar::Rejected)> {
    use anyhow::Context;
    if is_packed(path) {
        let (set, check) = packed::read_packed_checked(path)?;
        if check == packed::PackedCheck::Unrecorded {
            eprintln!(
                "note: {}: its summary.json records no sizes and sha256 of its files (written before they were \
                 recorded); read unverified",
                path.display()
            );
        }
        return Ok((set, Vec::new()));
    }
    if is_cifar_binary(path) {
        return Ok((cifar::read_cifar10_binary(path, split)?, Vec::new()));
    }
    if digits::is_digits_sheet(path) {
        return Ok((digits::read_sheet(path)?.split(split, side), Vec::new()));
    }
    cifar::read_class_folders(path, split, side)
        .with_context(|| format!("{}: not a packed folder, CIFAR-10 batches or class folders", path.display()))
}

/// The name under which [`content_records`] records an input without records of its own.
pub const IMAGES_AS_READ: &str = "(its images as read)";

/// What identifies the content of the labelled set read from `path` as `data`: a packed folder's
/// own records (its summary.json's sizes and sha256, which reading it checked); for any other input
/// (CIFAR-10 batches, class folders, the digits sheet, a packed folder without records) one record
/// of the images as read. Train compares them before it resumes a run.
pub fn content_records(path: &Path, data: &LabeledImages) -> crate::integrity::FileRecords {
    if let Some(files) = Some(path).filter(|p| is_packed(p)).and_then(packed::recorded_files) {
        return files;
    }
    let record = crate::integrity::FileRecord::of_bytes(&data.images).with_rows(data.len() as u64);
    [(IMAGES_AS_READ.to_owned(), record)].into()
}

/// A folder holding `images*.npy`: the output of crop, faces or dedupe.
fn is_packed(path: &Path) -> bool {
    path.is_dir()
        && std::fs::read_dir(path).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("images") && n.ends_with(".npy")
            })
        })
}

fn is_cifar_binary(path: &Path) -> bool {
    let has = |name: &str| path.join(name).exists();
    path.is_dir() && (has("cifar-10-batches-bin") || has("data_batch_1.bin") || has("test_batch.bin"))
}

/// Whether `path` holds images of `split`, found without decoding any: a packed folder is one
/// (training) split, binary batches have a test split when `test_batch.bin` is there, class folders
/// when some `<split>/<class>/` file is. Lets a caller leave a split untouched yet know it exists.
pub fn split_exists(path: &Path, split: cifar::Split) -> bool {
    if is_packed(path) {
        return split == cifar::Split::Train;
    }
    if is_cifar_binary(path) {
        let dir = if path.join("cifar-10-batches-bin").is_dir() {
            path.join("cifar-10-batches-bin")
        } else {
            path.to_owned()
        };
        return split.batch_files().iter().all(|f| dir.join(f).is_file());
    }
    if digits::is_digits_sheet(path) {
        return true;
    }
    cifar::class_folder_split_exists(path, split)
}
