//! The dedupe stage's two halves: the per-image crop pass (a [`PerImageStage`]) and the
//! whole-set pass over the merged crops ([`deduplicate`]), whose last step, the files it writes,
//! is run/outputs.rs. Just over 600 lines with its tests, and one idea: the order of the stage's
//! steps, each a named function here or in the module it calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use rayon::prelude::*;

use super::autoencoder::{downsample_to_input, Autoencoder, INPUT_DIM};
use super::clusters::{clusters_by, exact_groups};
use super::hash::Code128;
use super::index::NearPair;
use super::phash::{phash_crops, PhashCheck};
use super::thumbnails::{ThumbnailFile, ThumbnailWriter};
use super::usage::{cpu_seconds, measure, peak_rss_mib, StepUsage};
use super::windows::{grey_thumbnail, window_correlations, window_distance, window_hashes, WindowPair};
use super::{DedupeConfig, Verify};
use crate::crop::CropStage;
use crate::data::npy;
use crate::fsutil;
use crate::stage::manifest::read_manifest;
use crate::stage::{Failure, ManifestRow, PerImageStage, Processed};

mod outputs;
use outputs::Outputs;

/// The crop pass: the crop stage's min-resized center crops at `dedupe.size`, under this
/// stage's name.
pub struct DedupeCrops {
    crop: CropStage,
}

impl DedupeCrops {
    pub fn new(config: &DedupeConfig) -> Self {
        Self { crop: CropStage::new(config.crop_config()) }
    }
}

impl PerImageStage for DedupeCrops {
    const NAME: &'static str = "dedupe";

    fn row_shape(&self) -> [u64; 3] {
        self.crop.row_shape()
    }
    fn max_file_bytes(&self) -> u64 {
        self.crop.max_file_bytes()
    }
    fn peak_bytes_per_image(&self) -> (f64, String) {
        let (bytes, formula) = self.crop.peak_bytes_per_image();
        (bytes, formula.replace("crop.", "dedupe."))
    }
    fn process(&self, bytes: &[u8]) -> Result<Processed, Failure> {
        self.crop.process(bytes)
    }
}

/// The kept inputs' names, one JSON string a line, in input order.
pub const KEPT_FILE: &str = "kept.jsonl";

/// Where the crop pass writes, inside the stage's output folder.
pub fn crops_dir(output: &Path) -> PathBuf {
    output.join("crops")
}

/// What the whole-set pass found.
#[derive(Debug, Clone, Serialize)]
pub struct DedupeSummary {
    pub images: usize,
    pub kept: usize,
    pub removed: usize,
    pub clusters: usize,
    pub exact_groups: usize,
    pub near_pairs: usize,
    pub model: String,
    pub model_trained: bool,
    pub timings_s: HashMap<&'static str, f64>,
    /// Per step: wall and CPU seconds, peak resident memory.
    pub usage: HashMap<&'static str, StepUsage>,
}

/// The crops' packed shards, in order.
fn crop_shards(crops: &Path) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(crops)
        .with_context(|| format!("{}: cannot list", crops.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("images-") && n.ends_with(".npy")
        })
        .collect();
    shards.sort();
    Ok(shards)
}

