//! The digits demo's two measurements, on OpenCV's digits sheet ([`crate::data::digits`]):
//!
//! - **Did G learn the digits?** A linear L2-SVM on the pixels of the 4,000 real training digits
//!   labels 1,000 samples of G. The check passes when every digit appears and none takes more than
//!   3x its share (300 of 1,000): an untrained or collapsed G draws one blob that lands in one or
//!   two classes.
//! - **Are D's features any good?** The paper's few-label protocol (its SVHN experiment, on an
//!   easier set): each D's features (every layer max-pooled to 4x4, standardised) and an L2-SVM
//!   fitted on 10, 50 and 100 labelled training digits per class (several draws: mean and spread)
//!   and on all 4,000, scored on the 1,000 test digits; raw pixels are the baseline row. C is
//!   chosen per row and label count on 500 validation digits held out of the training split.

use anyhow::{Context, Result};
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use ndarray::{Array1, ArrayView1};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::c_search::CSearch;
use super::features::FeatureExtractor;
use super::matrix::{FeatureDtype, FeatureMatrix, FeatureRows};
use super::metrics::ClassificationMetrics;
use super::rows::Subset;
use super::splits::{draw_per_class, validation_split};
use super::svm::{L2Svm, L2SvmValidParams};
use crate::data::LabeledImages;
use crate::gan::{seeded_z, Preset, Prior, TrainedGenerator};

pub const CLASSES: usize = 10;

/// Settings of both measurements.
#[derive(Debug, Clone, Serialize)]
pub struct DigitsEvalConfig {
    /// Labelled training digits per class in the few-label columns.
    pub per_class: Vec<usize>,
    /// Draws of each few-label column.
    pub draws: usize,
    /// C values tried on the validation digits.
    pub c_grid: Vec<f64>,
    /// Validation digits held out of the training split (class-balanced).
    pub validation: usize,
    /// Samples of G the histogram check labels.
    pub samples: usize,
    /// No digit may take more than this many times its share of the samples.
    pub max_share_factor: f64,
    pub seed: u64,
    pub threads: usize,
}

impl Default for DigitsEvalConfig {
    fn default() -> Self {
        Self {
            per_class: vec![10, 50, 100],
            draws: 5,
            c_grid: vec![1e-4, 1e-3, 1e-2, 1e-1],
            validation: 500,
            samples: 1000,
            max_share_factor: 3.0,
            seed: 0,
            threads: 0,
        }
    }
}

impl DigitsEvalConfig {
    fn svm(&self, c: f64) -> Result<L2SvmValidParams> {
        use linfa::ParamGuard;
        Ok(L2Svm::params()
            .c(c)
            .tol(0.1)
            .max_passes(1000)
            .bias(1.0)
            .seed(self.seed)
            .threads(self.threads)
            .n_classes(CLASSES)
            .check()?)
    }
}

fn labels(images: &LabeledImages) -> Vec<usize> {
    images.labels.iter().map(|&l| l.clamp(0, CLASSES as i64 - 1) as usize).collect()
}

/// The grey value of each pixel (the R channel: the digits are grey), in [0, 1].
pub fn pixel_features(images: &LabeledImages) -> FeatureMatrix {
    let values: Vec<f32> = images.images.chunks_exact(3).map(|p| p[0] as f32 / 255.0).collect();
    FeatureMatrix::from_f32(images.len(), (images.height * images.width) as usize, values, FeatureDtype::Float32)
}

/// Images as the networks take them (N x 3 x H x W in [-1, 1]) back to uint8 RGB.
pub fn to_labeled(images: &Tensor) -> LabeledImages {
    let u8s = ((images.to_device(Device::Cpu).clamp(-1.0, 1.0) + 1.0) * 127.5)
        .round()
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous();
    let size = u8s.size();
    let pixels = Vec::<u8>::try_from(u8s.flatten(0, -1)).expect("uint8 pixels");
    LabeledImages {
        height: size[1] as u32,
        width: size[2] as u32,
        images: pixels,
        labels: vec![-1; size[0] as usize],
        classes: Vec::new(),
    }
}

/// A classifier of digits: the L2-SVM on pixels, C chosen on validation digits, refitted on all.
pub struct PixelClassifier {
    model: L2Svm,
    pub c: f64,
    /// Its accuracy on the test digits: how far its labels of G's samples can be trusted.
    pub test_accuracy: f64,
}

