//! Choosing a discriminator by its features: every snapshot of a training run scored on the
//! validation split of CIFAR-10's training images (features, the C grid, validation accuracy),
//! the test split never touched. GAN losses do not say when D's features are best, and feature
//! quality is not monotone in training; the table says, and names the best snapshot.
//!
//! Cost: each snapshot needs its own BatchNorm statistics and features (seconds on a GPU, minutes
//! on a CPU for all of CIFAR-10), so the SVM is fitted on `snapshot_fit_per_class` images per class
//! and scored on the whole validation split, snapshots are scored one at a time (one feature matrix
//! in memory), the table is rewritten after each (a run cut short keeps what it scored), and a
//! re-run reuses the rows of snapshots it has already scored with the same settings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::c_search::CSearch;
use super::cifar_config::CifarEvalConfig;
use super::features::{FeatureExtractor, FeatureSpec};
use super::matrix::FeatureMatrix;
use super::metrics::ClassificationMetrics;
use super::protocol::recompute_batch_norm_with_progress;
use super::splits::{draw_per_class, labels_of, load_splits, select_images, validation_split, Splits, TestSplit};
use crate::data::packed::LabeledImages;
use crate::fsutil;
use crate::gan::{list_snapshots, CheckpointState};
use crate::stage::progress::Progress;
use crate::torchutil::device::parse_device;
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use ndarray::{Array1, ArrayView1};

/// One snapshot's row of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotScore {
    pub step: u64,
    /// Epochs of training behind it (fractional where training stopped within an epoch).
    pub epoch: f64,
    /// The snapshot folder (d.safetensors, g.safetensors, state.json).
    pub path: PathBuf,
    pub discriminator_sha256: String,
    /// The C of the grid with the best validation accuracy (ties: the smaller C).
    pub best_c: f64,
    pub validation_accuracy: f64,
    /// (C, validation accuracy) for every C of the grid.
    pub grid: Vec<(f64, f64)>,
    pub features_s: f64,
    pub fit_s: f64,
}

/// The checkpoint table: what `snapshots.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotTable {
    /// The training run whose snapshots these are.
    pub run: PathBuf,
    pub input: String,
    /// What the test split was: never read here.
    pub test_split: String,
    pub fit_images: usize,
    pub validation_images: usize,
    /// One row per snapshot, in training order.
    pub rows: Vec<SnapshotScore>,
    /// (epoch, validation accuracy) of each row: the curve to plot.
    pub validation_by_epoch: Vec<(f64, f64)>,
    /// The row with the best validation accuracy (ties: the earlier snapshot).
    pub best: Option<SnapshotScore>,
    /// The settings the rows were scored with; rows are reused on a re-run only when it matches.
    pub key: String,
    pub device: String,
}

impl SnapshotTable {
    fn finish(&mut self) {
        self.rows.sort_by_key(|r| r.step);
        self.validation_by_epoch = self.rows.iter().map(|r| (r.epoch, r.validation_accuracy)).collect();
        self.best = self
            .rows
            .iter()
            .fold(None::<&SnapshotScore>, |best, r| match best {
                Some(b) if b.validation_accuracy >= r.validation_accuracy => Some(b),
                _ => Some(r),
            })
            .cloned();
    }

    /// The table as CSV: step, epoch, best C, validation accuracy, path.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("step,epoch,best_c,validation_accuracy,path\n");
        for r in &self.rows {
            out +=
                &format!("{},{:.3},{},{:.6},{}\n", r.step, r.epoch, r.best_c, r.validation_accuracy, r.path.display());
        }
        out
    }

    /// The table as markdown, the best row marked.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "Snapshots of {} scored on {} validation images (SVM fitted on {}; test split: {})\n\n| step | epoch | best C | validation accuracy | snapshot |\n|---:|---:|---:|---:|---|\n",
            self.run.display(),
            self.validation_images,
            self.fit_images,
            self.test_split
        );
        for r in &self.rows {
            let best = self.best.as_ref().is_some_and(|b| b.step == r.step);
            let acc = format!("{:.2}%", 100.0 * r.validation_accuracy);
            out += &format!(
                "| {} | {:.2} | {} | {} | {} |\n",
                r.step,
                r.epoch,
                r.best_c,
                if best { format!("**{acc}** (best)") } else { acc },
                r.path.display()
            );
        }
        out
    }
}

/// The run folder and its snapshots for `path`: a training run's output (holding snapshots/) or
/// its snapshots/ folder.
pub fn find_snapshots(path: &Path) -> Result<(PathBuf, Vec<(PathBuf, CheckpointState)>)> {
    let run = if path.join("snapshots").is_dir() || path.file_name().is_none_or(|n| n != "snapshots") {
        path.to_owned()
    } else {
        path.parent().map(Path::to_owned).unwrap_or_default()
    };
    let snapshots = list_snapshots(&run)?;
    if snapshots.is_empty() {
        bail!(
            "{}: no snapshots (train with --set train.snapshot_every_epochs=N writes them to snapshots/)",
            path.display()
        );
    }
    Ok((run, snapshots))
}

