//! The paper's Table 1 protocol on CIFAR-10, end to end: features of the training (and, where
//! present, test) images; standardisation with training statistics; C chosen on a held-out,
//! class-balanced validation split of the training set; a refit on the whole training set scored
//! once on the test split; and the "400 per class" column as the mean and standard deviation over
//! random draws of 400 labelled training images per class.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use super::c_search::{c_at_edge, CSearch};
use super::features::{FeatureExtractor, FeatureSpec};
use super::matrix::Normalization;
use super::matrix::{FeatureMatrix, FeatureRows};
use super::metrics::ClassificationMetrics;
use super::splits::labels_of;
use crate::data::cifar::CIFAR10_CLASSES;
use crate::data::LabeledImages;
use crate::fsutil;
use crate::fsutil::sha256_file;
use crate::gan::Preset;
use crate::stage::progress::Progress;
use crate::torchutil::device::parse_device;

// The paths callers have named since the protocol was one file (tests/feature_protocol.rs,
// tests/cifar_eval_stage.rs, benches/protocol_variants.rs): the config, the row adapters and the
// splits live in cifar_config.rs, rows.rs and splits.rs.
pub use super::cifar_config::CifarEvalConfig;
pub use super::rows::{SplitFeatures, Stacked, Subset};
pub use super::splits::{
    draw_per_class, load_splits, select_images, validation_split, RejectedImage, RejectedImages, Splits, TestSplit,
};

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
