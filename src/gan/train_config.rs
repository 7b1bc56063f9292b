//! `[train]`: what a training run is told (the preset, the schedule, the device, the precision), and
//! which of it a resumed run must share with the run it continues.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::models::{Preset, Prior};
use crate::torchutil::device::parse_device;

/// Everything training needs; `[train]` in the config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// imagenet32 (the authors' 32x32 ImageNet model) or dcgan64 (faces/LSUN, Figure 1).
    pub preset: Preset,
    /// Size of z; 0 = the preset's (256 for imagenet32, 100 for dcgan64).
    pub z_dim: i64,
    /// uniform (U(-1, 1), the paper's) or normal.
    pub prior: Prior,
    /// Width of D's first layer; G mirrors D. 0 = the paper's 128.
    pub width: i64,
    pub epochs: u64,
    /// Stop after this many steps in all (0: no limit besides epochs).
    pub max_steps: u64,
    pub batch: i64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub seed: u64,
    /// auto (CUDA when there is one), cpu, cuda or cuda:N.
    pub device: String,
    /// Steps between loss rows (each reads values back from the device).
    pub log_every: u64,
    /// Steps between sample grids besides the end of each epoch (0: epochs only).
    pub sample_every: u64,
    /// Steps between checkpoints besides the end of each epoch (0: epochs only).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest).
    pub keep_checkpoints: usize,
    /// Every this many epochs, G and D (no optimiser state) go to snapshots/step-N/, never removed
    /// (apart from keep_checkpoints): what `cifar-eval --snapshots` chooses a D from. 0: none.
    pub snapshot_every_epochs: u64,
    /// Train on the first N images only (0: all).
    pub limit_images: usize,
    /// Stop cleanly (checkpoint, samples, summary) once this much wall time has passed in this
    /// invocation; a re-run resumes. 0: no limit.
    pub max_minutes: f64,
    /// After resuming from weights without optimiser state (the GPU leases, docs/gpu.md), this
    /// many steps re-estimate Adam's moments with the weights held still (lr 0). 0: none.
    pub moment_warmup_steps: u64,
    /// float32, or bfloat16: convolutions in bfloat16, everything else (BatchNorm, losses, weights,
    /// Adam) in float32, as autocast does. bfloat16 needs a GPU that has it (CUDA only).
    pub precision: Precision,
    /// Images and conv weights in channels-last (NHWC) memory order: "auto" (on the CPU, where
    /// oneDNN's convolutions prefer it; not on CUDA, where it measured 0.87x on an H100 and 1.07x
    /// on an H200 in float32), true or false.
    pub channels_last: ChannelsLast,
}

/// [`TrainConfig::channels_last`]: `"auto"`, `true` or `false` in the TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FlagOrWord", into = "FlagOrWord")]
pub enum ChannelsLast {
    Auto,
    On,
    Off,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FlagOrWord {
    Flag(bool),
    Word(String),
}

impl TryFrom<FlagOrWord> for ChannelsLast {
    type Error = String;
    fn try_from(value: FlagOrWord) -> Result<Self, String> {
        match value {
            FlagOrWord::Flag(true) => Ok(Self::On),
            FlagOrWord::Flag(false) => Ok(Self::Off),
            FlagOrWord::Word(w) if w == "auto" => Ok(Self::Auto),
            FlagOrWord::Word(w) => Err(format!("channels_last = {w:?}: expected \"auto\", true or false")),
        }
    }
}

impl From<ChannelsLast> for FlagOrWord {
    fn from(value: ChannelsLast) -> Self {
        match value {
            ChannelsLast::Auto => Self::Word("auto".to_owned()),
            ChannelsLast::On => Self::Flag(true),
            ChannelsLast::Off => Self::Flag(false),
        }
    }
}

impl ChannelsLast {
    /// Whether tensors on `device` are kept channels-last.
    pub fn on(self, device: Device) -> bool {
        match self {
            Self::Auto => device == Device::Cpu,
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// The type convolutions compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Float32,
    Bfloat16,
}

impl TrainConfig {
    pub fn z_dim(&self) -> i64 {
        if self.z_dim > 0 {
            self.z_dim
        } else {
            self.preset.default_z_dim()
        }
    }
    pub fn width(&self) -> i64 {
        if self.width > 0 {
            self.width
        } else {
            self.preset.default_width()
        }
    }

    /// The settings a resumed run must share with the run it continues (not the length of
    /// training, the device or how often things are logged).
    pub fn resume_fingerprint(&self) -> String {
        crate::stage::fingerprint(&self.resume_settings())
    }

    /// Those settings by key (recorded in each checkpoint, so that a refusal names what changed).
    pub fn resume_settings(&self) -> serde_json::Value {
        serde_json::json!({
            "preset": self.preset, "z_dim": self.z_dim(), "prior": self.prior, "width": self.width(),
            "batch": self.batch, "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "seed": self.seed,
            "limit_images": self.limit_images,
        })
    }

    pub fn device(&self) -> Result<Device> {
        parse_device(&self.device).map_err(|e| anyhow::anyhow!("train.device: {e}"))
    }
}
