//! `[cifar_eval]`: which D, which features, the C grid, the splits and the draws of the protocol,
//! checked, and the SVM's parameters it gives.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::matrix::{FeatureDtype, Normalization};
use super::svm::{L2Svm, L2SvmValidParams};
use crate::gan::{FeaturePoint, Pooling, Preset};
use crate::torchutil::device::DeviceName;
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
