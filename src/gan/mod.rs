//! The DCGAN: the paper's two presets, training, its checkpoints on disk, and its pictures (sample grids, the latent walk).

pub mod adversarial;
pub mod checkpoints;
pub mod collapse;
pub mod copying;
pub mod export;
pub mod footprint;
pub mod loss_log;
pub mod models;
pub mod nn_watch;
pub mod resume_guard;
pub mod sample;
pub mod train_config;
pub mod trainer;

pub use adversarial::Gan;
pub use checkpoints::{list_snapshots, CheckpointState};
pub use footprint::{feature_count, Footprint};
pub use models::{Discriminator, FeaturePoint, Generator, Pooling, Preset, Prior};
pub use sample::{seeded_z, TrainedGenerator};
pub use train_config::TrainConfig;
pub use trainer::train;