/// Calls `visit(first_row, rows)` with each shard's crops, one shard in memory at a time.
fn for_each_shard(shards: &[PathBuf], side: u64, mut visit: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<usize> {
    let mut offset = 0;
    for shard in shards {
        let (shape, data) = npy::read_array::<u8>(shard)?;
        if shape.len() != 4 || shape[1..] != [side, side, 3] {
            bail!("{}: shape {shape:?}, expected N x {side} x {side} x 3", shard.display());
        }
        visit(offset, &data)?;
        offset += shape[0] as usize;
    }
    Ok(offset)
}

/// The model file's settings record: a saved model is reused only when these match.
fn model_fingerprint(config: &DedupeConfig, crops_fingerprint: &str) -> String {
    crate::stage::fingerprint(&json!({
        "crops": crops_fingerprint, "steps": config.ae_steps, "epochs": config.ae_epochs, "min_steps": config.ae_min_steps, "batch": config.ae_batch, "lr": config.ae_lr,
        "noise": config.ae_noise, "dropout": config.ae_dropout, "sample": config.ae_sample, "seed": config.seed,
        "centre_images": config.ae_centre_images,
    }))
}

/// Rows `0, step, 2 step, ...`: an even spread of at most `limit` of `n` images (0 = all).
pub(crate) fn sample_rows(n: usize, limit: usize) -> Vec<usize> {
    if limit == 0 || limit >= n {
        return (0..n).collect();
    }
    (0..limit).map(|k| k * n / limit).collect()
}

/// The whole-set pass: reads the merged crops in `<output>/crops`, trains or loads the
/// autoencoder, hashes, finds and checks candidate pairs, clusters, writes the outputs into
/// `output`. Each step is one call below.
pub fn deduplicate(
    config: &DedupeConfig,
    output: &Path,
    model_path: Option<&Path>,
    force: bool,
) -> Result<DedupeSummary> {
    let mut timings = Timings::before_steps();
    let crops = CropSet::open(output, config.size as u64)?;
    let model = timings.time("model", || ModelChoice::get(config, &crops, output, model_path, force))?;
    let mut hashes = timings.time("codes", || Hashes::compute(config, &model.model, &crops, output))?;
    let thumbnails = hashes.thumbnails.take();
    let candidates = timings.time("index", || Candidates::find(config, &hashes));
    let check = timings.time("check", || Check::prepare(config, &hashes, &candidates, thumbnails))?;
    let assignment = timings.time("cluster", || Assignment::cluster(config, &crops, &candidates, &check));
    let outputs = Outputs { config, output, crops: &crops, hashes: &hashes, candidates: &candidates, check: &check };
    let counts = timings.time("outputs", || outputs.write(&assignment))?;
    let summary = DedupeSummary {
        images: crops.len(),
        kept: assignment.kept_count(),
        removed: crops.len() - assignment.kept_count(),
        clusters: assignment.multi.len(),
        exact_groups: candidates.groups.iter().filter(|g| g.len() > 1).count(),
        near_pairs: candidates.near.len(),
        model: model.name,
        model_trained: model.trained,
        timings_s: timings.0,
        usage: timings.1,
    };
    outputs.write_summary(&summary, &counts)?;
    Ok(summary)
}

/// Per step its wall time (seconds) and its usage (wall, CPU, peak memory; [`super::usage`]).
#[derive(Default)]
struct Timings(HashMap<&'static str, f64>, HashMap<&'static str, StepUsage>);

impl Timings {
    /// Before the first step: what the crop pass and the start cost (CPU and peak memory so far).
    fn before_steps() -> Self {
        let mut timings = Self::default();
        let usage =
            StepUsage { wall_s: f64::NAN, cpu_s: cpu_seconds().unwrap_or(f64::NAN), peak_rss_mib: peak_rss_mib() };
        timings.1.insert("crop_pass_and_start", usage);
        timings
    }

    fn time<T>(&mut self, step: &'static str, f: impl FnOnce() -> T) -> T {
        let (out, usage) = measure(f);
        self.0.insert(step, usage.wall_s);
        self.1.insert(step, usage);
        out
    }
}

/// Step 1, the crops: the merged crop pass, read one shard at a time.
pub struct CropSet {
    dir: PathBuf,
    side: u64,
    shards: Vec<PathBuf>,
    /// Every manifest row (inputs that failed too) and, per crop, its manifest row.
    rows: Vec<ManifestRow>,
    row_of: Vec<usize>,
    fingerprint: String,
}

impl CropSet {
    fn open(output: &Path, side: u64) -> Result<Self> {
        let dir = crops_dir(output);
        let rows = read_manifest(&dir.join("manifest.jsonl"))?;
        let shards = crop_shards(&dir)?;
        let fingerprint = std::fs::read_to_string(dir.join("parts/fingerprint")).unwrap_or_default().trim().to_owned();
        let mut row_of: Vec<usize> = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            if let Some(index) = row.index {
                if index as usize != row_of.len() {
                    bail!("{}: manifest rows are not in packed order", dir.display());
                }
                row_of.push(r);
            }
        }
        Ok(Self { dir, side, shards, rows, row_of, fingerprint })
    }

    fn len(&self) -> usize {
        self.row_of.len()
    }

    fn per_image(&self) -> usize {
        (self.side * self.side * 3) as usize
    }

    /// Calls `visit(first_crop, crops)` with each shard, in order.
    fn for_each_shard(&self, visit: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<usize> {
        for_each_shard(&self.shards, self.side, visit)
    }

    /// The crops `indices` (any order, repeats allowed), by index.
    fn read(&self, indices: &[u32]) -> Result<HashMap<u32, Vec<u8>>> {
        self.read_as(indices, <[u8]>::to_vec)
    }

    /// `convert` of each crop in `indices`, by index, a shard at a time: only the converted
    /// values stay in memory (the crop route's thumbnails are a twelfth of the crops).
    fn read_as<T: Send>(&self, indices: &[u32], convert: impl Fn(&[u8]) -> T + Sync) -> Result<HashMap<u32, T>> {
        let mut wanted: Vec<u32> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let per = self.per_image();
        let mut found = HashMap::with_capacity(wanted.len());
        self.for_each_shard(|first, data| {
            let count = data.len() / per;
            let here: Vec<u32> =
                wanted.iter().copied().filter(|&i| (i as usize) >= first && (i as usize) < first + count).collect();
            found.par_extend(here.into_par_iter().map(|i| {
                let local = i as usize - first;
                (i, convert(&data[local * per..(local + 1) * per]))
            }));
            Ok(())
        })?;
        Ok(found)
    }

    /// The input file of crop `i`.
    fn source(&self, i: u32) -> &str {
        self.rows[self.row_of[i as usize]].source.as_str()
    }

    /// Per crop, its source's decoded pixels (the keep rule's "best copy").
    fn source_pixels(&self) -> Vec<u64> {
        self.row_of
            .iter()
            .map(|&r| {
                let d = &self.rows[r].detail;
                d.get("width").and_then(Value::as_u64).unwrap_or(0)
                    * d.get("height").and_then(Value::as_u64).unwrap_or(0)
            })
            .collect()
    }
}

/// Step 2, the model: given, saved by an earlier run with the same settings, or trained now.
struct ModelChoice {
    model: Autoencoder,
    name: String,
    trained: bool,
}

impl ModelChoice {
    fn get(
        config: &DedupeConfig,
        crops: &CropSet,
        output: &Path,
        model_path: Option<&Path>,
        force: bool,
    ) -> Result<Self> {
        let device = config.device().map_err(anyhow::Error::msg)?;
        let saved = output.join("model.safetensors");
        let saved_fingerprint = output.join("model.fingerprint");
        let fingerprint = model_fingerprint(config, &crops.fingerprint);
        if let Some(path) = model_path {
            return Ok(Self {
                model: Autoencoder::load(path, device)?,
                name: path.display().to_string(),
                trained: false,
            });
        }
        if !force
            && saved.is_file()
            && std::fs::read_to_string(&saved_fingerprint).ok().as_deref() == Some(&fingerprint)
        {
            return Ok(Self {
                model: Autoencoder::load(&saved, device)?,
                name: saved.display().to_string(),
                trained: false,
            });
        }
        if crops.len() == 0 {
            bail!("{}: no image could be cropped, nothing to train the autoencoder on", crops.dir.display());
        }
        let sample = training_sample(crops, &sample_rows(crops.len(), config.ae_sample))?;
        let mut model = Autoencoder::new(device, config.ae_centre_images);
        let settings = config.train_settings();
        let images = sample.len() / INPUT_DIM;
        let losses = model.train(&sample, &settings, Some(&settings.progress(images)));
        model.save(&saved)?;
        fsutil::write_atomic(&saved_fingerprint, fingerprint.as_bytes())?;
        let curve: Vec<Value> = losses.iter().map(|(s, l)| json!([s, l])).collect();
        fsutil::write_atomic(&output.join("model-losses.json"), &serde_json::to_vec(&curve)?)?;
        Ok(Self { model, name: saved.display().to_string(), trained: true })
    }
}

/// The network inputs (32x32) of the crops `picked` (increasing).
fn training_sample(crops: &CropSet, picked: &[usize]) -> Result<Vec<u8>> {
    let mut sample = Vec::with_capacity(picked.len() * INPUT_DIM);
    let mut next = 0;
    let per = crops.per_image();
    crops.for_each_shard(|first, data| {
        let count = data.len() / per;
        while next < picked.len() && picked[next] < first + count {
            let local = picked[next] - first;
            sample.extend(downsample_to_input(&data[local * per..(local + 1) * per], crops.side as usize));
            next += 1;
        }
        Ok(())
    })?;
    Ok(sample)
}

/// Step 3, the codes: each crop's 128-bit code, and with the check its pHash and (crop route)
/// its windows' pHashes and grey thumbnail (to a scratch file the check reads); written to
/// codes.npy and phash.npy.
struct Hashes {
    codes: Vec<Code128>,
    /// Empty unless `verify = "phash"`.
    phash: Vec<u64>,
    /// `windows::PER_IMAGE` per crop; empty unless `windows` is on.
    windows: Vec<u64>,
    /// The crop route's grey thumbnails, on disk.
    thumbnails: Option<ThumbnailFile>,
}

/// The scratch file of the crop route's thumbnails, removed once the check has read them.
const THUMBNAILS_FILE: &str = "scratch-thumbnails.u8";

impl Hashes {
    fn compute(config: &DedupeConfig, model: &Autoencoder, crops: &CropSet, output: &Path) -> Result<Self> {
        let n = crops.len();
        let side = crops.side as usize;
        let verify = config.verify == Verify::Phash;
        let mut hashes =
            Hashes { codes: Vec::with_capacity(n), phash: Vec::new(), windows: Vec::new(), thumbnails: None };
        let mut thumbnails =
            if config.windows { Some(ThumbnailWriter::create(&output.join(THUMBNAILS_FILE))?) } else { None };
        let progress = crate::stage::progress::Progress::new("dedupe: codes", Some(n as u64), 10.0);
        crops.for_each_shard(|_, data| {
            // A part at a time within the shard, so that progress moves on a large shard.
            for part in data.chunks(crops.per_image() * 8192) {
                let inputs = downsample_to_input(part, side);
                hashes.codes.extend(model.codes(&inputs, config.threshold));
                if verify {
                    hashes.phash.extend(phash_crops(part, side as u32));
                }
                if let Some(writer) = thumbnails.as_mut() {
                    hashes.windows.extend(window_hashes(part, side as u32));
                    let grey: Vec<u8> = inputs.par_chunks_exact(INPUT_DIM).flat_map_iter(grey_thumbnail).collect();
                    writer.push(&grey)?;
                }
                progress.inc((part.len() / crops.per_image()) as u64);
            }
            Ok(())
        })?;
        progress.finish();
        hashes.thumbnails = thumbnails.map(ThumbnailWriter::finish).transpose()?;
        if hashes.codes.len() != n {
            bail!("{}: {} crops but the manifest lists {n}", crops.dir.display(), hashes.codes.len());
        }
        let words: Vec<u64> = hashes.codes.iter().flat_map(|c| c.0).collect();
        npy::write_array(&output.join("codes.npy"), &[n as u64, 2], &words)?;
        if verify {
            npy::write_array(&output.join("phash.npy"), &[n as u64], &hashes.phash)?;
        }
        Ok(hashes)
    }
}

/// Step 4, the candidates: exact code collisions (groups), codes within the radius between the
/// groups, and with the crop route the window pairs (image pairs whose whole-crop pHash lies
/// within `window_phash_radius` of a window's pHash of the other).
struct Candidates {
    groups: Vec<Vec<u32>>,
    /// Code pairs between groups (indices into `groups`).
    near: Vec<NearPair>,
    window_pairs: Vec<WindowPair>,
}

impl Candidates {
    fn find(config: &DedupeConfig, hashes: &Hashes) -> Self {
        let groups = exact_groups(&hashes.codes);
        let distinct: Vec<Code128> = groups.iter().map(|g| hashes.codes[g[0] as usize]).collect();
        let near = config.code_pairs(&distinct, config.radius);
        let window_pairs =
            if config.windows { config.window_pairs(&hashes.windows, config.window_phash_radius) } else { Vec::new() };
        Self { groups, near, window_pairs }
    }

    /// The near pairs between groups that clustering visits: the code's, then the window pairs'
    /// groups where the code has no pair.
    fn group_pairs(&self, codes: &[Code128]) -> Vec<NearPair> {
        let mut group_of = vec![0u32; codes.len()];
        for (g, members) in self.groups.iter().enumerate() {
            for &m in members {
                group_of[m as usize] = g as u32;
            }
        }
        let mut seen: std::collections::HashSet<(u32, u32)> = self.near.iter().map(|p| (p.a, p.b)).collect();
        let mut pairs = self.near.clone();
        for p in &self.window_pairs {
            let (ga, gb) = (group_of[p.a as usize], group_of[p.b as usize]);
            let key = (ga.min(gb), ga.max(gb));
            if ga != gb && seen.insert(key) {
                pairs.push(NearPair {
                    a: key.0,
                    b: key.1,
                    distance: codes[p.a as usize].hamming(&codes[p.b as usize]),
                });
            }
        }
        pairs
    }

    /// Image pairs: within an exact group each member with the group's first; code pairs between
    /// the groups' first members; the window pairs not among them. Linear in the images, unlike
    /// all pairs of a cluster.
    fn image_pairs(&self, codes: &[Code128]) -> Vec<NearPair> {
        let mut pairs: Vec<NearPair> = Vec::new();
        for group in &self.groups {
            pairs.extend(group[1..].iter().map(|&m| NearPair { a: group[0], b: m, distance: 0 }));
        }
        pairs.extend(self.near.iter().map(|p| NearPair {
            a: self.groups[p.a as usize][0],
            b: self.groups[p.b as usize][0],
            distance: p.distance,
        }));
        let listed: std::collections::HashSet<(u32, u32)> =
            pairs.iter().map(|p| (p.a.min(p.b), p.a.max(p.b))).collect();
        pairs.extend(self.window_pairs.iter().filter(|p| !listed.contains(&(p.a, p.b))).map(|p| NearPair {
            a: p.a,
            b: p.b,
            distance: codes[p.a as usize].hamming(&codes[p.b as usize]),
        }));
        pairs
    }
}

/// Step 5, the check a pair must pass before one image removes the other: its codes within the
/// radius and (with `verify = "phash"`) its pHashes within `verify_phash_radius`; or, with the
/// crop route, a window pair whose aligned grey thumbnails correlate at least
/// `window_min_correlation`.
pub struct Check<'a> {
    codes: &'a [Code128],
    radius: u32,
    phash: Option<PhashCheck<'a>>,
    /// Window distance and correlation of every window pair (crop route).
    windows: Option<WindowCheck<'a>>,
}

