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

use super::c_search::{c_at_edge, CSearch};
use super::features::{FeatureExtractor, FeatureSpec};
use super::matrix::Normalization;
use super::matrix::{FeatureDtype, FeatureMatrix, FeatureRows};
use super::metrics::ClassificationMetrics;
use super::svm::{L2Svm, L2SvmValidParams};
use crate::data::cifar::{Split, CIFAR10_CLASSES};
use crate::data::{cifar, open_labeled, split_exists, LabeledImages};
use crate::fsutil;
use crate::fsutil::sha256_file;
use crate::gan::Preset;
use crate::gan::{FeaturePoint, Pooling};
use crate::rng::SplitMix;
use crate::stage::progress::Progress;
use crate::torchutil::device::{parse_device, DeviceName};
use linfa::dataset::Records;
use linfa::traits::Fit;
use linfa::{DatasetBase, ParamGuard};
use ndarray::{Array1, ArrayView1};

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
        if self.width > 0 {
            self.width
        } else {
            self.preset.default_width()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.c_grid.is_empty() || self.c_grid.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
            return Err("cifar_eval.c_grid must hold positive values".into());
        }
        if self.batch == 0 {
            return Err("cifar_eval.batch must be at least 1".into());
        }
        // The solver's own checks come only after the features are extracted: refuse at load.
        if self.tol <= 0.0 || self.max_passes == 0 || self.bias < 0.0 {
            return Err(format!(
                "cifar_eval.tol = {} must be > 0, cifar_eval.max_passes = {} at least 1, cifar_eval.bias = {} >= 0",
                self.tol, self.max_passes, self.bias
            ));
        }
        if !matches!(self.batch_norm.as_str(), "recompute" | "checkpoint") {
            return Err(format!("cifar_eval.batch_norm = {:?}: expected recompute or checkpoint", self.batch_norm));
        }
        DeviceName::parse(&self.device).map_err(|e| format!("cifar_eval.device: {e}"))?;
        Ok(())
    }

    pub fn svm(&self, c: f64, threads: usize) -> Result<L2SvmValidParams> {
        Ok(L2Svm::params()
            .c(c)
            .tol(self.tol)
            .max_passes(self.max_passes)
            .bias(self.bias)
            .seed(self.seed)
            .threads(threads)
            .n_classes(10)
            .check()?)
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

/// linfa's records, so that the SVM fits a `DatasetBase` of a subset (`Fit`).
impl<R: FeatureRows> Records for Subset<'_, R> {
    type Elem = f32;
    fn nsamples(&self) -> usize {
        self.n_rows()
    }
    fn nfeatures(&self) -> usize {
        self.n_cols()
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
        if i < n {
            self.first.row(i, buf)
        } else {
            self.second.row(i - n, buf)
        }
    }
}

impl<A: FeatureRows, B: FeatureRows> Records for Stacked<'_, A, B> {
    type Elem = f32;
    fn nsamples(&self) -> usize {
        self.n_rows()
    }
    fn nfeatures(&self) -> usize {
        self.n_cols()
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
            None => params.fit(&DatasetBase::new(rows, ArrayView1::from(labels)))?,
            Some(f) => {
                let doubled: Array1<usize> = labels.iter().chain(labels).copied().collect();
                params
                    .fit(&DatasetBase::new(Stacked { first: &rows, second: &Subset { rows: f, indices } }, doubled))?
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
        scores
            .chunks(k)
            .map(|s| s.iter().enumerate().fold(0, |best, (c, v)| if *v > s[best] { c } else { best }))
            .collect()
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.x.n_rows()).collect()
    }
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

/// Whether the cache in `output` holds the features of `split` computed with `key`.
fn features_cached(config: &CifarEvalConfig, output: &Path, key: &str, split: &str) -> bool {
    config.save_features
        && std::fs::read_to_string(output.join(format!("features-{split}.key"))).ok().as_deref() == Some(key)
}

/// One run of the protocol: its settings and where it reads and writes.
struct ProtocolRun<'a> {
    config: &'a CifarEvalConfig,
    input: &'a Path,
    output: &'a Path,
    threads: usize,
    log_every_s: f64,
}

