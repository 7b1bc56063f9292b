//! The protocol's images: the training and test splits of the input as it reads them (images left
//! out named), the class-balanced validation split, the per-class draws, and picking images by index.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use super::cifar_config::CifarEvalConfig;
use crate::data::cifar::{self, Split};
use crate::data::{open_labeled, split_exists, LabeledImages};
use crate::rng::SplitMix;

/// Indices of each class, shuffled with `seed`.
fn shuffled_by_class(labels: &[usize], classes: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = SplitMix(seed);
    for v in &mut by_class {
        rng.shuffle(v);
    }
    by_class
}

/// A class-balanced split: `validation` images (the same number per class) and the rest.
pub fn validation_split(labels: &[usize], classes: usize, validation: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let per_class = validation / classes;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for members in shuffled_by_class(labels, classes, seed ^ 0x7A11) {
        let take = per_class.min(members.len() / 2);
        val.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// `per_class` members of each class drawn from `pool` (draw `draw` of the seed).
pub fn draw_per_class(
    labels: &[usize],
    pool: &[usize],
    classes: usize,
    per_class: usize,
    seed: u64,
    draw: u64,
) -> Vec<usize> {
    let pool_labels: Vec<usize> = pool.iter().map(|&i| labels[i]).collect();
    let mut picked = Vec::new();
    for members in shuffled_by_class(&pool_labels, classes, seed ^ (0xD4A3 + draw).wrapping_mul(0x9E37_79B9)) {
        picked.extend(members.iter().take(per_class).map(|&j| pool[j]));
    }
    picked.sort_unstable();
    picked
}

pub(crate) fn labels_of(images: &LabeledImages, what: &str) -> Result<Vec<usize>> {
    images
        .labels
        .iter()
        .map(
            |&l| {
                if (0..10).contains(&l) {
                    Ok(l as usize)
                } else {
                    bail!("{what}: label {l}, CIFAR-10 labels are 0..=9")
                }
            },
        )
        .collect()
}

/// The images `indices`, in that order.
pub fn select_images(images: &LabeledImages, indices: &[usize]) -> LabeledImages {
    let mut out = LabeledImages {
        height: images.height,
        width: images.width,
        images: Vec::new(),
        labels: Vec::new(),
        classes: images.classes.clone(),
    };
    for &i in indices {
        out.images.extend_from_slice(images.image(i));
        out.labels.push(images.labels[i]);
    }
    out
}

/// The first `limit` images of each class (0 = all).
fn limit_per_class(images: LabeledImages, limit: usize) -> LabeledImages {
    if limit == 0 {
        return images;
    }
    let mut seen = [0usize; 10];
    let keep: Vec<usize> = (0..images.len())
        .filter(|&i| {
            let l = images.labels[i].clamp(0, 9) as usize;
            seen[l] += 1;
            seen[l] <= limit
        })
        .collect();
    select_images(&images, &keep)
}

/// An input image that was left out (it did not decode, or is not 32x32), named as the input
/// names it (the path inside the folder or archive).
#[derive(Debug, Clone, Serialize)]
pub struct RejectedImage {
    pub name: String,
    pub reason: String,
}

/// Every image of the input that was left out, by split: metrics.json and summary.json list them,
/// so that a score is never on fewer images than the user thinks without saying so.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RejectedImages {
    pub count: usize,
    pub train: Vec<RejectedImage>,
    pub test: Vec<RejectedImage>,
}

/// Whether [`load_splits`] reads the test split (the final score) or leaves it untouched
/// (choosing a checkpoint on the validation split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestSplit {
    Read,
    LeaveUntouched,
}

/// The protocol's images: the training split (less the held-out test images where the input has
/// no test split) and the test split.
pub struct Splits {
    pub train: LabeledImages,
    /// None without a test split (and no hold-out), or when it was left untouched.
    pub test: Option<LabeledImages>,
    pub test_source: &'static str,
    pub rejected: RejectedImages,
}

/// Reads the splits of `input` as the protocol uses them; every image left out gets a warning
/// line naming it. With [`TestSplit::LeaveUntouched`] the test split is never opened and the
/// held-out images (the same ones a full run holds out) are dropped unread by anything after.
pub fn load_splits(config: &CifarEvalConfig, input: &Path, test: TestSplit) -> Result<Splits> {
    let mut rejected = RejectedImages::default();
    let note = |split: &str, list: cifar::Rejected, into: &mut Vec<RejectedImage>| {
        for (name, reason) in list {
            eprintln!(
                "cifar-eval: warning: {}",
                crate::data::names::for_terminal(&format!(
                    "{}: {name}: {reason} (left out of the {split} split)",
                    input.display()
                ))
            );
            into.push(RejectedImage { name, reason });
        }
    };
    let (train_images, train_rejected) = open_labeled(input, Split::Train, 32)?;
    note("training", train_rejected, &mut rejected.train);
    let mut train_images = limit_per_class(train_images, config.limit_train_per_class);
    let (test_images, test_source) = if split_exists(input, Split::Test) {
        match test {
            TestSplit::Read => {
                let (images, test_rejected) = open_labeled(input, Split::Test, 32)?;
                note("test", test_rejected, &mut rejected.test);
                (Some(limit_per_class(images, config.limit_test_per_class)), "test split")
            }
            TestSplit::LeaveUntouched => (None, "test split (not read)"),
        }
    } else if config.holdout_test > 0 {
        let labels = labels_of(&train_images, "training split")?;
        let (keep, held) = validation_split(&labels, 10, config.holdout_test, config.seed ^ 0x7E57);
        eprintln!(
            "cifar-eval: no test split in {}; holding {} training images out as the test split",
            input.display(),
            held.len()
        );
        let held_images = (test == TestSplit::Read).then(|| select_images(&train_images, &held));
        train_images = select_images(&train_images, &keep);
        (held_images, "held-out training images")
    } else {
        eprintln!("cifar-eval: no test split in {}; scoring on the validation split only", input.display());
        (None, "none")
    };
    rejected.count = rejected.train.len() + rejected.test.len();
    Ok(Splits { train: train_images, test: test_images, test_source, rejected })
}
