//! Data in and out: image sources, CIFAR-10 readers, numpy's `.npy`, packed datasets.

pub mod cifar;
pub mod npy;
pub mod packed;
pub mod source;

pub use packed::LabeledImages;
pub use source::{ImageSource, Record, RecordData};