/// Seconds spent in each step (metrics.json's `timings_s`).
#[derive(Default)]
struct Timings {
    load: f64,
    batch_norm: f64,
    features: f64,
    standardize: f64,
    refit: f64,
    per_class: f64,
}

/// The features of the training and (where read) test splits, each with its mirror under `flips`.
struct ProtocolFeatures {
    train: FeatureMatrix,
    train_flipped: Option<FeatureMatrix>,
    test: Option<FeatureMatrix>,
    test_flipped: Option<FeatureMatrix>,
    /// Features per layer, for per-layer normalisation.
    layout: Vec<usize>,
}

impl ProtocolFeatures {
    /// Normalised with statistics of the training images alone (their mirrored copies are the
    /// same images).
    fn normalize(&mut self, normalization: &Normalization) {
        if let Some(stats) = normalization.fit(&self.train, &self.layout) {
            for x in
                [Some(&mut self.train), self.train_flipped.as_mut(), self.test.as_mut(), self.test_flipped.as_mut()]
                    .into_iter()
                    .flatten()
            {
                x.standardize(&stats);
            }
        }
    }

    fn train(&self) -> SplitFeatures<'_> {
        SplitFeatures { x: &self.train, flipped: self.train_flipped.as_ref() }
    }

    fn test(&self) -> Option<SplitFeatures<'_>> {
        self.test.as_ref().map(|x| SplitFeatures { x, flipped: self.test_flipped.as_ref() })
    }
}

/// The training split's labels, divided into the part the SVM is fitted on and the validation
/// images C is chosen on; the test split's labels where it was read.
struct ProtocolLabels {
    train: Vec<usize>,
    test: Option<Vec<usize>>,
    fit_idx: Vec<usize>,
    fit: Vec<usize>,
    val_idx: Vec<usize>,
    val: Vec<usize>,
}

impl ProtocolLabels {
    fn of(splits: &Splits, config: &CifarEvalConfig) -> Result<Self> {
        let train = labels_of(&splits.train, "training split")?;
        let test = splits.test.as_ref().map(|t| labels_of(t, "test split")).transpose()?;
        let (fit_idx, val_idx) = validation_split(&train, 10, config.validation, config.seed);
        if val_idx.is_empty() {
            bail!("cifar_eval.validation = {}: no validation images (need at least one per class and two images per class)", config.validation);
        }
        let fit = fit_idx.iter().map(|&i| train[i]).collect();
        let val = val_idx.iter().map(|&i| train[i]).collect();
        Ok(Self { train, test, fit_idx, fit, val_idx, val })
    }
}

/// The C chosen on the validation split, every C tried, and the validation metrics at the chosen C.
struct ChosenC {
    grid: Vec<GridPoint>,
    c: f64,
    at_grid_edge: bool,
    validation: ClassificationMetrics,
}

/// The 400-per-class column: its C and the accuracy of each draw.
struct PerClassColumn {
    c: f64,
    accuracies: Vec<f64>,
}

/// The discriminator the features come from, and its checkpoint's SHA-256 (None: a random D).
fn load_discriminator(config: &CifarEvalConfig, device: tch::Device) -> Result<(FeatureExtractor, Option<String>)> {
    if config.discriminator == "random" {
        return Ok((FeatureExtractor::random(config.preset, config.width(), config.seed as i64, device), None));
    }
    let path = PathBuf::from(&config.discriminator);
    let extractor = FeatureExtractor::load(&path, config.preset, config.width(), device)?;
    let sha = sha256_file(&path).with_context(|| format!("{}: cannot hash", path.display()))?;
    Ok((extractor, Some(sha)))
}

