//! The cifar-eval stage: the paper's Table 1 protocol. Discriminator features (every conv layer
//! max-pooled to 4x4, 28,672 values for imagenet32), a linear L2-SVM on them, and the metrics.
//!
//! - [`matrix`]: feature matrices in float32 or float16, standardisation, `.npy`.
//! - [`svm`]: the one-vs-rest L2-SVM, dual coordinate descent, behind linfa's `Fit`/`Predict`.
//! - [`footprint`]: the memory a run needs, estimated from its settings before it starts.
//! - [`features`]: loading D, BatchNorm population statistics, the pooled features.
//! - [`c_search`]: choosing C on a validation split (the grid, its refinement), for every caller.
//! - [`cifar_config`]: `[cifar_eval]`, checked.
//! - [`splits`]: the input's splits, the validation split, the per-class draws.
//! - [`rows`]: row adapters (a subset, two matrices stacked, a split with its flips) the fits take.
//! - [`protocol`]: the C grid, the refit, the 400-per-class draws, metrics.json.
//! - [`select`]: scoring a run's snapshots on the validation split, to choose a D.
//! - [`kernels`]: the solver's dot/axpy loops, vectorised at run time.

pub mod c_search;
pub mod cifar_config;
pub mod crosscheck;
pub mod digits;
pub mod features;
pub mod footprint;
pub mod kernels;
pub mod matrix;
pub mod metrics;
pub mod protocol;
pub mod rows;
pub mod select;
pub mod splits;
pub mod svm;

pub use cifar_config::CifarEvalConfig;
pub use features::{FeatureError, FeatureExtractor, FeatureSpec};
pub use matrix::{FeatureDtype, FeatureMatrix, FeatureRows, Normalization, Standardizer};
pub use metrics::ClassificationMetrics;
pub use protocol::{evaluate, CifarEvalReport};
pub use rows::Subset;
pub use svm::{L2Svm, L2SvmParams, L2SvmValidParams, SvmError};
