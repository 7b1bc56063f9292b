//! The contract every stage keeps, written once: one command-line shape, read-only inputs, atomic
//! outputs, `manifest.jsonl` and `summary.json`, resume, `--shard` with a merge, progress.

pub mod cli;
pub mod lock;
pub mod manifest;
pub mod merge;
pub mod owner;
pub mod parts;
pub mod preemption;
pub mod progress;
pub mod runner;
pub mod settings;
pub mod shard;

use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use manifest::{ManifestRow, Status};
pub use merge::merge;
pub use runner::{run_per_image, Failure, PerImageStage, Processed, RunSpec, RunSummary, ShardReport};
pub use settings::RunSettings;
pub use shard::ShardSpec;

/// The options every stage binary takes (flattened into its clap parser).
#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// Input: a folder tree (searched recursively; images recognised by extension or content),
    /// a .tar or .tar.gz archive (read as a stream), or an LMDB folder holding data.mdb
    /// (LSUN's export). Never modified.
    #[arg(long, short, value_name = "PATH", required_unless_present_any = ["merge", "print_config"])]
    pub input: Option<PathBuf>,

    /// Output folder. Created if missing; a folder holding earlier outputs of the same settings
    /// is resumed.
    #[arg(long, short, value_name = "DIR", required_unless_present = "print_config")]
    pub output: Option<PathBuf>,

    /// TOML configuration laid over the embedded default (configs/demo.toml); it only needs the
    /// keys it changes. See --print-config for every key and its default.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override one configuration key, e.g. --set crop.size=64 (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,

    /// Process only shard INDEX of COUNT (parts p with p % COUNT == INDEX), for job arrays;
    /// run once more with --merge when every shard has finished.
    #[arg(long, value_name = "INDEX/COUNT", default_value = "0/1")]
    pub shard: ShardSpec,

    /// Redo work that is already done (this shard's parts), replacing its outputs.
    #[arg(long)]
    pub force: bool,

    /// Join the parts that the shards wrote into --output; no input is read.
    #[arg(long)]
    pub merge: bool,

    /// Print the effective configuration (defaults, --config, --set) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// A short, stable hash of the settings that shape a stage's outputs.
pub fn fingerprint<T: Serialize>(settings: &T) -> String {
    let bytes = serde_json::to_vec(settings).expect("settings serialise");
    Sha256::digest(bytes).iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Exit status of a stage that finished but could not use some inputs (0: all fine, 1: the
/// stage itself failed).
pub const EXIT_SOME_INPUTS_FAILED: i32 = 3;