impl ProtocolRun<'_> {
    /// Every setting that changes the features: the cache in `output` is reused only under the same key.
    fn features_key(&self, sha: Option<&String>) -> String {
        let config = self.config;
        crate::stage::fingerprint(&json!({
            "d": sha.cloned().unwrap_or_else(|| format!("random-{}", config.seed)), "preset": config.preset, "width": config.width(),
            "bn": config.batch_norm, "bn_images": config.batch_norm_images, "dtype": config.features_dtype,
            "input": self.input.display().to_string(), "limits": [config.limit_train_per_class, config.limit_test_per_class],
            "holdout": config.holdout_test, "seed": config.seed, "point": config.feature_point, "pooling": config.pooling,
        }))
    }

    /// BatchNorm's population statistics (unless every feature matrix comes from the cache), then
    /// the features of each split.
    fn features(
        &self,
        mut extractor: FeatureExtractor,
        key: &str,
        splits: &Splits,
        timings: &mut Timings,
    ) -> Result<ProtocolFeatures> {
        let config = self.config;
        let cached = |split: &str| features_cached(config, self.output, key, split);
        let flip_cached = |split: &str| !config.flips || cached(&format!("{split}-flipped"));
        let all_cached = cached("train")
            && flip_cached("train")
            && (splits.test.is_none() || (cached("test") && flip_cached("test")));
        let t = Instant::now();
        if config.batch_norm == "recompute" && !all_cached {
            recompute_batch_norm_with_progress(&mut extractor, config, &splits.train, self.log_every_s)?;
        }
        timings.batch_norm = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let features = |images: &LabeledImages, split: &str, flipped: bool| {
            self.split_features(&extractor, images, split, flipped, key)
        };
        let train = features(&splits.train, "train", false)?;
        let train_flipped = if config.flips { Some(features(&splits.train, "train", true)?) } else { None };
        let test = splits.test.as_ref().map(|images| features(images, "test", false)).transpose()?;
        let test_flipped = match &splits.test {
            Some(images) if config.flips => Some(features(images, "test", true)?),
            _ => None,
        };
        let layout = extractor.discriminator().feature_layout(config.pooling);
        timings.features = t.elapsed().as_secs_f64();
        Ok(ProtocolFeatures { train, train_flipped, test, test_flipped, layout })
    }

    /// Features of one split, from the cache in `output` when it matches `key`, else computed.
    fn split_features(
        &self,
        extractor: &FeatureExtractor,
        images: &LabeledImages,
        split: &str,
        flipped: bool,
        key: &str,
    ) -> Result<FeatureMatrix> {
        let (config, output) = (self.config, self.output);
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
        let progress =
            Progress::new(&format!("cifar-eval: {split} features"), Some(images.len() as u64), self.log_every_s);
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
            crate::data::npy::write_array(
                &output.join(format!("labels-{split}.npy")),
                &[images.len() as u64],
                &images.labels,
            )?;
            fsutil::write_atomic(&key_path, key.as_bytes())?;
        }
        Ok(m)
    }

    /// C on the validation split: the grid (and its refinement), each C fitted without the
    /// validation images and scored on them.
    fn choose_c(&self, features: &ProtocolFeatures, labels: &ProtocolLabels) -> Result<ChosenC> {
        let (config, train_f) = (self.config, features.train());
        let mut grid = Vec::new();
        let search = CSearch { grid: &config.c_grid, refine_steps: config.c_refine };
        let choice = search.choose(|c| {
            let model = train_f.fit(&config.svm(c, self.threads)?, &labels.fit_idx, &labels.fit)?;
            let metrics = ClassificationMetrics::new(&labels.val, &train_f.predict(&model, &labels.val_idx), 10);
            let passes = *model.report.passes.iter().max().unwrap_or(&0);
            let converged = model.report.converged.iter().all(|c| *c);
            eprintln!(
                "cifar-eval: C = {c:<8} validation accuracy {:.2}% ({:.1} s, {passes} passes{})",
                100.0 * metrics.accuracy,
                model.report.seconds,
                if converged { "" } else { ", NOT converged" }
            );
            grid.push(GridPoint {
                c,
                validation_accuracy: metrics.accuracy,
                fit_s: model.report.seconds,
                passes,
                converged,
            });
            Ok((metrics.accuracy, metrics))
        })?;
        let c = choice.c();
        let at_grid_edge = c_at_edge(&config.c_grid, c);
        if at_grid_edge {
            eprintln!("cifar-eval: warning: C = {c} is at the edge of cifar_eval.c_grid; the best C may lie beyond it (widen the grid)");
        }
        Ok(ChosenC { grid, c, at_grid_edge, validation: choice.best.detail })
    }

    /// The refit on the whole training split at C, scored once on the test split (None without one).
    fn refit_and_test(
        &self,
        features: &ProtocolFeatures,
        labels: &ProtocolLabels,
        c: f64,
    ) -> Result<Option<ClassificationMetrics>> {
        let (Some(test_f), Some(test_labels)) = (features.test(), &labels.test) else { return Ok(None) };
        let train_f = features.train();
        let model = train_f.fit(&self.config.svm(c, self.threads)?, &train_f.all(), &labels.train)?;
        Ok(Some(ClassificationMetrics::new(test_labels, &test_f.predict(&model, &test_f.all()), 10)))
    }

    /// The paper's 400-per-class column: C chosen on the validation split with the first draw,
    /// then every draw fitted at that C and scored on the test split (else the validation split).
    fn per_class_column(
        &self,
        features: &ProtocolFeatures,
        labels: &ProtocolLabels,
        chosen_c: f64,
    ) -> Result<PerClassColumn> {
        let config = self.config;
        if config.per_class == 0 || config.draws == 0 {
            return Ok(PerClassColumn { c: chosen_c, accuracies: Vec::new() });
        }
        let (train_f, test_f) = (features.train(), features.test());
        let draw = |draw: u64| {
            let picked = draw_per_class(&labels.train, &labels.fit_idx, 10, config.per_class, config.seed, draw);
            let picked_labels: Vec<usize> = picked.iter().map(|&i| labels.train[i]).collect();
            (picked, picked_labels)
        };
        let (first, first_labels) = draw(0);
        let c = CSearch::grid(&config.c_grid)
            .choose(|c| {
                let model = train_f.fit(&config.svm(c, self.threads)?, &first, &first_labels)?;
                Ok((
                    ClassificationMetrics::new(&labels.val, &train_f.predict(&model, &labels.val_idx), 10).accuracy,
                    (),
                ))
            })?
            .c();
        let mut accuracies = Vec::new();
        for k in 0..config.draws as u64 {
            let (picked, picked_labels) = draw(k);
            let model = train_f.fit(&config.svm(c, self.threads)?, &picked, &picked_labels)?;
            let accuracy = match (&test_f, &labels.test) {
                (Some(x), Some(y)) => ClassificationMetrics::new(y, &x.predict(&model, &x.all()), 10).accuracy,
                _ => ClassificationMetrics::new(&labels.val, &train_f.predict(&model, &labels.val_idx), 10).accuracy,
            };
            accuracies.push(accuracy);
        }
        Ok(PerClassColumn { c, accuracies })
    }
}

