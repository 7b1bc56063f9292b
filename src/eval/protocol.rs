//! The paper's Table 1 protocol on CIFAR-10, end to end: features of the training (and, where
//! present, test) images; standardisation with training statistics; C chosen on a held-out,
//! class-balanced validation split of the training set; a refit on the whole training set scored
//! once on the test split; and the "400 per class" column as the mean and standard deviation over
//! random draws of 400 labelled training images per class.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::features::{FeatureExtractor, FeatureSpec};
use super::matrix::Normalization;
use crate::gan::{FeaturePoint, Pooling};
use crate::fsutil::sha256_file;
use super::matrix::{FeatureDtype, FeatureMatrix, FeatureRows};
use crate::rng::SplitMix;
use super::metrics::ClassificationMetrics;
use super::svm::{L2Svm, L2SvmValidParams};
use crate::data::cifar::{Split, CIFAR10_CLASSES};
use crate::data::{cifar, open_labeled, split_exists, LabeledImages};
use crate::fsutil;
use crate::gan::Preset;
use crate::torchutil::device::{parse_device, DeviceName};
use crate::stage::progress::Progress;
use linfa::ParamGuard;

/// `[cifar_eval]` in the config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CifarEvalConfig {
    /// A discriminator checkpoint (safetensors, as `train` writes it), or "random" for a randomly
    /// initialised D (the baseline).
    pub discriminator: String,
    pub preset: Preset,
    /// D's first width; 0 = the paper's 128.
    pub width: i64,
    /// Seeds the random D, the validation split, the 400-per-class draws and the solver's order.
    pub seed: u64,
    /// auto (CUDA when there is one), cpu, cuda or cuda:N.
    pub device: String,
    /// "recompute": BatchNorm population statistics over the training images (the authors' feature
    /// code); "checkpoint": the running statistics saved with D.
    pub batch_norm: String,
    /// Training images the population statistics are measured on (0 = all).
    pub batch_norm_images: usize,
    /// Images per forward pass.
    pub batch: usize,
    /// float16 halves the feature matrix (5.7 GB -> 2.9 GB for 50,000 images); float32.
    pub features_dtype: FeatureDtype,
    /// Keep features-train.npy / features-test.npy (with labels-*.npy) in the output (reused when
    /// the run is repeated).
    pub save_features: bool,
    /// Which tensor of each layer the features are taken from: "leakyrelu" (the layer's output,
    /// as the authors' SVHN code), "batchnorm" (before the LeakyReLU) or "conv" (before BatchNorm).
    pub feature_point: FeaturePoint,
    /// "max": 4x4 max pooling (the paper); "max+mean": 4x4 max and mean side by side.
    pub pooling: Pooling,
    /// "standardize" (each feature with the training split's mean and standard deviation), "none"
    /// (the authors' SVHN code) or "per_layer" (standardised, each layer the same total variance).
    pub normalization: Normalization,
    /// Not the paper's protocol: the SVM also learns from each training image mirrored left to
    /// right, and scores an image by its decision values averaged with its mirror's.
    pub flips: bool,
    /// The SVM's C values tried on the validation split.
    pub c_grid: Vec<f64>,
    /// After the grid: this many more C values tried between the best and each neighbour
    /// (geometrically spaced); 0 = the grid only.
    pub c_refine: usize,
    /// Validation images held out of the training split for choosing C (class-balanced).
    pub validation: usize,
    /// Solver tolerance on the projected gradient (LIBLINEAR's eps).
    pub tol: f64,
    pub max_passes: usize,
    /// The SVM's constant intercept feature (LIBLINEAR's -B); 0 = no intercept.
    pub bias: f32,
    /// Labelled images per class in the small-data column (the paper: 400), and its draws.
    pub per_class: usize,
    pub draws: usize,
    /// Without a test split in the input, hold this many class-balanced training images out as
    /// the test split (scored once, never used for choosing C); 0 = report validation figures only.
    pub holdout_test: usize,
    /// `--snapshots`: each snapshot's SVM is fitted on at most this many images per class of the
    /// fitting part of the training split (0 = all of it), and scored on the whole validation split.
    pub snapshot_fit_per_class: usize,
    /// Use only the first N training / test images of each class (0 = all): quick runs.
    pub limit_train_per_class: usize,
    pub limit_test_per_class: usize,
}

