//! The dedupe stage: near-duplicate removal as the DCGAN paper did it for LSUN bedrooms.
//!
//! 1. Every input becomes a `size` x `size` min-resized center crop (the crop stage's code), run
//!    as a per-image stage into `<output>/crops` (parts, resume, `--shard`, merge).
//! 2. The crops, box-averaged to 32x32, train the 3072-128-3072 autoencoder (or a saved one is
//!    reused); its code layer, thresholded, gives each image a 128-bit code.
//! 3. Equal codes are grouped through a hash map in one pass (the paper's linear-time step); the
//!    distinct codes are searched for the pairs within `radius` bits: by sampled bits
//!    (`search = "sampled"`, the default: the same work per code at any size, nearly every pair;
//!    [`sampled`]), exactly by multi-index hashing (`"exact"`) or through an hnsw_rs graph
//!    (`"hnsw"`); clusters
//!    form around kept images, each removed image within the radius of its keeper
//!    (`cluster_rule = "around_keeper"`, the default), or by union-find over the pairs
//!    (`"single_linkage"`, which chains); one image per cluster is kept ([`clusters`]). Before an
//!    image removes another, the pair must also pass an independent check (`verify = "phash"`: the
//!    crops' 64-bit pHash within `verify_phash_radius` bits; [`phash`]): the code finds the
//!    candidates, the check keeps distinct photos that share a colour layout apart.
//! 4. Outputs: the kept images packed (the training set), clusters and pairs (JSONL), an HTML
//!    page for visual inspection, the codes, the model.

pub mod autoencoder;
mod buckets;
pub mod clusters;
pub mod hash;
pub mod index;
pub mod phash;
pub mod quality;
pub mod report;
pub mod run;
pub mod sampled;
pub mod thumbnails;
pub mod usage;
pub mod windows;

use serde::{Deserialize, Serialize};

use crate::torchutil::device::{parse_device, DeviceName};

pub use autoencoder::{Autoencoder, Threshold};
pub use hash::Code128;
pub use phash::PhashCheck;
pub use run::{deduplicate, DedupeCrops, DedupeSummary};

/// The near-pair search (see [`DedupeConfig::search`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NearSearch {
    /// Multi-index hashing: every pair within the radius; its work per code grows with the set.
    Exact,
    Hnsw,
    /// Sampled bits ([`sampled`]): nearly every pair, the same work per code at any size.
    Sampled,
}

/// The most tables a sampled search may have (`search_tables`, `window_search_tables`): 16 find
/// 95.7% of the window pairs at the radius at 155,000 photos, 32 99.7%.
pub const MAX_TABLES: usize = 256;

/// The crop route's search for window pairs (see [`DedupeConfig::window_search`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowSearch {
    Exact,
    Sampled,
}

/// The check a candidate pair must pass besides its codes' distance (see [`DedupeConfig::verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    None,
    Phash,
}