/// Runs the protocol on CIFAR-10 at `input` (binary batches or class folders) and writes
/// metrics.json, confusion.png and confusion.csv into `output`.
pub fn evaluate(
    config: &CifarEvalConfig,
    input: &Path,
    output: &Path,
    threads: usize,
    log_every_s: f64,
) -> Result<CifarEvalReport> {
    config.validate().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let device = parse_device(&config.device).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(output).with_context(|| format!("{}: cannot create", output.display()))?;
    let run = ProtocolRun { config, input, output, threads, log_every_s };
    let mut timings = Timings::default();

    let splits = load_splits(config, input, TestSplit::Read)?;
    let labels = ProtocolLabels::of(&splits, config)?;
    timings.load = started.elapsed().as_secs_f64();
    let (extractor, sha) = load_discriminator(config, device)?;
    let key = run.features_key(sha.as_ref());
    let mut features = run.features(extractor, &key, &splits, &mut timings)?;
    let (train_images, test_images) = (splits.train.len(), splits.test.as_ref().map(|t| t.len()));
    // The images are not needed past their features.
    let Splits { train, test, test_source, rejected } = splits;
    drop((train, test));

    let t = Instant::now();
    features.normalize(&config.normalization);
    timings.standardize = t.elapsed().as_secs_f64();
    let chosen = run.choose_c(&features, &labels)?;
    let t = Instant::now();
    let test = run.refit_and_test(&features, &labels, chosen.c)?;
    timings.refit = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let per_class = run.per_class_column(&features, &labels, chosen.c)?;
    timings.per_class = t.elapsed().as_secs_f64();
    let (mean, std) = mean_std(&per_class.accuracies);

    let report = CifarEvalReport {
        discriminator: config.discriminator.clone(),
        discriminator_sha256: sha,
        feature_count: features.train.n_cols(),
        train_images,
        test_images,
        test_source,
        rejected_images: rejected,
        validation_images: labels.val_idx.len(),
        protocol: json!({ "feature_point": config.feature_point, "pooling": config.pooling, "normalization": config.normalization, "flips": config.flips }),
        grid: chosen.grid,
        chosen_c: chosen.c,
        chosen_c_at_grid_edge: chosen.at_grid_edge,
        test,
        validation: chosen.validation,
        per_class_labels: config.per_class,
        per_class_c: per_class.c,
        per_class_accuracies: per_class.accuracies,
        per_class_mean: mean,
        per_class_std: std,
        per_class_scored_on: if features.test.is_some() { "test" } else { "validation" },
        timings_s: json!({
            "load": timings.load, "batch_norm": timings.batch_norm, "features": timings.features, "standardize": timings.standardize,
            "refit": timings.refit, "per_class": timings.per_class, "total": started.elapsed().as_secs_f64(),
        }),
        device: format!("{device:?}"),
    };
    write_outputs(&report, output)?;
    Ok(report)
}