impl PixelClassifier {
    pub fn fit(train: &LabeledImages, test: &LabeledImages, config: &DigitsEvalConfig) -> Result<Self> {
        let (x, y) = (pixel_features(train), labels(train));
        let (fit_idx, val_idx) = validation_split(&y, CLASSES, config.validation, config.seed);
        let c = choose_c(&x, &y, &fit_idx, &val_idx, config)?;
        let model = config.svm(c)?.fit(&DatasetBase::new(&x, ArrayView1::from(&y)))?;
        let test_labels = labels(test);
        let predicted: Array1<usize> =
            model.predict(&DatasetBase::new(pixel_features(test), ArrayView1::from(&test_labels)));
        let test_accuracy = ClassificationMetrics::new(&test_labels, &predicted.to_vec(), CLASSES).accuracy;
        Ok(Self { model, c, test_accuracy })
    }

    pub fn predict(&self, images: &LabeledImages) -> Vec<usize> {
        let predicted: Array1<usize> = self.model.predict(&DatasetBase::new(pixel_features(images), ()));
        predicted.to_vec()
    }
}

/// The C of the grid with the best validation accuracy (ties: the smaller).
fn choose_c(x: &FeatureMatrix, y: &[usize], fit: &[usize], val: &[usize], config: &DigitsEvalConfig) -> Result<f64> {
    let fit_labels: Vec<usize> = fit.iter().map(|&i| y[i]).collect();
    let val_labels: Vec<usize> = val.iter().map(|&i| y[i]).collect();
    let fit_set = DatasetBase::new(Subset { rows: x, indices: fit }, ArrayView1::from(&fit_labels));
    let val_set = DatasetBase::new(Subset { rows: x, indices: val }, ArrayView1::from(&val_labels));
    let choice = CSearch::grid(&config.c_grid).choose(|c| {
        let predicted: Array1<usize> = config.svm(c)?.fit(&fit_set)?.predict(&val_set);
        Ok((ClassificationMetrics::new(&val_labels, &predicted.to_vec(), CLASSES).accuracy, ()))
    })?;
    Ok(choice.c())
}

/// The histogram check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramCheck {
    pub samples: usize,
    /// Samples labelled as each digit.
    pub counts: Vec<usize>,
    /// Digits no sample was labelled as.
    pub missing: Vec<usize>,
    /// The largest count and the most any digit may have (max_share_factor x samples / 10).
    pub largest: usize,
    pub largest_allowed: usize,
    pub passed: bool,
    pub classifier_c: f64,
    pub classifier_test_accuracy: f64,
}