struct WindowCheck<'a> {
    hashes: &'a [u64],
    min_correlation: f64,
    correlation: HashMap<(u32, u32), f32>,
}

impl<'a> Check<'a> {
    fn prepare(
        config: &DedupeConfig,
        hashes: &'a Hashes,
        candidates: &Candidates,
        thumbnails: Option<ThumbnailFile>,
    ) -> Result<Self> {
        let windows = match thumbnails {
            // The window pairs' grey thumbnails, a batch of pairs at a time from the scratch file.
            Some(thumbnails) if config.windows => {
                let correlation = window_correlations(
                    &candidates.window_pairs,
                    &hashes.windows,
                    config.window_phash_radius,
                    config.check_batch,
                    &|ids| thumbnails.read(ids),
                )?;
                thumbnails.remove()?;
                Some(correlation)
            }
            _ => None,
        };
        let phash = (config.verify == Verify::Phash)
            .then_some(PhashCheck { hashes: &hashes.phash, radius: config.verify_phash_radius });
        let windows = windows.map(|correlation| WindowCheck {
            hashes: &hashes.windows,
            min_correlation: config.window_min_correlation,
            correlation,
        });
        Ok(Self { codes: &hashes.codes, radius: config.radius, phash, windows })
    }

    /// The code route: codes within the radius and, when on, pHashes within the check's.
    fn by_code(&self, a: u32, b: u32) -> bool {
        self.codes[a as usize].hamming(&self.codes[b as usize]) <= self.radius
            && self.phash.is_none_or(|c| c.same(a, b))
    }