impl CifarEvalConfig {
    pub fn width(&self) -> i64 {
        if self.width > 0 { self.width } else { self.preset.default_width() }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.c_grid.is_empty() || self.c_grid.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
            return Err("cifar_eval.c_grid must hold positive values".into());
        }
        if self.batch == 0 {
            return Err("cifar_eval.batch must be at least 1".into());
        }
        if !matches!(self.batch_norm.as_str(), "recompute" | "checkpoint") {
            return Err(format!("cifar_eval.batch_norm = {:?}: expected recompute or checkpoint", self.batch_norm));
        }
        DeviceName::parse(&self.device).map_err(|e| format!("cifar_eval.device: {e}"))?;
        Ok(())
    }

    pub fn svm(&self, c: f64, threads: usize) -> Result<L2SvmValidParams> {
        Ok(L2Svm::params().c(c).tol(self.tol).max_passes(self.max_passes).bias(self.bias).seed(self.seed).threads(threads).n_classes(10).check()?)
    }
}

/// Rows `indices` of a matrix, without copying them.
pub struct Subset<'a, R> {
    pub rows: &'a R,
    pub indices: &'a [usize],
}

impl<R: FeatureRows> FeatureRows for Subset<'_, R> {
    fn n_rows(&self) -> usize {
        self.indices.len()
    }
    fn n_cols(&self) -> usize {
        self.rows.n_cols()
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        self.rows.row(self.indices[i], buf)
    }
}

/// The rows of `first` then those of `second` (a training set with its mirrored copies).
pub struct Stacked<'a, A, B> {
    pub first: &'a A,
    pub second: &'a B,
}

impl<A: FeatureRows, B: FeatureRows> FeatureRows for Stacked<'_, A, B> {
    fn n_rows(&self) -> usize {
        self.first.n_rows() + self.second.n_rows()
    }
    fn n_cols(&self) -> usize {
        self.first.n_cols()
    }
    fn row<'a>(&'a self, i: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let n = self.first.n_rows();
        if i < n { self.first.row(i, buf) } else { self.second.row(i - n, buf) }
    }
}

/// A split's features and, with `flips`, those of its mirrored images (row for row).
pub struct SplitFeatures<'a> {
    pub x: &'a FeatureMatrix,
    pub flipped: Option<&'a FeatureMatrix>,
}

impl SplitFeatures<'_> {
    /// Fits on rows `indices` (and their mirrored copies, labelled alike).
    pub fn fit(&self, params: &L2SvmValidParams, indices: &[usize], labels: &[usize]) -> Result<L2Svm> {
        let rows = Subset { rows: self.x, indices };
        Ok(match self.flipped {
            None => params.fit_rows(&rows, labels)?,
            Some(f) => {
                let doubled: Vec<usize> = labels.iter().chain(labels).copied().collect();
                params.fit_rows(&Stacked { first: &rows, second: &Subset { rows: f, indices } }, &doubled)?
            }
        })
    }

    /// The predicted class of rows `indices`: the largest decision value, averaged with the mirrored
    /// image's where there is one.
    pub fn predict(&self, model: &L2Svm, indices: &[usize]) -> Vec<usize> {
        let mut scores = model.decision_values(&Subset { rows: self.x, indices });
        if let Some(f) = self.flipped {
            let mirrored = model.decision_values(&Subset { rows: f, indices });
            scores.iter_mut().zip(mirrored).for_each(|(s, m)| *s = 0.5 * (*s + m));
        }
        let k = model.n_classes();
        scores.chunks(k).map(|s| s.iter().enumerate().fold(0, |best, (c, v)| if *v > s[best] { c } else { best })).collect()
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.x.n_rows()).collect()
    }
}

/// Whether `c` is the smallest or largest of a grid of two or more values.
pub fn c_at_edge(grid: &[f64], c: f64) -> bool {
    let (lo, hi) = grid.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    lo < hi && (c == lo || c == hi)
}