/// The dedupe stage's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// Side of the kept images' crops (the paper's LSUN model: 64); a multiple of 32, since the
    /// autoencoder sees them box-averaged to 32x32.
    pub size: u32,
    /// Hamming radius (bits of 128) within which two codes are near duplicates.
    pub radius: u32,
    /// Where a code bit switches on: zero (the paper's ReLU activity) or median (per unit).
    pub threshold: Threshold,
    /// Autoencoder training: `ae_epochs` passes over the training sample in batches of
    /// `ae_batch`, at least `ae_min_steps` and at most `ae_steps` Adam steps (so a small folder
    /// trains in seconds and a large set is capped); learning rate.
    pub ae_epochs: f64,
    pub ae_min_steps: usize,
    pub ae_steps: usize,
    pub ae_batch: usize,
    pub ae_lr: f64,
    /// Standard deviation of the Gaussian input corruption (inputs in [-1, 1]).
    pub ae_noise: f64,
    /// Dropout probability on the code layer.
    pub ae_dropout: f64,
    /// Subtract each image's own mean from its input (codes that ignore brightness changes).
    pub ae_centre_images: bool,
    /// Train on at most this many images, evenly spread over the input; 0 = all.
    pub ae_sample: usize,
    pub seed: i64,
    /// auto (CUDA when available), cpu, cuda, cuda:N.
    pub device: String,
    /// How near pairs are found among the distinct codes: sampled (the default: keys of sampled
    /// bits in `search_tables` tables, the same work per code whatever the set's size, nearly every
    /// pair), exact (multi-index hashing, every pair within the radius, work per code growing
    /// with the set) or hnsw (hnsw_rs's approximate graph, the settings below).
    pub search: NearSearch,
    pub search_tables: usize,
    /// How near pairs become clusters: around kept images (no chains) or single linkage.
    pub cluster_rule: clusters::ClusterRule,
    /// The second test a pair within the radius must pass before one image removes the other:
    /// "phash" (the crops' 64-bit pHash within `verify_phash_radius` bits) or "none" (the code
    /// alone, as the paper).
    pub verify: Verify,
    pub verify_phash_radius: u32,
    /// The crop route ([`windows`]): a pair is also a candidate, and passes, when one image's
    /// whole-crop pHash lies within `window_phash_radius` bits of a pHash of a window of the
    /// other and their grey thumbnails, aligned, correlate at least `window_min_correlation`.
    /// Finds copies cropped by a few percent or given a border, which move the code and pHash.
    pub windows: bool,
    pub window_phash_radius: u32,
    pub window_min_correlation: f64,
    /// The crop route keeps, per image, at most this many window candidates, the nearest first:
    /// the check then grows with the set, not its square (docs/dedupe.md, scale).
    pub window_max_candidates: usize,
    /// How window pairs are found: sampled (the default, `window_search_tables` tables: flat
    /// work per image, a pair at the radius missed now and then) or exact (multi-index hashing).
    pub window_search: WindowSearch,
    pub window_search_tables: usize,
    /// The check reads the grey thumbnails of this many window pairs at a time from a scratch
    /// file (1 KiB an image): its memory is at most 2 KiB x this, whatever the set's size.
    pub check_batch: usize,
    /// HNSW: links per node (M), build and search candidate lists, neighbours asked per code.
    pub max_connections: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub neighbours: usize,
    /// The HTML page: this many largest clusters and random pairs near the radius.
    pub report_clusters: usize,
    pub report_pairs: usize,
    /// Decoding, as in [crop].
    pub dct_scaling: bool,
    pub min_decoded_factor: u32,
    pub max_pixels: u64,
    pub max_file_bytes: u64,
    /// Keep photos whose decoder reported corrupt or missing data (see crop.keep_damaged).
    pub keep_damaged: bool,
    /// Inputs per crops/images-NNNNN.npy; the unit of resume and --shard.
    pub part_size: u64,
}

impl DedupeConfig {
    /// The settings that shape the crops (a different radius must not redo them).
    pub fn crop_config(&self) -> crate::crop::CropConfig {
        crate::crop::CropConfig {
            size: self.size,
            dct_scaling: self.dct_scaling,
            min_decoded_factor: self.min_decoded_factor,
            max_pixels: self.max_pixels,
            max_file_bytes: self.max_file_bytes,
            keep_damaged: self.keep_damaged,
            part_size: self.part_size,
        }
    }

    /// The near pairs of distinct codes within `radius`, by the configured search.
    pub fn code_pairs(&self, distinct: &[Code128], radius: u32) -> Vec<index::NearPair> {
        match self.search {
            NearSearch::Exact => index::multi_index_pairs(distinct, radius),
            NearSearch::Hnsw => index::index_pairs(distinct, radius, &self.index_params()),
            NearSearch::Sampled => sampled::code_pairs(distinct, radius, self.search_tables),
        }
    }

    /// The window pairs within `radius` ([`windows`]), by the configured search and bound.
    pub fn window_pairs(&self, hashes: &[u64], radius: u32) -> Vec<windows::WindowPair> {
        match self.window_search {
            WindowSearch::Exact => windows::window_pairs(hashes, radius, self.window_max_candidates),
            WindowSearch::Sampled => {
                windows::window_pairs_sampled(hashes, radius, self.window_search_tables, self.window_max_candidates)
            }
        }
    }

    pub fn index_params(&self) -> index::IndexParams {
        index::IndexParams {
            max_connections: self.max_connections,
            ef_construction: self.ef_construction,
            neighbours: self.neighbours,
            ef_search: self.ef_search,
        }
    }

    pub fn train_settings(&self) -> autoencoder::TrainSettings {
        autoencoder::TrainSettings {
            epochs: self.ae_epochs,
            min_steps: self.ae_min_steps,
            max_steps: self.ae_steps,
            batch: self.ae_batch,
            lr: self.ae_lr,
            noise: self.ae_noise,
            dropout: self.ae_dropout,
            seed: self.seed,
        }
    }