    /// The crop route: a window pair whose thumbnails correlate enough.
    fn by_windows(&self, a: u32, b: u32) -> bool {
        self.correlation(a, b)
            .is_some_and(|c| f64::from(c) >= self.windows.as_ref().map_or(f64::INFINITY, |w| w.min_correlation))
    }

    /// The aligned correlation of a window pair (None: not a window pair, or the route is off).
    fn correlation(&self, a: u32, b: u32) -> Option<f32> {
        self.windows.as_ref()?.correlation.get(&(a.min(b), a.max(b))).copied()
    }

    fn window_distance(&self, a: u32, b: u32) -> Option<u32> {
        self.windows.as_ref().map(|w| window_distance(w.hashes, a, b))
    }

    pub fn same(&self, a: u32, b: u32) -> bool {
        self.by_code(a, b) || self.by_windows(a, b)
    }

    /// Whether a second test besides the code is on (what the outputs then report).
    fn is_on(&self) -> bool {
        self.phash.is_some() || self.windows.is_some()
    }

    /// The pHash distance shown for a pair: the whole crops', or with the crop route the best over
    /// the windows.
    fn shown_distance(&self, a: u32, b: u32) -> u32 {
        let whole = self.phash.map_or(64, |c| c.distance(a, b));
        whole.min(self.window_distance(a, b).unwrap_or(64))
    }