/// metrics.json, and the confusion matrix (test split, else validation) as PNG and CSV.
fn write_outputs(report: &CifarEvalReport, output: &Path) -> Result<()> {
    let headline = report.test.as_ref().unwrap_or(&report.validation);
    fsutil::write_atomic(&output.join("metrics.json"), &serde_json::to_vec_pretty(report)?)?;
    headline.write_confusion_png(&CIFAR10_CLASSES, &output.join("confusion.png"))?;
    fsutil::write_atomic(&output.join("confusion.csv"), headline.confusion_csv(&CIFAR10_CLASSES).as_bytes())?;
    Ok(())
}

/// Re-estimates D's BatchNorm statistics on `train` (cifar_eval.batch_norm = "recompute"), with a
/// progress line per layer: the step both the final score and the snapshot scoring take.
pub(crate) fn recompute_batch_norm_with_progress(
    extractor: &mut FeatureExtractor,
    config: &CifarEvalConfig,
    train: &LabeledImages,
    log_every_s: f64,
) -> Result<()> {
    let layers = match config.preset {
        Preset::Imagenet32 => 6,
        Preset::Dcgan64 => 4,
        Preset::Dcgan32 => 3,
    };
    let progress = Progress::new("cifar-eval: BatchNorm statistics (layers)", Some(layers), log_every_s);
    extractor.recompute_batch_norm(train, config.batch_norm_images, config.batch, |_, _| progress.inc(1))?;
    progress.finish();
    Ok(())
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
        Some(m) => (
            m.accuracy,
            if report.test_source == "test split" { "test" } else { "held-out test" },
            report.test_images.unwrap_or(0),
        ),
        None => (report.validation.accuracy, "validation", report.validation_images),
    };
    let small = match (report.per_class_mean, report.per_class_std) {
        (Some(m), Some(s)) => format!("{:.1}% (+-{:.1}%) on {}", 100.0 * m, 100.0 * s, report.per_class_scored_on),
        _ => "-".into(),
    };
    let name =
        if report.discriminator == "random" { "random D".to_owned() } else { format!("D {}", report.discriminator) };
    let flips = if report.protocol["flips"] == json!(true) { " (with flips: not the paper's protocol)" } else { "" };
    out += &format!("| this run: {name} + L2-SVM{flips} | {:.1}% on {images} {on} images | {small} |\n", 100.0 * acc);
    out
}