/// The validation split of the training images and the part the SVM is fitted on (at most
/// `snapshot_fit_per_class` per class), with their labels.
struct SnapshotSplits {
    train: LabeledImages,
    fit_images: LabeledImages,
    fit_labels: Vec<usize>,
    val_images: LabeledImages,
    val_labels: Vec<usize>,
    test_source: &'static str,
}

impl SnapshotSplits {
    fn load(config: &CifarEvalConfig, input: &Path) -> Result<Self> {
        let Splits { train, test, test_source, .. } = load_splits(config, input, TestSplit::LeaveUntouched)?;
        debug_assert!(test.is_none(), "the test split stays untouched");
        let labels = labels_of(&train, "training split")?;
        let (fit_idx, val_idx) = validation_split(&labels, 10, config.validation, config.seed);
        if val_idx.is_empty() {
            bail!("cifar_eval.validation = {}: no validation images", config.validation);
        }
        let fit_idx = if config.snapshot_fit_per_class > 0 {
            draw_per_class(&labels, &fit_idx, 10, config.snapshot_fit_per_class, config.seed, 0)
        } else {
            fit_idx
        };
        let (fit_images, val_images) = (select_images(&train, &fit_idx), select_images(&train, &val_idx));
        let fit_labels = fit_idx.iter().map(|&i| labels[i]).collect();
        let val_labels = val_idx.iter().map(|&i| labels[i]).collect();
        Ok(Self { train, fit_images, fit_labels, val_images, val_labels, test_source })
    }
}

/// Every setting that changes a row: rows of an earlier table are reused only under the same key.
fn snapshot_key(config: &CifarEvalConfig, input: &Path) -> String {
    crate::stage::fingerprint(&json!({
        "input": input.display().to_string(), "preset": config.preset, "width": config.width(), "seed": config.seed,
        "bn": config.batch_norm, "bn_images": config.batch_norm_images, "dtype": config.features_dtype,
        "normalization": config.normalization, "point": config.feature_point, "pooling": config.pooling, "c_grid": config.c_grid, "validation": config.validation, "tol": config.tol,
        "max_passes": config.max_passes, "bias": config.bias, "fit_per_class": config.snapshot_fit_per_class,
        "holdout": config.holdout_test, "limit": config.limit_train_per_class,
    }))
}

/// The rows of the table already in `output` when it was scored with `key`.
fn previous_rows(output: &Path, key: &str) -> Vec<SnapshotScore> {
    std::fs::read(output.join("snapshots.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<SnapshotTable>(&b).ok())
        .filter(|t| t.key == key)
        .map(|t| t.rows)
        .unwrap_or_default()
}

/// Scoring one snapshot after another with the same settings and splits.
struct SnapshotScorer<'a> {
    config: &'a CifarEvalConfig,
    splits: &'a SnapshotSplits,
    device: tch::Device,
    threads: usize,
    log_every_s: f64,
}

impl SnapshotScorer<'_> {
    /// D's features of the fitting and validation images, normalised with the fitting images'
    /// statistics only (the validation images stay unseen until scored).
    fn features(&self, d_path: &Path, step: u64) -> Result<(FeatureMatrix, FeatureMatrix)> {
        let (config, splits) = (self.config, self.splits);
        let mut extractor = FeatureExtractor::load(d_path, config.preset, config.width(), self.device)?;
        if config.batch_norm == "recompute" {
            recompute_batch_norm_with_progress(&mut extractor, config, &splits.train, self.log_every_s)?;
        }
        let total = (splits.fit_images.len() + splits.val_images.len()) as u64;
        let progress =
            Progress::new(&format!("cifar-eval: snapshot step {step} features"), Some(total), self.log_every_s);
        // Snapshots are compared without flips (cifar_eval.flips applies to the final score only).
        let spec = [FeatureSpec { point: config.feature_point, pooling: config.pooling, flipped: false }];
        let features_of = |images: &LabeledImages| -> Result<FeatureMatrix> {
            let mut done = 0;
            let mut matrices = extractor.extract_many(images, &spec, config.batch, config.features_dtype, |d, _| {
                progress.inc((d - done) as u64);
                done = d;
            })?;
            Ok(matrices.remove(0))
        };
        let mut fit_x = features_of(&splits.fit_images)?;
        let mut val_x = features_of(&splits.val_images)?;
        progress.finish();
        let layout = extractor.discriminator().feature_layout(config.pooling);
        drop(extractor);
        if let Some(stats) = config.normalization.fit(&fit_x, &layout) {
            fit_x.standardize(&stats);
            val_x.standardize(&stats);
        }
        Ok((fit_x, val_x))
    }

    /// One snapshot's row: its features, then C on the validation split.
    fn score(&self, dir: &Path, state: &CheckpointState, epoch: f64, sha: String) -> Result<SnapshotScore> {
        let (config, splits) = (self.config, self.splits);
        let t = Instant::now();
        let (fit_x, val_x) = self.features(&dir.join("d.safetensors"), state.step)?;
        let features_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let fit_set = DatasetBase::new(fit_x, ArrayView1::from(&splits.fit_labels));
        let val_set = DatasetBase::new(val_x, ArrayView1::from(&splits.val_labels));
        let choice = CSearch::grid(&config.c_grid).choose(|c| {
            let model = config.svm(c, self.threads)?.fit(&fit_set)?;
            let predicted: Array1<usize> = model.predict(&val_set);
            Ok((ClassificationMetrics::new(&splits.val_labels, &predicted.to_vec(), 10).accuracy, ()))
        })?;
        Ok(SnapshotScore {
            step: state.step,
            epoch,
            path: dir.to_owned(),
            discriminator_sha256: sha,
            best_c: choice.c(),
            validation_accuracy: choice.accuracy(),
            grid: choice.tried,
            features_s,
            fit_s: t.elapsed().as_secs_f64(),
        })
    }
}

