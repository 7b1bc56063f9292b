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
}

impl RunSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 {
            return Err("run.batch must be at least 1".into());
        }
        if self.max_memory_gb < 0.0 {
            return Err(format!("run.max_memory_gb = {} must be 0 (the machine's) or more", self.max_memory_gb));
        }
        Ok(())
    }
}
