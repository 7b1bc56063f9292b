//! Does a trained generator copy its training set? `sample --copy-test`: G's samples, the training
//! images, held-out real images (never trained on) and the data-copying test of
//! [`crate::neighbours::copying`] on them, written beside the sample grid.
//!
//! The held-out images are, in this order: the ones the user names (`--held-out`), the training
//! input's own test split (the digits sheet's test tiles, CIFAR-10's test batch, `test/` class
//! folders), or the last `held_out_share` of a one-split input (a packed set), which must then have
//! been kept out of training (`train.limit_images`): checked against the train run's summary.json
//! when the generator is given as its folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::models::Prior;
use super::sample::{generator_file, seeded_z, TrainedGenerator};
use crate::data::cifar::Split;
use crate::data::{open_labeled, split_exists, LabeledImages};
use crate::neighbours::outputs::write_copy_test;
use crate::neighbours::{copy_test, CopyTestSettings, Images};

/// What `sample --copy-test` compares.
#[derive(Debug, Clone)]
pub struct CopyTestSpec {
    /// The training input (what `train --input` was).
    pub training: PathBuf,
    /// Held-out real images named by the user; None: the training input's own (see the module).
    pub held_out: Option<PathBuf>,
    /// Of a one-split input, the last share held out.
    pub held_out_share: f64,
    /// Samples of G compared.
    pub samples: i64,
    pub seed: i64,
    pub prior: Prior,
    pub settings: CopyTestSettings,
}

/// G's images (N x 3 x H x W in [-1, 1]) as packed uint8 H x W x 3 rows, rounded as the sample
/// grids are.
pub fn to_pixels(images: &Tensor) -> Result<Vec<u8>> {
    let bytes = ((images.to_device(tch::Device::Cpu).clamp(-1.0, 1.0) + 1.0) * 127.5)
        .round()
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous();
    Ok(Vec::<u8>::try_from(bytes.flatten(0, -1))?)
}

/// The images G was trained on as its train run counted them (`report.images` of the folder's
/// summary.json), when the generator is a train folder.
fn trained_on(generator: &Path) -> Option<usize> {
    let summary = std::fs::read(generator.join("summary.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&summary).ok()?;
    v.pointer("/report/images").and_then(serde_json::Value::as_u64).map(|n| n as usize)
}

/// The training images and the held-out ones, and a line saying where the held-out ones came from.
fn training_and_held_out(
    spec: &CopyTestSpec,
    generator: &Path,
    side: u32,
) -> Result<(LabeledImages, LabeledImages, String)> {
    let (mut training, _) = open_labeled(&spec.training, Split::Train, side)
        .with_context(|| format!("{}: cannot read the training images", spec.training.display()))?;
    let size_check = |set: &LabeledImages, path: &Path| -> Result<()> {
        if (set.height, set.width) != (side, side) {
            bail!("{}: images are {}x{}, G makes {side}x{side}", path.display(), set.width, set.height);
        }
        Ok(())
    };
    size_check(&training, &spec.training)?;
    if let Some(path) = &spec.held_out {
        // A set with a test split gives that split; a one-split set (a packed folder) gives its images.
        let split = if split_exists(path, Split::Test) { Split::Test } else { Split::Train };
        if split == Split::Train && path == &spec.training {
            bail!("{}: --held-out names the training images themselves", path.display());
        }
        let (held, _) = open_labeled(path, split, side)
            .with_context(|| format!("{}: cannot read the held-out images", path.display()))?;
        size_check(&held, path)?;
        return Ok((training, held, format!("named: {} ({} split)", path.display(), split.folder_name())));
    }
    if split_exists(&spec.training, Split::Test) {
        let (held, _) = open_labeled(&spec.training, Split::Test, side)
            .with_context(|| format!("{}: cannot read its test split", spec.training.display()))?;
        size_check(&held, &spec.training)?;
        return Ok((training, held, format!("the test split of {}", spec.training.display())));
    }
    let n = training.len();
    let held_n = ((n as f64) * spec.held_out_share).round() as usize;
    if held_n == 0 || held_n >= n {
        bail!(
            "{}: one split of {n} images; --held-out-share {} holds out {held_n}: name held-out images with --held-out",
            spec.training.display(),
            spec.held_out_share
        );
    }
    let keep = n - held_n;
    if let Some(used) = trained_on(generator).filter(|&u| u > keep) {
        bail!(
            "{}: G was trained on its first {used} images, but the held-out share {} starts at image {keep}: \
             train with train.limit_images={keep}, or name held-out images with --held-out",
            spec.training.display(),
            spec.held_out_share
        );
    }
    let dims = (side * side * 3) as usize;
    let held = LabeledImages {
        height: side,
        width: side,
        images: training.images.split_off(keep * dims),
        labels: training.labels.split_off(keep),
        classes: training.classes.clone(),
    };
    Ok((training, held, format!("the last {held_n} images of {} (kept out of training)", spec.training.display())))
}

/// Runs the test for the generator at `generator` and writes its files into `dir`; returns
/// copy_test.json's value.
pub fn write_copy_test_for(generator: &Path, dir: &Path, spec: &CopyTestSpec) -> Result<serde_json::Value> {
    if spec.samples < 1 {
        bail!("--copy-samples {}: at least 1 sample", spec.samples);
    }
    if !(spec.held_out_share > 0.0 && spec.held_out_share < 1.0) {
        bail!("--held-out-share {}: must be between 0 and 1", spec.held_out_share);
    }
    let file = generator_file(generator);
    let g = TrainedGenerator::load(&file)?;
    let side = g.preset.image_size() as u32;
    let (training, held, held_about) = training_and_held_out(spec, generator, side)?;
    let estimate =
        (training.images.len() + held.images.len()) as f64 + spec.samples as f64 * (side * side * 3) as f64 * 6.0;
    let budget = crate::memory::budget(0.0, None);
    crate::memory::check(
        &format!("--copy-samples {}", spec.samples),
        &crate::memory::Estimate {
            bytes: estimate + 512.0 * 1048576.0,
            formula: "the images as bytes, the samples also as float32, + 0.5 GiB".into(),
        },
        budget.as_ref(),
        "ask for fewer samples",
    )?;
    // Another stream than the grid's and the walk's.
    let z = seeded_z(spec.prior, spec.samples, g.z_dim(), spec.seed.wrapping_add(2_000_003));
    let mut generated = Vec::with_capacity(spec.samples as usize * (side * side * 3) as usize);
    for chunk in z.split(256, 0) {
        generated.extend(to_pixels(&g.generate(&chunk))?);
    }
    let (training_set, generated_set) =
        (Images { pixels: &training.images, side }, Images { pixels: &generated, side });
    let test = copy_test(training_set, Images { pixels: &held.images, side }, generated_set, &spec.settings)?;
    let about = serde_json::json!({
        "generator": file.display().to_string(),
        "training": spec.training.display().to_string(),
        "training_images": training.len(),
        "held_out": held_about,
        "held_out_images": held.len(),
        "samples": spec.samples,
        "seed": spec.seed,
        "prior": spec.prior,
        "side": side,
    });
    Ok(write_copy_test(dir, &test, &spec.settings, training_set, generated_set, about)?)
}