/// Scores every snapshot of the run at `snapshots_path` on the validation split of `input`;
/// writes snapshots.json, snapshots.csv and snapshots.md into `output` after each snapshot.
pub fn score_snapshots(
    config: &CifarEvalConfig,
    input: &Path,
    snapshots_path: &Path,
    output: &Path,
    threads: usize,
    log_every_s: f64,
) -> Result<SnapshotTable> {
    config.validate().map_err(anyhow::Error::msg)?;
    let device = parse_device(&config.device).map_err(anyhow::Error::msg)?;
    let (run, snapshots) = find_snapshots(snapshots_path)?;
    std::fs::create_dir_all(output).with_context(|| format!("{}: cannot create", output.display()))?;
    eprintln!("cifar-eval: {} snapshots in {}", snapshots.len(), run.display());

    let splits = SnapshotSplits::load(config, input)?;
    let key = snapshot_key(config, input);
    let previous = previous_rows(output, &key);
    let mut table = SnapshotTable {
        run: run.clone(),
        input: input.display().to_string(),
        test_split: splits.test_source.to_owned(),
        fit_images: splits.fit_images.len(),
        validation_images: splits.val_images.len(),
        rows: Vec::new(),
        validation_by_epoch: Vec::new(),
        best: None,
        key,
        device: format!("{device:?}"),
    };
    let scorer = SnapshotScorer { config, splits: &splits, device, threads, log_every_s };
    for (k, (dir, state)) in snapshots.iter().enumerate() {
        let d_path = dir.join("d.safetensors");
        let sha = fsutil::sha256_file(&d_path).with_context(|| format!("{}: cannot hash", d_path.display()))?;
        let epoch = state
            .steps_per_epoch
            .filter(|&n| n > 0)
            .map(|n| state.step as f64 / n as f64)
            .unwrap_or(state.epoch as f64);
        if let Some(row) = previous.iter().find(|r| r.discriminator_sha256 == sha) {
            eprintln!(
                "cifar-eval: snapshot {} of {}: step {} already scored ({:.2}%)",
                k + 1,
                snapshots.len(),
                state.step,
                100.0 * row.validation_accuracy
            );
            table.rows.push(SnapshotScore { path: dir.clone(), epoch, ..row.clone() });
            continue;
        }
        let row = scorer.score(dir, state, epoch, sha)?;
        eprintln!(
            "cifar-eval: snapshot {} of {}: step {} (epoch {:.2}): validation {:.2}% at C {} ({:.1} s features, {:.1} s SVM)",
            k + 1,
            snapshots.len(),
            row.step,
            row.epoch,
            100.0 * row.validation_accuracy,
            row.best_c,
            row.features_s,
            row.fit_s
        );
        table.rows.push(row);
        write_table(&mut table, output)?;
    }
    write_table(&mut table, output)?;
    Ok(table)
}

fn write_table(table: &mut SnapshotTable, output: &Path) -> Result<()> {
    table.finish();
    fsutil::write_atomic(&output.join("snapshots.json"), &serde_json::to_vec_pretty(table)?)?;
    fsutil::write_atomic(&output.join("snapshots.csv"), table.to_csv().as_bytes())?;
    fsutil::write_atomic(&output.join("snapshots.md"), table.to_markdown().as_bytes())?;
    if !table.validation_by_epoch.is_empty() {
        crate::plots::write_accuracy_by_epoch(&table.validation_by_epoch, &output.join("snapshots.png"))?;
    }
    Ok(())
}