    fn describe(&self) -> String {
        let code = match self.phash {
            Some(c) => format!("codes within the radius and pHashes within {} of 64 bits", c.radius),
            None => "codes within the radius alone".to_owned(),
        };
        match &self.windows {
            Some(w) => format!("{code}; or (the crop route) a whole-crop pHash within the window radius of a window's pHash of the other, and grey thumbnails correlating at least {} once aligned", w.min_correlation),
            None => code,
        }
    }
}

/// Step 6, the clusters: each keeping one image; per image its keeper and cluster.
struct Assignment {
    kept_of: Vec<u32>,
    cluster_of: Vec<usize>,
    kept: Vec<bool>,
    /// Clusters of two or more, largest first.
    multi: Vec<Vec<u32>>,
}

impl Assignment {
    fn cluster(config: &DedupeConfig, crops: &CropSet, candidates: &Candidates, check: &Check) -> Self {
        let n = crops.len();
        let near = candidates.group_pairs(check.codes);
        let same = |a: u32, b: u32| check.same(a, b);
        let clusters = clusters_by(config.cluster_rule, n, &candidates.groups, &near, &crops.source_pixels(), &same);
        let mut kept_of = vec![0u32; n];
        let mut cluster_of = vec![0usize; n];
        let mut kept = vec![false; n];
        for (c, cluster) in clusters.iter().enumerate() {
            kept[cluster.kept as usize] = true;
            for &m in &cluster.members {
                kept_of[m as usize] = cluster.kept;
                cluster_of[m as usize] = c;
            }
        }
        let mut multi: Vec<Vec<u32>> = clusters.iter().map(|c| c.members.clone()).filter(|c| c.len() > 1).collect();
        multi.sort_by_key(|c| (std::cmp::Reverse(c.len()), c[0]));
        Self { kept_of, cluster_of, kept, multi }
    }

    fn kept_count(&self) -> usize {
        self.kept.iter().filter(|&&k| k).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_evenly() {
        assert_eq!(sample_rows(10, 0), (0..10).collect::<Vec<_>>());
        assert_eq!(sample_rows(10, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(sample_rows(3, 7), vec![0, 1, 2]);
    }
}
