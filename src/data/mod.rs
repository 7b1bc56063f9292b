//! Data in and out: image sources, CIFAR-10 readers, numpy's `.npy`, packed datasets.

pub mod cifar;
pub mod npy;
pub mod packed;
pub mod synthetic;
pub mod source;

pub use packed::LabeledImages;
pub use source::{ImageSource, Record, RecordData};

use std::path::Path;

/// A labelled image set in whichever layout `path` holds: a packed folder (the output of crop,
/// faces or dedupe), CIFAR-10's binary batches, or class folders (`<split>/<class>/*`, in a folder
/// or an archive; images must be `side` x `side`). Also returns the images that were passed over,
/// with the reason.
pub fn open_labeled(path: &Path, split: cifar::Split, side: u32) -> anyhow::Result<(LabeledImages, cifar::Rejected)> {
    use anyhow::Context;
    let is_dir = path.is_dir();
    let has = |name: &str| path.join(name).exists();
    if is_dir && std::fs::read_dir(path)?.filter_map(|e| e.ok()).any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.starts_with("images") && n.ends_with(".npy")
    }) {
        return Ok((packed::read_packed(path)?, Vec::new()));
    }
    if is_dir && (has("cifar-10-batches-bin") || has("data_batch_1.bin") || has("test_batch.bin")) {
        return Ok((cifar::read_cifar10_binary(path, split)?, Vec::new()));
    }
    cifar::read_class_folders(path, split, side).with_context(|| format!("{}: not a packed folder, CIFAR-10 batches or class folders", path.display()))
}
