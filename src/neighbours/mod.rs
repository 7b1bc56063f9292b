//! Nearest training images for any set of images, and what they tell: does a generator copy its
//! training set?
//!
//! - [`search`]: exact nearest neighbours in pixel space (float32 GEMM for candidates, an exact
//!   integer re-rank), for any stage that asks which training image an image is closest to.
//! - [`cells`]: k-means cells of the training set.
//! - [`copying`]: the data-copying test C_T of Meehan, Chaudhuri and Dasgupta (AISTATS 2020), and
//!   the share of samples whose nearest training image is a near duplicate by dedupe's pHash check.
//! - [`outputs`]: the test's table, plots and contact sheet on disk.

pub mod cells;
pub mod copying;
pub mod outputs;
pub mod search;

pub use copying::{copy_test, CopyTest, CopyTestSettings, Images};
pub use search::{nearest, rms_distance, Neighbours, PixelRows, SearchError};