impl HistogramCheck {
    pub fn new(predicted: &[usize], factor: f64, classifier: &PixelClassifier) -> Self {
        let mut counts = vec![0usize; CLASSES];
        for &p in predicted {
            counts[p] += 1;
        }
        let missing: Vec<usize> = (0..CLASSES).filter(|&d| counts[d] == 0).collect();
        let largest = counts.iter().copied().max().unwrap_or(0);
        let largest_allowed = (factor * predicted.len() as f64 / CLASSES as f64).floor() as usize;
        HistogramCheck {
            samples: predicted.len(),
            passed: missing.is_empty() && largest <= largest_allowed && !predicted.is_empty(),
            counts,
            missing,
            largest,
            largest_allowed,
            classifier_c: classifier.c,
            classifier_test_accuracy: classifier.test_accuracy,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let counts: Vec<String> = self.counts.iter().enumerate().map(|(d, c)| format!("{d}:{c}")).collect();
        format!(
            "{} samples of G labelled by the pixel SVM ({:.1}% on the test digits): {}; {}",
            self.samples,
            100.0 * self.classifier_test_accuracy,
            counts.join(" "),
            if self.passed {
                format!("PASSED (every digit appears, the largest {} <= {})", self.largest, self.largest_allowed)
            } else if !self.missing.is_empty() {
                format!("FAILED: no sample of {:?}", self.missing)
            } else {
                format!("FAILED: one digit takes {} > {}", self.largest, self.largest_allowed)
            }
        )
    }
}

/// `n` samples of G (z from the uniform prior with `seed`), each alone with BatchNorm's running
/// statistics as `sample` draws them: N x 3 x H x W in [-1, 1].
pub fn generator_samples(g: &TrainedGenerator, n: usize, seed: i64) -> Tensor {
    let z = seeded_z(Prior::Uniform, n as i64, g.z_dim(), seed);
    g.generate(&z)
}

/// Up to `per_row` samples of each predicted digit, a row per digit (0 at the top); slots a digit
/// has no sample for stay mid-grey. N x 3 x H x W, 10 * per_row images.
pub fn grid_by_class(samples: &Tensor, predicted: &[usize], per_row: usize) -> Tensor {
    let size = samples.size();
    let blank = Tensor::zeros([size[1], size[2], size[3]], (Kind::Float, samples.device()));
    let mut cells = Vec::with_capacity(CLASSES * per_row);
    for d in 0..CLASSES {
        let mine: Vec<i64> =
            predicted.iter().enumerate().filter(|(_, p)| **p == d).map(|(i, _)| i as i64).take(per_row).collect();
        for k in 0..per_row {
            cells.push(mine.get(k).map_or_else(|| blank.shallow_clone(), |&i| samples.get(i)));
        }
    }
    Tensor::stack(&cells, 0)
}

/// Which features a row of the few-label table uses.
pub enum FeatureSource {
    Pixels,
    /// A trained D (a safetensors file as `train` writes or exports it).
    Trained {
        path: std::path::PathBuf,
        preset: Preset,
        width: i64,
    },
    /// A randomly initialised D (N(0, 0.02)), the baseline for trained Ds of its architecture.
    Random {
        preset: Preset,
        width: i64,
    },
}

/// One few-label column: accuracies on the test digits, one per draw.
#[derive(Debug, Clone, Serialize)]
pub struct FewLabel {
    pub per_class: usize,
    pub c: f64,
    pub accuracies: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureRow {
    pub name: String,
    /// "pixels", a checkpoint path, or "random".
    pub source: String,
    pub preset: Option<Preset>,
    pub width: Option<i64>,
    pub features: usize,
    pub few: Vec<FewLabel>,
    /// All training labels: C chosen on the validation digits, refitted on all 4,000.
    pub all_labels_c: f64,
    pub all_labels_accuracy: f64,
    pub seconds: f64,
}

/// The features of both splits for one source (D's BatchNorm statistics recomputed on 1,000 of
/// the training digits, as cifar-eval does on its training images).
fn features_of(
    source: &FeatureSource,
    train: &LabeledImages,
    test: &LabeledImages,
    seed: i64,
) -> Result<(FeatureMatrix, FeatureMatrix)> {
    let extractor = match source {
        FeatureSource::Pixels => return Ok((pixel_features(train), pixel_features(test))),
        FeatureSource::Trained { path, preset, width } => FeatureExtractor::load(path, *preset, *width, Device::Cpu)?,
        FeatureSource::Random { preset, width } => FeatureExtractor::random(*preset, *width, seed, Device::Cpu),
    };
    let mut extractor = extractor;
    extractor.recompute_batch_norm(&spread_over(train, 1000), 0, 250, |_, _| {})?;
    let x = extractor.extract(train, 250, FeatureDtype::Float16, |_, _| {})?;
    let t = extractor.extract(test, 250, FeatureDtype::Float16, |_, _| {})?;
    Ok((x, t))
}

/// `n` images taken evenly over the set (the training split is in class order).
fn spread_over(images: &LabeledImages, n: usize) -> LabeledImages {
    let step = (images.len() / n.max(1)).max(1);
    let picks: Vec<usize> = (0..images.len()).step_by(step).take(n).collect();
    super::splits::select_images(images, &picks)
}

/// Scores one source the few-label way.
pub fn score_features(
    name: &str,
    source: &FeatureSource,
    train: &LabeledImages,
    test: &LabeledImages,
    config: &DigitsEvalConfig,
) -> Result<FeatureRow> {
    let started = std::time::Instant::now();
    let (mut x, mut t) =
        features_of(source, train, test, config.seed as i64).with_context(|| format!("{name}: features"))?;
    let stats = x.column_stats();
    x.standardize(&stats);
    t.standardize(&stats);
    let (y, y_test) = (labels(train), labels(test));
    let (fit_idx, val_idx) = validation_split(&y, CLASSES, config.validation, config.seed);
    let test_set = DatasetBase::new(&t, ArrayView1::from(&y_test));
    let score = |model: &L2Svm| {
        let predicted: Array1<usize> = model.predict(&test_set);
        ClassificationMetrics::new(&y_test, &predicted.to_vec(), CLASSES).accuracy
    };
    let mut few = Vec::new();
    for &k in &config.per_class {
        // C on the validation digits with the first draw, then every draw at that C.
        let first = draw_per_class(&y, &fit_idx, CLASSES, k, config.seed, 0);
        let c = choose_c(&x, &y, &first, &val_idx, config)?;
        let mut accuracies = Vec::new();
        for draw in 0..config.draws as u64 {
            let picked = draw_per_class(&y, &fit_idx, CLASSES, k, config.seed, draw);
            let picked_labels: Vec<usize> = picked.iter().map(|&i| y[i]).collect();
            let picked_set = DatasetBase::new(Subset { rows: &x, indices: &picked }, ArrayView1::from(&picked_labels));
            accuracies.push(score(&config.svm(c)?.fit(&picked_set)?));
        }
        let (mean, std) = mean_std(&accuracies);
        few.push(FewLabel { per_class: k, c, accuracies, mean, std });
    }
    let c_all = choose_c(&x, &y, &fit_idx, &val_idx, config)?;
    let all_labels_accuracy = score(&config.svm(c_all)?.fit(&DatasetBase::new(&x, ArrayView1::from(&y)))?);
    let (src, preset, width) = match source {
        FeatureSource::Pixels => ("pixels".to_string(), None, None),
        FeatureSource::Trained { path, preset, width } => (path.display().to_string(), Some(*preset), Some(*width)),
        FeatureSource::Random { preset, width } => ("random".to_string(), Some(*preset), Some(*width)),
    };
    Ok(FeatureRow {
        name: name.to_string(),
        source: src,
        preset,
        width,
        features: x.n_cols(),
        few,
        all_labels_c: c_all,
        all_labels_accuracy,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// A row's accuracy averaged over its columns (each few-label mean and the all-labels accuracy).
pub fn overall(row: &FeatureRow) -> f64 {
    let sum: f64 = row.few.iter().map(|f| f.mean).sum::<f64>() + row.all_labels_accuracy;
    sum / (row.few.len() + 1) as f64
}

/// Whether `trained` beats `random`: a higher accuracy averaged over the columns. (Column by column,
/// differences at 50 and 100 labels per class lie within the draws' spread, so a rule on every
/// column fails by chance: docs/train.md#the-digits-demo.)
pub fn beats(trained: &FeatureRow, random: &FeatureRow) -> bool {
    overall(trained) > overall(random)
}

/// The table as markdown: a row per source, a column per label count.
pub fn table_markdown(rows: &[FeatureRow]) -> String {
    let Some(first) = rows.first() else { return String::new() };
    let mut out = String::from("| features |");
    for f in &first.few {
        out += &format!(" {} per class |", f.per_class);
    }
    out += " all labels (4,000) |\n|---|";
    out += &"---|".repeat(first.few.len() + 1);
    out += "\n";
    for r in rows {
        out += &format!("| {} ({} features) |", r.name, r.features);
        for f in &r.few {
            out += &format!(" {:.1}% (+-{:.1}%) |", 100.0 * f.mean, 100.0 * f.std);
        }
        out += &format!(" {:.1}% |\n", 100.0 * r.all_labels_accuracy);
    }
    out
}

/// A discriminator file's preset and width, read off its tensors: imagenet32 has 3x3 kernels,
/// dcgan64 a fourth conv layer, dcgan32 neither; the width is the first layer's channels.
pub fn discriminator_shape(path: &std::path::Path) -> Result<(Preset, i64)> {
    let stored =
        Tensor::read_safetensors(path).with_context(|| format!("{}: cannot read the discriminator", path.display()))?;
    let shape = |name: &str| stored.iter().find(|(n, _)| n == name).map(|(_, t)| t.size());
    let Some(first) = shape("c1.conv.weight") else {
        anyhow::bail!("{}: not a discriminator of this project (no tensor \"c1.conv.weight\")", path.display());
    };
    let preset = match (first.get(3).copied(), shape("c4.conv.weight")) {
        (Some(3), _) => Preset::Imagenet32,
        (_, Some(_)) => Preset::Dcgan64,
        _ => Preset::Dcgan32,
    };
    Ok((preset, first[0]))
}
