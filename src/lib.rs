//! dcgan-pipeline: the data and evaluation side of the DCGAN paper (Radford, Metz, Chintala
//! 2015), as a library under thin stage binaries (pipeline/). Which module may import which:
//! docs/architecture.md (tests/architecture.rs checks every import against it).
//!
//! - [`config`]: the whole configuration (embedded default, `--config`, `--set`), composing the stages' tables.
//! - [`stage`]: the contract every stage keeps (CLI shape, parts, resume, shards, manifests).
//! - [`data`]: image sources (folder, tar, LMDB), CIFAR-10 readers, `.npy`, packed sets.
//! - [`imageops`]: decoding real-world photos, min-resize and center crop.
//! - [`crop`]: the crop stage.
//! - [`faces`]: the faces stage (OpenCV's YuNet CNN by default, or the paper's Haar cascade).
//! - [`dedupe`]: the dedupe stage (autoencoder semantic hashing, HNSW, clusters).
//! - [`gan`]: the DCGAN presets and their training (tch).
//! - [`eval`]: cifar-eval (features, the L2-SVM, the protocol).
//! - [`pictures`]: image grids and PNG data URIs, shared by the stages' pages and pictures.
//! - [`plots`]: line plots and the confusion matrix as PNG (plotters, a compiled-in font).
//! - [`report`]: the run's HTML report.
//! - [`neighbours`]: nearest training images in pixel space and the data-copying test (C_T).
//! - [`memory`]: the memory a piece of work needs, checked against the machine before it starts.
//! - [`torchutil`]: tensor pieces several stages use (device names, network input, Adam).
//! - [`integrity`]: size and sha256 of what one stage hands to the next, recorded and checked.
//! - [`fsutil`], [`rng`]: atomic writes and hashing; the seeded generator.

pub mod config;
pub mod crop;
pub mod data;
pub mod dedupe;
pub mod eval;
pub mod faces;
pub mod fsutil;
pub mod gan;
pub mod imageops;
pub mod integrity;
pub mod memory;
pub mod neighbours;
pub mod pictures;
pub mod plots;
pub mod report;
pub mod rng;
pub mod stage;
pub mod torchutil;

/// Versions recorded in summary.json (no OpenCV call: train and cifar-eval must not need its
/// libraries; the image stages add it with [`versions_with_opencv`]).
pub fn versions() -> serde_json::Value {
    serde_json::json!({ "dcgan_pipeline": env!("CARGO_PKG_VERSION") })
}

pub fn versions_with_opencv() -> serde_json::Value {
    let mut v = versions();
    v["opencv"] = opencv::core::get_version_string().unwrap_or_default().into();
    v
}
