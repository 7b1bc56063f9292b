//! The settings every stage run takes that do not change what it writes: `[run]` in the config.
//! The contract owns them, so that it needs nothing else of the configuration.

use serde::{Deserialize, Serialize};

/// `[run]`: worker threads, records per batch, progress cadence, the memory limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Worker threads; 0 uses every core.
    pub threads: usize,
    /// Records decoded in parallel between two writes (bounds memory with the file size limit).
    pub batch: usize,
    /// Seconds between progress lines when stderr is not a terminal.
    pub log_every_s: f64,
    /// GiB a model and its batches may take (train, cifar-eval; see crate::memory): work whose
    /// estimate exceeds it is refused before it starts. 0: what the machine has (available host
    /// memory, or the GPU's memory on CUDA).
    pub max_memory_gb: f64,
    /// Parquet inputs: the column holding the images; empty: found by type.
    #[serde(default)]
    pub input_image_column: String,
    /// Parquet inputs: the column used as the class; empty: the Hub's ClassLabel, or `label`.
    #[serde(default)]
    pub input_label_column: String,
    /// WebDataset inputs: the field of a sample's `.json` used as its class when it has no `.cls`.
    #[serde(default)]
    pub input_class_field: String,
}

/// The most records decoded between two writes, and worker threads, a run takes.
pub const MAX_BATCH: usize = 1_000_000;
pub const MAX_THREADS: usize = 1024;

impl RunSettings {
    /// What the archive sources take from `[run]` (an empty key: not set).
    pub fn source_options(&self) -> crate::data::SourceOptions {
        let set = |s: &String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        crate::data::SourceOptions {
            image_column: set(&self.input_image_column),
            label_column: set(&self.input_label_column),
            class_field: set(&self.input_class_field),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        // Upper bounds: run.batch is allocated up front (1e12 aborted in the allocator), and every
        // thread is spawned at start (100,000 hung for minutes).
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(format!("run.batch = {} must be in 1..={MAX_BATCH}", self.batch));
        }
        if self.threads > MAX_THREADS {
            return Err(format!("run.threads = {} must be at most {MAX_THREADS} (0: every core)", self.threads));
        }
        if self.max_memory_gb < 0.0 {
            return Err(format!("run.max_memory_gb = {} must be 0 (the machine's) or more", self.max_memory_gb));
        }
        Ok(())
    }
}
