//! The dedupe stage's two halves: the per-image crop pass (a [`PerImageStage`]) and the
//! whole-set pass over the merged crops ([`deduplicate`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::autoencoder::{downsample_to_input, Autoencoder, INPUT_DIM};
use super::clusters::{clusters_by, exact_groups, ClusterRule};
use super::hash::{bit_usage, Code128};
use super::index::{index_pairs, multi_index_pairs, NearPair};
use super::phash::{phash_crops, PhashCheck};
use super::{DedupeConfig, Verify};
use crate::crop::CropStage;
use crate::data::npy::{self, NpyRowWriter};
use crate::fsutil;
use crate::stage::manifest::{encode_manifest, read_manifest};
use crate::stage::{Failure, ManifestRow, PerImageStage, Processed, Status};

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
    fn process(&self, bytes: &[u8]) -> Result<Processed, Failure> {
        self.crop.process(bytes)
    }
}

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
        "crops": crops_fingerprint, "steps": config.ae_steps, "batch": config.ae_batch, "lr": config.ae_lr,
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
/// autoencoder, hashes, clusters, writes the outputs into `output`.
pub fn deduplicate(config: &DedupeConfig, output: &Path, model_path: Option<&Path>, force: bool) -> Result<DedupeSummary> {
    let mut timings = HashMap::new();
    let crops = crops_dir(output);
    let rows = read_manifest(&crops.join("manifest.jsonl"))?;
    let side = config.size as u64;
    let shards = crop_shards(&crops)?;
    let crops_fingerprint = std::fs::read_to_string(crops.join("parts/fingerprint")).unwrap_or_default();
    // Crop row -> manifest row.
    let mut row_of: Vec<usize> = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        if let Some(index) = row.index {
            if index as usize != row_of.len() {
                bail!("{}: manifest rows are not in packed order", crops.display());
            }
            row_of.push(r);
        }
    }
    let n = row_of.len();
    let device = config.device().map_err(anyhow::Error::msg)?;

    // The model: given, saved by an earlier run with the same settings, or trained now.
    let started = Instant::now();
    let saved = output.join("model.safetensors");
    let saved_fingerprint = output.join("model.fingerprint");
    let fingerprint = model_fingerprint(config, crops_fingerprint.trim());
    let (model, model_name, trained) = if let Some(path) = model_path {
        (Autoencoder::load(path, device)?, path.display().to_string(), false)
    } else if !force && saved.is_file() && std::fs::read_to_string(&saved_fingerprint).ok().as_deref() == Some(&fingerprint) {
        (Autoencoder::load(&saved, device)?, saved.display().to_string(), false)
    } else {
        if n == 0 {
            bail!("{}: no image could be cropped, nothing to train the autoencoder on", crops.display());
        }
        let picked = sample_rows(n, config.ae_sample);
        let mut sample = Vec::with_capacity(picked.len() * INPUT_DIM);
        let mut next = 0;
        let per = (side * side * 3) as usize;
        for_each_shard(&shards, side, |first, data| {
            let count = data.len() / per;
            while next < picked.len() && picked[next] < first + count {
                let local = picked[next] - first;
                sample.extend(downsample_to_input(&data[local * per..(local + 1) * per], side as usize));
                next += 1;
            }
            Ok(())
        })?;
        let mut model = Autoencoder::new(device, config.ae_centre_images);
        let losses = model.train(&sample, &config.train_settings());
        model.save(&saved)?;
        fsutil::write_atomic(&saved_fingerprint, fingerprint.as_bytes())?;
        let curve: Vec<Value> = losses.iter().map(|(s, l)| json!([s, l])).collect();
        fsutil::write_atomic(&output.join("model-losses.json"), &serde_json::to_vec(&curve)?)?;
        (model, saved.display().to_string(), true)
    };
    timings.insert("model", started.elapsed().as_secs_f64());

    // Codes and pHashes, shard by shard.
    let started = Instant::now();
    let mut codes: Vec<Code128> = Vec::with_capacity(n);
    let verify = config.verify == Verify::Phash;
    let mut phashes: Vec<u64> = Vec::with_capacity(if verify { n } else { 0 });
    for_each_shard(&shards, side, |_, data| {
        codes.extend(model.codes(&downsample_to_input(data, side as usize), config.threshold));
        if verify {
            phashes.extend(phash_crops(data, side as u32));
        }
        Ok(())
    })?;
    if codes.len() != n {
        bail!("{}: {} crops but the manifest lists {n}", crops.display(), codes.len());
    }
    let words: Vec<u64> = codes.iter().flat_map(|c| c.0).collect();
    npy::write_array(&output.join("codes.npy"), &[n as u64, 2], &words)?;
    if verify {
        npy::write_array(&output.join("phash.npy"), &[n as u64], &phashes)?;
    }
    timings.insert("codes", started.elapsed().as_secs_f64());

    // Exact collisions, then near pairs among the distinct codes, then clusters.
    let started = Instant::now();
    let groups = exact_groups(&codes);
    let distinct: Vec<Code128> = groups.iter().map(|g| codes[g[0] as usize]).collect();
    let near = match config.search {
        super::NearSearch::Exact => multi_index_pairs(&distinct, config.radius),
        super::NearSearch::Hnsw => index_pairs(&distinct, config.radius, &config.index_params()),
    };
    timings.insert("index", started.elapsed().as_secs_f64());

    // Clusters, each keeping one image.
    let pixels: Vec<u64> = row_of
        .iter()
        .map(|&r| {
            let d = &rows[r].detail;
            d.get("width").and_then(Value::as_u64).unwrap_or(0) * d.get("height").and_then(Value::as_u64).unwrap_or(0)
        })
        .collect();
    let started = Instant::now();
    // The check, when on (one place decides; every output below follows it).
    let check = verify.then_some(PhashCheck { hashes: &phashes, radius: config.verify_phash_radius });
    let same = |a: u32, b: u32| check.is_none_or(|c| c.same(a, b));
    let clusters = clusters_by(config.cluster_rule, n, &groups, &near, &pixels, &same);
    timings.insert("cluster", started.elapsed().as_secs_f64());
    let mut kept_of = vec![0u32; n];
    let mut cluster_of = vec![0usize; n];
    let mut kept = vec![false; n];
    for (c, cluster) in clusters.iter().enumerate() {
        let k = cluster.kept;
        kept[k as usize] = true;
        for &m in &cluster.members {
            kept_of[m as usize] = k;
            cluster_of[m as usize] = c;
        }
    }
    let source = |i: u32| rows[row_of[i as usize]].source.as_str();

    // The kept images, packed, with labels and a manifest (one row per input).
    let started = Instant::now();
    let crop_labels = npy::read_array::<i64>(&crops.join("labels.npy")).map(|(_, l)| l).unwrap_or_else(|_| vec![-1; n]);
    let per = (side * side * 3) as usize;
    let mut writer = NpyRowWriter::create_u8(&output.join("images-00000.npy"), &[side, side, 3])?;
    let mut kept_row = vec![None; n];
    let mut labels = Vec::new();
    for_each_shard(&shards, side, |first, data| {
        for (local, image) in data.chunks_exact(per).enumerate() {
            let i = first + local;
            if kept[i] {
                kept_row[i] = Some(writer.push_row(image)?);
                labels.push(crop_labels.get(i).copied().unwrap_or(-1));
            }
        }
        Ok(())
    })?;
    writer.finish()?;
    npy::write_array(&output.join("labels.npy"), &[labels.len() as u64], &labels)?;
    if let Ok(classes) = std::fs::read(crops.join("classes.txt")) {
        fsutil::write_atomic(&output.join("classes.txt"), &classes)?;
    }
    let mut manifest: Vec<ManifestRow> = Vec::with_capacity(rows.len());
    let mut crop_row = 0usize;
    for row in &rows {
        let mut out = row.clone();
        out.index = None;
        out.outputs = 0;
        out.part = 0;
        if row.index.is_some() {
            let i = crop_row;
            crop_row += 1;
            out.detail.insert("code".into(), json!(codes[i].to_hex()));
            out.detail.insert("cluster".into(), json!(cluster_of[i]));
            if let Some(r) = kept_row[i] {
                out.index = Some(r);
                out.outputs = 1;
            } else {
                out.status = Status::Skipped;
                out.reason = Some(format!("near duplicate of {}", source(kept_of[i])));
                out.detail.insert("duplicate_of".into(), json!(source(kept_of[i])));
                out.detail.insert("distance".into(), json!(codes[i].hamming(&codes[kept_of[i] as usize])));
                if let Some(c) = check {
                    out.detail.insert("phash_distance".into(), json!(c.distance(i as u32, kept_of[i])));
                }
            }
        }
        manifest.push(out);
    }
    fsutil::write_atomic(&output.join("manifest.jsonl"), &encode_manifest(&manifest))?;
    let kept_list: String = (0..n as u32).filter(|&i| kept[i as usize]).map(|i| format!("{}\n", source(i))).collect();
    fsutil::write_atomic(&output.join("kept.txt"), kept_list.as_bytes())?;

    // Clusters (two or more members, largest first) and pairs, as JSONL.
    let mut multi: Vec<&Vec<u32>> = clusters.iter().map(|c| &c.members).filter(|c| c.len() > 1).collect();
    multi.sort_by_key(|c| (std::cmp::Reverse(c.len()), c[0]));
    let mut text = Vec::new();
    for members in &multi {
        let k = kept_of[members[0] as usize];
        let list: Vec<Value> = members
            .iter()
            .map(|&m| json!({"source": source(m), "crop_index": m, "distance_to_kept": codes[m as usize].hamming(&codes[k as usize])}))
            .collect();
        serde_json::to_writer(&mut text, &json!({"cluster": cluster_of[k as usize], "size": members.len(), "kept": source(k), "members": list}))?;
        text.push(b'\n');
    }
    fsutil::write_atomic(&output.join("clusters.jsonl"), &text)?;
    // Pairs: within an exact group each member with the group's first; near pairs between the
    // groups' first members. Linear in the images, unlike all pairs of a cluster.
    let mut pairs: Vec<NearPair> = Vec::new();
    for group in &groups {
        pairs.extend(group[1..].iter().map(|&m| NearPair { a: group[0], b: m, distance: 0 }));
    }
    pairs.extend(near.iter().map(|p| NearPair { a: groups[p.a as usize][0], b: groups[p.b as usize][0], distance: p.distance }));
    let mut text = Vec::new();
    let mut failed_check = 0usize;
    for p in &pairs {
        let mut row = json!({"a": source(p.a), "b": source(p.b), "crop_a": p.a, "crop_b": p.b, "distance": p.distance});
        if let Some(c) = check {
            let passed = c.same(p.a, p.b);
            failed_check += usize::from(!passed);
            row["phash_distance"] = json!(c.distance(p.a, p.b));
            row["passes_check"] = json!(passed);
        }
        serde_json::to_writer(&mut text, &row)?;
        text.push(b'\n');
    }
    fsutil::write_atomic(&output.join("pairs.jsonl"), &text)?;

    // The page for visual inspection.
    let read_crop = |indices: &[u32]| -> Result<HashMap<u32, Vec<u8>>> {
        let mut wanted: Vec<u32> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = HashMap::new();
        for_each_shard(&shards, side, |first, data| {
            let count = data.len() / per;
            for &i in wanted.iter().filter(|&&i| (i as usize) >= first && (i as usize) < first + count) {
                let local = i as usize - first;
                found.insert(i, data[local * per..(local + 1) * per].to_vec());
            }
            Ok(())
        })?;
        Ok(found)
    };
    // With the check, most pairs near the radius fail it; the pairs that pass (the removals'
    // evidence, at any distance above 0) come first, up to half the page, then pairs near the radius.
    let near_radius = super::report::pairs_near_radius(&pairs, config.radius, config.report_pairs, config.seed as u64);
    let shown_pairs = match check {
        Some(c) => {
            let passing: Vec<NearPair> = pairs.iter().filter(|p| p.distance > 0 && c.same(p.a, p.b)).copied().collect();
            let mut shown = super::report::random_pairs(passing, config.report_pairs / 2, config.seed as u64);
            shown.sort_by_key(|p| std::cmp::Reverse(p.distance));
            shown.extend(near_radius.into_iter().filter(|p| !c.same(p.a, p.b)).take(config.report_pairs - shown.len()));
            shown
        }
        None => near_radius,
    };
    let page = super::report::Page {
        title: format!("dedupe: {} images, {} kept, radius {}", n, kept.iter().filter(|&&k| k).count(), config.radius),
        side: config.size,
        radius: config.radius,
        clusters: multi
            .iter()
            .take(config.report_clusters)
            .map(|m| super::report::ClusterView { members: m.iter().take(48).copied().collect(), size: m.len(), kept: kept_of[m[0] as usize] })
            .collect(),
        check: check.map(|c| (c.radius, shown_pairs.iter().map(|p| c.distance(p.a, p.b)).collect())),
        pairs: shown_pairs,
    };
    let shown = page.images();
    let images = read_crop(&shown)?;
    let html = page.render(&images, &|i| source(i).to_owned());
    fsutil::write_atomic(&output.join("report.html"), html.as_bytes())?;
    timings.insert("outputs", started.elapsed().as_secs_f64());

    let usage = bit_usage(&codes);
    let dead = usage.iter().filter(|&&u| u == 0.0 || u == 1.0).count();
    let kept_count = kept.iter().filter(|&&k| k).count();
    let summary = DedupeSummary {
        images: n,
        kept: kept_count,
        removed: n - kept_count,
        clusters: multi.len(),
        exact_groups: groups.iter().filter(|g| g.len() > 1).count(),
        near_pairs: near.len(),
        model: model_name,
        model_trained: trained,
        timings_s: timings,
    };
    let crop_summary: Value =
        std::fs::read(crops.join("summary.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let document = json!({
        "stage": "dedupe",
        "counts": {
            "records": rows.len(),
            "cropped": n,
            "errors": rows.iter().filter(|r| r.status == Status::Error).count(),
            "kept": summary.kept,
            "removed": summary.removed,
            "clusters_of_two_or_more": summary.clusters,
            "exact_collision_groups": summary.exact_groups,
            "distinct_codes": groups.len(),
            "near_pairs_between_distinct_codes": summary.near_pairs,
            "pairs_failing_the_check": failed_check,
        },
        "verify": match check {
            Some(c) => format!("a removed image's crop and its keeper's have pHashes within {} of 64 bits", c.radius),
            None => "none: codes within the radius alone".to_owned(),
        },
        "cluster_rule": config.cluster_rule,
        "keep_rule": match config.cluster_rule {
            ClusterRule::AroundKeeper => "best copies first (most source pixels, then input order): each keeps itself and takes the untaken images within the radius of it that pass the check against it",
            ClusterRule::SingleLinkage => "per cluster, the image with the most source pixels; the first in input order among equals",
        },
        "codes": {"constant_bits": dead, "mean_bits_set": usage.iter().sum::<f64>()},
        "model": {"path": summary.model, "trained_now": trained},
        "outputs": {
            "images": ["images-00000.npy"], "labels": "labels.npy", "manifest": "manifest.jsonl", "kept": "kept.txt",
            "clusters": "clusters.jsonl", "pairs": "pairs.jsonl", "report": "report.html", "codes": "codes.npy",
            "phash": if check.is_some() { json!("phash.npy") } else { Value::Null },
            "crops": "crops/",
        },
        "timings_s": summary.timings_s,
        "crop_pass": crop_summary,
        "config": config,
        "versions": crate::versions_with_opencv(),
    });
    fsutil::write_atomic(&output.join("summary.json"), &serde_json::to_vec_pretty(&document)?)?;
    Ok(summary)
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