    pub fn device(&self) -> Result<tch::Device, String> {
        parse_device(&self.device).map_err(|e| format!("dedupe.device: {e}"))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.size == 0 || !self.size.is_multiple_of(32) || self.size > 1024 {
            return Err(format!("dedupe.size = {} must be a multiple of 32 up to 1024", self.size));
        }
        if self.radius > 128 {
            return Err(format!("dedupe.radius = {} is more than the code's 128 bits", self.radius));
        }
        if self.window_phash_radius > 64 || !(-1.0..=1.0).contains(&self.window_min_correlation) {
            return Err(format!(
                "dedupe.window_phash_radius = {} must be at most 64 and window_min_correlation = {} in [-1, 1]",
                self.window_phash_radius, self.window_min_correlation
            ));
        }
        // Each table is a pass over every hash: thousands would run for days without a word.
        for (key, tables) in
            [("search_tables", self.search_tables), ("window_search_tables", self.window_search_tables)]
        {
            if !(1..=MAX_TABLES).contains(&tables) {
                return Err(format!("dedupe.{key} = {tables} must be 1 to {MAX_TABLES}"));
            }
        }
        if self.window_max_candidates == 0 || self.check_batch == 0 {
            return Err("dedupe.window_max_candidates and dedupe.check_batch must be at least 1".into());
        }
        if self.ae_epochs.is_nan() || self.ae_epochs <= 0.0 || self.ae_min_steps > self.ae_steps {
            return Err(format!(
                "dedupe.ae_epochs = {} must be > 0 and ae_min_steps = {} at most ae_steps = {}",
                self.ae_epochs, self.ae_min_steps, self.ae_steps
            ));
        }
        if self.verify_phash_radius > 64 {
            return Err(format!(
                "dedupe.verify_phash_radius = {} is more than pHash's 64 bits",
                self.verify_phash_radius
            ));
        }
        if self.ae_batch == 0 || self.ae_lr <= 0.0 || self.ae_noise < 0.0 || !(0.0..1.0).contains(&self.ae_dropout) {
            return Err("dedupe.ae_batch must be >= 1, ae_lr > 0, ae_noise >= 0, ae_dropout in [0, 1)".into());
        }
        if self.max_connections < 2 || self.max_connections > 256 || self.neighbours == 0 || self.ef_construction == 0 {
            return Err("dedupe.max_connections must be in 2..=256, neighbours and ef_construction at least 1".into());
        }
        if self.part_size == 0 || self.min_decoded_factor == 0 {
            return Err("dedupe.part_size and dedupe.min_decoded_factor must be at least 1".into());
        }
        DeviceName::parse(&self.device).map(|_| ()).map_err(|e| format!("dedupe.device: {e}"))
    }

    /// Refuses an autoencoder batch too big for the budget ([`crate::memory`]) before any work:
    /// the autoencoder's values four times (value, gradient, Adam's moments) and per image of
    /// `ae_batch` its 3,072 inputs eight times (the input, its noise, the reconstruction, their
    /// gradients), float32, plus 0.5 GiB. `dedupe.ae_batch = 1e12` used to panic in libtorch after
    /// the crops were made.
    pub fn check_memory(&self, max_memory_gb: f64) -> anyhow::Result<()> {
        use crate::memory::{budget, check, count, Estimate};
        let input = autoencoder::INPUT_DIM as f64;
        let values = 2.0 * input * hash::CODE_BITS as f64 + input + 2.0 * hash::CODE_BITS as f64;
        let per_image = 8.0 * input;
        let estimate = Estimate {
            bytes: 4.0 * (4.0 * values + self.ae_batch as f64 * per_image) + 512.0 * 1048576.0,
            formula: format!(
                "{} parameters x 16 B + batch {} x {} values x 4 B + 0.5 GiB",
                count(values),
                self.ae_batch,
                count(per_image)
            ),
        };
        let cuda = match parse_device(&self.device).map_err(anyhow::Error::msg)? {
            tch::Device::Cuda(i) => Some(i),
            _ => None,
        };
        let what = format!("dedupe.ae_batch = {}", self.ae_batch);
        Ok(check(&what, &estimate, budget(max_memory_gb, cuda).as_ref(), "lower dedupe.ae_batch")?)
    }
}
