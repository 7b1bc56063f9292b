//! What cifar-eval needs in memory, estimated from its settings before anything is read or
//! allocated ([`crate::memory`]): D, one batch through it, and the feature matrices.

use super::cifar_config::CifarEvalConfig;
use super::matrix::FeatureDtype;
use crate::gan::{feature_count, Footprint};
use crate::memory::{self, count, Estimate};

/// CIFAR-10's training and test images, the sizes assumed before the input is read.
const CIFAR_TRAIN: f64 = 50_000.0;
const CIFAR_TEST: f64 = 10_000.0;

/// D's values (float32); a batch's layer outputs, each layer's conv output, BatchNorm output and
/// activation kept (three copies, float32); the feature matrices of CIFAR-10's 60,000 images
/// (fewer with limit_*_per_class; twice with flips) in features_dtype; plus 0.5 GiB.
pub fn estimate(config: &CifarEvalConfig) -> Estimate {
    let width = config.width();
    let f = Footprint::of(config.preset, config.preset.default_z_dim(), width);
    // A limit above CIFAR-10's size takes them all.
    let per_class = |limit: usize, all: f64| if limit > 0 { (10.0 * limit as f64).min(all) } else { all };
    let images = (per_class(config.limit_train_per_class, CIFAR_TRAIN)
        + per_class(config.limit_test_per_class, CIFAR_TEST))
        * if config.flips { 2.0 } else { 1.0 };
    let features = feature_count(config.preset, width, config.pooling);
    let value_bytes = match config.features_dtype {
        FeatureDtype::Float16 => 2.0,
        FeatureDtype::Float32 => 4.0,
    };
    let batch = config.batch as f64;
    let bytes = 4.0 * f.d_values + 12.0 * batch * f.d_activations + images * features * value_bytes + 512.0 * 1048576.0;
    Estimate {
        bytes,
        formula: format!(
            "{} parameters x 4 B + batch {} x {} activation values x 12 B + {} images x {} features x {value_bytes} B + 0.5 GiB",
            count(f.d_values),
            config.batch,
            count(f.d_activations),
            count(images),
            count(features)
        ),
    }
}

/// Refuses `config` before anything is read when its estimate exceeds the budget
/// (`max_memory_gb`, else the host's available memory: the feature matrices, the bulk, live
/// there whatever cifar_eval.device is).
pub fn check(config: &CifarEvalConfig, max_memory_gb: f64) -> anyhow::Result<()> {
    let what = format!(
        "cifar_eval.width = {}, cifar_eval.batch = {} ({}, {} features)",
        config.width(),
        config.batch,
        config.preset,
        config.pooling
    );
    let half =
        if config.features_dtype == FeatureDtype::Float32 { "cifar_eval.features_dtype = \"float16\", " } else { "" };
    let hint = format!(
        "lower cifar_eval.width or cifar_eval.batch, use {half}cifar_eval.limit_*_per_class, or set run.max_memory_gb"
    );
    Ok(memory::check(&what, &estimate(config), memory::budget(max_memory_gb, None).as_ref(), &hint)?)
}