/// The extra C values `c_refine` tries: `steps` geometric steps from `best` toward each of its
/// neighbours in `grid` (one side only at the grid's ends).
pub fn refined_c(grid: &[f64], best: f64, steps: usize) -> Vec<f64> {
    let mut sorted = grid.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted.dedup();
    let Some(at) = sorted.iter().position(|c| *c == best) else { return Vec::new() };
    let neighbours = [at.checked_sub(1).map(|i| sorted[i]), sorted.get(at + 1).copied()];
    let mut out = Vec::new();
    for n in neighbours.into_iter().flatten() {
        for j in 1..=steps {
            out.push(best * (n / best).powf(j as f64 / (steps + 1) as f64));
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

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
pub fn draw_per_class(labels: &[usize], pool: &[usize], classes: usize, per_class: usize, seed: u64, draw: u64) -> Vec<usize> {
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
        .map(|&l| if (0..10).contains(&l) { Ok(l as usize) } else { bail!("{what}: label {l}, CIFAR-10 labels are 0..=9") })
        .collect()
}

/// The images `indices`, in that order.
pub fn select_images(images: &LabeledImages, indices: &[usize]) -> LabeledImages {
    let mut out = LabeledImages { height: images.height, width: images.width, images: Vec::new(), labels: Vec::new(), classes: images.classes.clone() };
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

/// One C tried on the validation split.
#[derive(Debug, Clone, Serialize)]
pub struct GridPoint {
    pub c: f64,
    pub validation_accuracy: f64,
    pub fit_s: f64,
    pub passes: usize,
    pub converged: bool,
}

/// Everything metrics.json holds.
#[derive(Debug, Clone, Serialize)]
pub struct CifarEvalReport {
    pub discriminator: String,
    pub discriminator_sha256: Option<String>,
    pub feature_count: usize,
    pub train_images: usize,
    pub test_images: Option<usize>,
    /// "test split", or "held-out training images" where the input had no test split.
    pub test_source: &'static str,
    /// Images of the input left out of either split (did not decode, or not 32x32).
    pub rejected_images: RejectedImages,
    pub validation_images: usize,
    /// The feature protocol: feature_point, pooling, normalization, flips.
    pub protocol: serde_json::Value,
    pub grid: Vec<GridPoint>,
    pub chosen_c: f64,
    /// The chosen C is the grid's smallest or largest (of two or more): the best may lie beyond.
    pub chosen_c_at_grid_edge: bool,
    /// The refit on the whole training split, scored on the test split (None without one).
    pub test: Option<ClassificationMetrics>,
    /// The model fitted without the validation images, scored on them at the chosen C.
    pub validation: ClassificationMetrics,
    pub per_class_labels: usize,
    pub per_class_c: f64,
    /// Accuracy of each draw, scored on the test split if present, else on the validation split.
    pub per_class_accuracies: Vec<f64>,
    pub per_class_mean: Option<f64>,
    pub per_class_std: Option<f64>,
    pub per_class_scored_on: &'static str,
    pub timings_s: serde_json::Value,
    pub device: String,
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
            eprintln!("cifar-eval: warning: {}: {name}: {reason} (left out of the {split} split)", input.display());
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
        eprintln!("cifar-eval: no test split in {}; holding {} training images out as the test split", input.display(), held.len());
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

/// Features of one split, from the cache in `output` when it matches `key`, else computed.
fn features_for(
    extractor: &FeatureExtractor,
    images: &LabeledImages,
    config: &CifarEvalConfig,
    output: &Path,
    split: &str,
    flipped: bool,
    key: &str,
    log_every_s: f64,
) -> Result<FeatureMatrix> {
    let split = &if flipped { format!("{split}-flipped") } else { split.to_owned() };
    let spec = FeatureSpec { point: config.feature_point, pooling: config.pooling, flipped };
    let path = output.join(format!("features-{split}.npy"));
    let key_path = output.join(format!("features-{split}.key"));
    if config.save_features && path.exists() && std::fs::read_to_string(&key_path).ok().as_deref() == Some(key) {
        let m = FeatureMatrix::read_npy(&path)?;
        if m.n_rows() == images.len() && m.n_cols() == extractor.feature_count_with(config.pooling) {
            eprintln!("cifar-eval: reusing {}", path.display());
            return Ok(m);
        }
    }
    let progress = Progress::new(&format!("cifar-eval: {split} features"), Some(images.len() as u64), log_every_s);
    let mut done = 0;
    let m = extractor
        .extract_many(images, &[spec], config.batch, config.features_dtype, |d, _| {
            progress.inc((d - done) as u64);
            done = d;
        })?
        .pop()
        .expect("one spec");
    progress.finish();
    if config.save_features {
        m.write_npy(&path)?;
        // The labels beside them, so that the features serve other tools (benches/svm_vs_sklearn.py).
        crate::data::npy::write_array(&output.join(format!("labels-{split}.npy")), &[images.len() as u64], &images.labels)?;
        fsutil::write_atomic(&key_path, key.as_bytes())?;
    }
    Ok(m)
}

/// Runs the protocol on CIFAR-10 at `input` (binary batches or class folders) and writes
/// metrics.json, confusion.png and confusion.csv into `output`.
pub fn evaluate(config: &CifarEvalConfig, input: &Path, output: &Path, threads: usize, log_every_s: f64) -> Result<CifarEvalReport> {
    config.validate().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let device = parse_device(&config.device).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(output).with_context(|| format!("{}: cannot create", output.display()))?;

    let Splits { train: train_images, test: test_images, test_source, rejected } = load_splits(config, input, TestSplit::Read)?;
    let train_labels = labels_of(&train_images, "training split")?;
    let test_labels = test_images.as_ref().map(|t| labels_of(t, "test split")).transpose()?;
    let load_s = started.elapsed().as_secs_f64();

    // The discriminator.
    let (mut extractor, sha) = if config.discriminator == "random" {
        (FeatureExtractor::random(config.preset, config.width(), config.seed as i64, device), None)
    } else {
        let path = PathBuf::from(&config.discriminator);
        let extractor = FeatureExtractor::load(&path, config.preset, config.width(), device)?;
        (extractor, Some(sha256_file(&path).with_context(|| format!("{}: cannot hash", path.display()))?))
    };
    let key = crate::stage::fingerprint(&json!({
        "d": sha.clone().unwrap_or_else(|| format!("random-{}", config.seed)), "preset": config.preset, "width": config.width(),
        "bn": config.batch_norm, "bn_images": config.batch_norm_images, "dtype": config.features_dtype,
        "input": input.display().to_string(), "limits": [config.limit_train_per_class, config.limit_test_per_class],
        "holdout": config.holdout_test, "seed": config.seed, "point": config.feature_point, "pooling": config.pooling,
    }));
    let cached = |split: &str| config.save_features && std::fs::read_to_string(output.join(format!("features-{split}.key"))).ok().as_deref() == Some(key.as_str());
    let flip_cached = |split: &str| !config.flips || cached(&format!("{split}-flipped"));
    let all_cached = cached("train") && flip_cached("train") && (test_images.is_none() || (cached("test") && flip_cached("test")));
    let t = Instant::now();
    if config.batch_norm == "recompute" && !all_cached {
        let progress = Progress::new("cifar-eval: BatchNorm statistics (layers)", Some(extractor_layers(config)), log_every_s);
        extractor.recompute_batch_norm(&train_images, config.batch_norm_images, config.batch, |_, _| progress.inc(1))?;
        progress.finish();
    }
    let batch_norm_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let layout = extractor.discriminator().feature_layout(config.pooling);
    let features = |images: &LabeledImages, split: &str, flipped: bool| features_for(&extractor, images, config, output, split, flipped, &key, log_every_s);
    let mut train_x = features(&train_images, "train", false)?;
    let mut train_xf = if config.flips { Some(features(&train_images, "train", true)?) } else { None };
    let mut test_x = test_images.as_ref().map(|images| features(images, "test", false)).transpose()?;
    let mut test_xf = match &test_images {
        Some(images) if config.flips => Some(features(images, "test", true)?),
        _ => None,
    };
    drop(extractor);
    let features_s = t.elapsed().as_secs_f64();
    let train_n = train_images.len();
    let test_n = test_images.as_ref().map(|t| t.len());
    drop(train_images);
    drop(test_images);

    let t = Instant::now();
    // Fitted on the training images alone (their mirrored copies are the same images).
    if let Some(stats) = config.normalization.fit(&train_x, &layout) {
        for x in [Some(&mut train_x), train_xf.as_mut(), test_x.as_mut(), test_xf.as_mut()].into_iter().flatten() {
            x.standardize(&stats);
        }
    }
    let train_f = SplitFeatures { x: &train_x, flipped: train_xf.as_ref() };
    let test_f = test_x.as_ref().map(|x| SplitFeatures { x, flipped: test_xf.as_ref() });
    let standardize_s = t.elapsed().as_secs_f64();

    // C on the validation split.
    let (fit_idx, val_idx) = validation_split(&train_labels, 10, config.validation, config.seed);
    if val_idx.is_empty() {
        bail!("cifar_eval.validation = {}: no validation images (need at least one per class and two images per class)", config.validation);
    }
    let fit_labels: Vec<usize> = fit_idx.iter().map(|&i| train_labels[i]).collect();
    let val_labels: Vec<usize> = val_idx.iter().map(|&i| train_labels[i]).collect();
    let mut grid = Vec::new();
    let mut best: Option<(f64, ClassificationMetrics)> = None;
    let mut c_values = config.c_grid.clone();
    let mut refined = false;
    while let Some(c) = (!c_values.is_empty()).then(|| c_values.remove(0)) {
        let model = train_f.fit(&config.svm(c, threads)?, &fit_idx, &fit_labels)?;
        let metrics = ClassificationMetrics::new(&val_labels, &train_f.predict(&model, &val_idx), 10);
        eprintln!(
            "cifar-eval: C = {c:<8} validation accuracy {:.2}% ({:.1} s, {} passes{})",
            100.0 * metrics.accuracy,
            model.report.seconds,
            model.report.passes.iter().max().unwrap_or(&0),
            if model.report.converged.iter().all(|c| *c) { "" } else { ", NOT converged" }
        );
        grid.push(GridPoint {
            c,
            validation_accuracy: metrics.accuracy,
            fit_s: model.report.seconds,
            passes: *model.report.passes.iter().max().unwrap_or(&0),
            converged: model.report.converged.iter().all(|c| *c),
        });
        // Ties go to the smaller C (listed first when the grid ascends): the simpler model.
        if best.as_ref().is_none_or(|(_, m)| metrics.accuracy > m.accuracy) {
            best = Some((c, metrics));
        }
        if c_values.is_empty() && !refined && config.c_refine > 0 {
            refined = true;
            c_values = refined_c(&config.c_grid, best.as_ref().expect("scored").0, config.c_refine);
        }
    }
    let (chosen_c, validation) = best.expect("non-empty grid");
    let chosen_c_at_grid_edge = c_at_edge(&config.c_grid, chosen_c);
    if chosen_c_at_grid_edge {
        eprintln!("cifar-eval: warning: C = {chosen_c} is at the edge of cifar_eval.c_grid; the best C may lie beyond it (widen the grid)");
    }

    // The refit on the whole training split, scored once on the test split.
    let t = Instant::now();
    let test = match (&test_f, &test_labels) {
        (Some(x), Some(labels)) => {
            let model = train_f.fit(&config.svm(chosen_c, threads)?, &train_f.all(), &train_labels)?;
            Some(ClassificationMetrics::new(labels, &x.predict(&model, &x.all()), 10))
        }
        _ => None,
    };
    let refit_s = t.elapsed().as_secs_f64();

    // The paper's 400-per-class column: C chosen on the validation split with the first draw.
    let t = Instant::now();
    let (mut per_class_accuracies, mut per_class_c) = (Vec::new(), chosen_c);
    if config.per_class > 0 && config.draws > 0 {
        let first = draw_per_class(&train_labels, &fit_idx, 10, config.per_class, config.seed, 0);
        let first_labels: Vec<usize> = first.iter().map(|&i| train_labels[i]).collect();
        let mut best_small = (0.0, f64::NEG_INFINITY);
        for &c in &config.c_grid {
            let model = train_f.fit(&config.svm(c, threads)?, &first, &first_labels)?;
            let acc = ClassificationMetrics::new(&val_labels, &train_f.predict(&model, &val_idx), 10).accuracy;
            if acc > best_small.1 {
                best_small = (c, acc);
            }
        }
        per_class_c = best_small.0;
        for draw in 0..config.draws as u64 {
            let picked = draw_per_class(&train_labels, &fit_idx, 10, config.per_class, config.seed, draw);
            let labels: Vec<usize> = picked.iter().map(|&i| train_labels[i]).collect();
            let model = train_f.fit(&config.svm(per_class_c, threads)?, &picked, &labels)?;
            let acc = match (&test_f, &test_labels) {
                (Some(x), Some(y)) => ClassificationMetrics::new(y, &x.predict(&model, &x.all()), 10).accuracy,
                _ => ClassificationMetrics::new(&val_labels, &train_f.predict(&model, &val_idx), 10).accuracy,
            };
            per_class_accuracies.push(acc);
        }
    }
    let per_class_s = t.elapsed().as_secs_f64();
    let (mean, std) = mean_std(&per_class_accuracies);

    let report = CifarEvalReport {
        discriminator: config.discriminator.clone(),
        discriminator_sha256: sha,
        feature_count: train_x.n_cols(),
        train_images: train_n,
        test_images: test_n,
        test_source,
        rejected_images: rejected,
        validation_images: val_idx.len(),
        protocol: json!({ "feature_point": config.feature_point, "pooling": config.pooling, "normalization": config.normalization, "flips": config.flips }),
        grid,
        chosen_c,
        chosen_c_at_grid_edge,
        test,
        validation,
        per_class_labels: config.per_class,
        per_class_c,
        per_class_accuracies,
        per_class_mean: mean,
        per_class_std: std,
        per_class_scored_on: if test_x.is_some() { "test" } else { "validation" },
        timings_s: json!({
            "load": load_s, "batch_norm": batch_norm_s, "features": features_s, "standardize": standardize_s,
            "refit": refit_s, "per_class": per_class_s, "total": started.elapsed().as_secs_f64(),
        }),
        device: format!("{device:?}"),
    };
    let headline = report.test.as_ref().unwrap_or(&report.validation);
    fsutil::write_atomic(&output.join("metrics.json"), &serde_json::to_vec_pretty(&report)?)?;
    headline.write_confusion_png(&CIFAR10_CLASSES, &output.join("confusion.png"))?;
    fsutil::write_atomic(&output.join("confusion.csv"), headline.confusion_csv(&CIFAR10_CLASSES).as_bytes())?;
    Ok(report)
}

pub(crate) fn extractor_layers(config: &CifarEvalConfig) -> u64 {
    match config.preset {
        Preset::Imagenet32 => 6,
        Preset::Dcgan64 => 4,
        Preset::Dcgan32 => 3,
    }
}

fn mean_std(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (Some(mean), Some(var.sqrt()))
}

/// The paper's Table 1 (CIFAR-10), for printing next to ours: (model, accuracy, 400 per class).
pub const PAPER_TABLE_1: [(&str, &str, &str); 5] = [
    ("1 Layer K-means", "80.6%", "63.7% (+-0.7%)"),
    ("3 Layer K-means Learned RF", "82.0%", "70.7% (+-0.7%)"),
    ("View Invariant K-means", "81.9%", "72.6% (+-0.7%)"),
    ("Exemplar CNN", "84.3%", "77.4% (+-0.2%)"),
    ("DCGAN (ours) + L2-SVM", "82.8%", "73.8% (+-0.4%)"),
];

/// The printed comparison with the paper's Table 1.
pub fn table_1(report: &CifarEvalReport) -> String {
    let mut out = String::from("| Model | Accuracy | Accuracy (400 per class) |\n|---|---|---|\n");
    for (model, acc, small) in PAPER_TABLE_1 {
        out += &format!("| {model} (paper) | {acc} | {small} |\n");
    }
    let (acc, on, images) = match &report.test {
        Some(m) => (m.accuracy, if report.test_source == "test split" { "test" } else { "held-out test" }, report.test_images.unwrap_or(0)),
        None => (report.validation.accuracy, "validation", report.validation_images),
    };
    let small = match (report.per_class_mean, report.per_class_std) {
        (Some(m), Some(s)) => format!("{:.1}% (+-{:.1}%) on {}", 100.0 * m, 100.0 * s, report.per_class_scored_on),
        _ => "-".into(),
    };
    let name = if report.discriminator == "random" { "random D".to_owned() } else { format!("D {}", report.discriminator) };
    let flips = if report.protocol["flips"] == json!(true) { " (with flips: not the paper's protocol)" } else { "" };
    out += &format!("| this run: {name} + L2-SVM{flips} | {:.1}% on {images} {on} images | {small} |\n", 100.0 * acc);
    out
}

#[cfg(test)]
mod tests {
    use super::c_at_edge;

    #[test]
    fn a_c_at_either_end_of_the_grid_is_at_its_edge_and_one_inside_is_not() {
        let grid = [1e-5, 3e-5, 1e-4, 3e-4];
        assert!(c_at_edge(&grid, 1e-5) && c_at_edge(&grid, 3e-4));
        assert!(!c_at_edge(&grid, 3e-5) && !c_at_edge(&grid, 1e-4));
        // A grid of one value has no edge to widen.
        assert!(!c_at_edge(&[1e-4], 1e-4));
    }
}
