//! Step 7 of the whole-set pass, the outputs: the kept images packed (images-00000.npy,
//! labels.npy, classes.jsonl), the manifest and kept.jsonl, clusters and pairs (JSONL), the page
//! (report.html), and summary.json. Each file is one writer below.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{Assignment, Candidates, Check, CropSet, DedupeSummary, Hashes, KEPT_FILE};
use crate::data::npy::{self, NpyRowWriter};
use crate::data::packed;
use crate::dedupe::clusters::ClusterRule;
use crate::dedupe::hash::bit_usage;
use crate::dedupe::index::NearPair;
use crate::dedupe::{Code128, DedupeConfig, NearSearch, WindowSearch};
use crate::fsutil;
use crate::stage::manifest::encode_manifest;
use crate::stage::progress::Progress;
use crate::stage::{ManifestRow, Status};

/// What the outputs are written from: the set and the steps' results before clustering.
#[derive(Clone, Copy)]
pub(super) struct Outputs<'a> {
    pub(super) config: &'a DedupeConfig,
    pub(super) output: &'a Path,
    pub(super) crops: &'a CropSet,
    pub(super) hashes: &'a Hashes,
    pub(super) candidates: &'a Candidates,
    pub(super) check: &'a Check<'a>,
}

impl Outputs<'_> {
    /// Step 7, the outputs: the kept images packed, the manifest, kept.jsonl, clusters and pairs
    /// (JSONL), the page.
    pub(super) fn write(&self, assignment: &Assignment) -> Result<OutputCounts> {
        let Self { config, output, crops, hashes, candidates, check } = *self;
        // What earlier versions wrote in place of classes.jsonl and kept.jsonl: not left beside them.
        for old in [packed::OLD_CLASSES_FILE, "kept.txt"] {
            match std::fs::remove_file(output.join(old)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("{}: cannot remove", output.join(old).display()));
                }
                _ => {}
            }
        }
        let pairs = candidates.image_pairs(&hashes.codes);
        // Minutes at millions of photos: the kept images, the manifest's rows and the pairs counted.
        let progress = Progress::new("dedupe: outputs", Some((2 * crops.len() + pairs.len()) as u64), 10.0);
        write_kept_images(output, crops, assignment, &progress)?;
        write_manifest(output, crops, hashes, check, assignment, &progress)?;
        write_clusters(output, crops, hashes, assignment)?;
        let counts = write_pairs(output, crops, check, &pairs, &progress)?;
        write_page(config, output, crops, check, assignment, &pairs)?;
        progress.finish();
        Ok(counts)
    }

    /// summary.json: the counts, the rules, the timings, the settings.
    pub(super) fn write_summary(&self, summary: &DedupeSummary, counts: &OutputCounts) -> Result<()> {
        let Self { config, output, crops, hashes, candidates, check } = *self;
        let usage = bit_usage(&hashes.codes);
        let dead = usage.iter().filter(|&&u| u == 0.0 || u == 1.0).count();
        let crop_summary: Value = std::fs::read(crops.dir.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let document = json!({
            "stage": "dedupe",
            "counts": {
                "records": crops.rows.len(),
                "cropped": summary.images,
                "errors": crops.rows.iter().filter(|r| r.status == Status::Error).count(),
                "kept": summary.kept,
                "removed": summary.removed,
                "clusters_of_two_or_more": summary.clusters,
                "exact_collision_groups": summary.exact_groups,
                "distinct_codes": candidates.groups.len(),
                "near_pairs_between_distinct_codes": summary.near_pairs,
                "window_pairs": candidates.window_pairs.len(),
                "window_pairs_passing": counts.window_pairs_passing,
                "pairs_failing_the_check": counts.failed_check,
            },
            "searches": searches(config, candidates.groups.len(), hashes.windows.len()),
            "verify": if check.is_on() { check.describe() } else { "none: codes within the radius alone".to_owned() },
            "cluster_rule": config.cluster_rule,
            "keep_rule": match config.cluster_rule {
                ClusterRule::AroundKeeper => "best copies first (most source pixels, then input order): each keeps itself and takes the untaken images within the radius of it, or window pairs with it, that pass the check against it",
                ClusterRule::SingleLinkage => "per cluster, the image with the most source pixels; the first in input order among equals",
            },
            "codes": {"constant_bits": dead, "mean_bits_set": usage.iter().sum::<f64>()},
            "model": {"path": summary.model, "trained_now": summary.model_trained},
            "outputs": {
                "images": ["images-00000.npy"], "labels": "labels.npy", "manifest": "manifest.jsonl", "kept": KEPT_FILE,
                "clusters": "clusters.jsonl", "pairs": "pairs.jsonl", "report": "report.html", "codes": "codes.npy",
                "phash": if check.phash.is_some() { json!("phash.npy") } else { Value::Null },
                "crops": "crops/",
            },
            "files": packed_records(output)?,
            "timings_s": summary.timings_s,
            "usage": summary.usage,
            "crop_pass": crop_summary,
            "config": config,
            "versions": crate::versions_with_opencv(),
        });
        fsutil::write_atomic(&output.join("summary.json"), &serde_json::to_vec_pretty(&document)?)?;
        Ok(())
    }
}

/// Which searches found the pairs, and with sampled bits their shape for this set (tables, key
/// bits, buckets): what a reader needs to know how near the radius pairs may have been missed.
fn searches(config: &DedupeConfig, distinct_codes: usize, window_hashes: usize) -> Value {
    use crate::dedupe::sampled::Plan;
    let sampled = |plan: Plan| json!({"search": "sampled", "tables": plan.tables, "key_bits": plan.width, "buckets": plan.buckets});
    let code_pairs = match config.search {
        NearSearch::Sampled => sampled(Plan::for_set::<Code128>(distinct_codes, config.radius, config.search_tables)),
        other => json!({ "search": other }),
    };
    let window_pairs = match (config.windows, config.window_search) {
        (false, _) => Value::Null,
        (true, WindowSearch::Sampled) => {
            sampled(Plan::for_set::<u64>(window_hashes, config.window_phash_radius, config.window_search_tables))
        }
        (true, other) => json!({ "search": other }),
    };
    json!({"code_pairs": code_pairs, "window_pairs": window_pairs})
}

/// Counts the outputs report in summary.json.
pub(super) struct OutputCounts {
    failed_check: usize,
    window_pairs_passing: usize,
}

/// The kept images, packed, with their labels and classes.
fn write_kept_images(output: &Path, crops: &CropSet, assignment: &Assignment, progress: &Progress) -> Result<()> {
    let n = crops.len();
    let crop_labels =
        npy::read_array::<i64>(&crops.dir.join("labels.npy")).map(|(_, l)| l).unwrap_or_else(|_| vec![-1; n]);
    let mut writer = NpyRowWriter::create_u8(&output.join("images-00000.npy"), &[crops.side, crops.side, 3])?;
    let mut labels = Vec::new();
    crops.for_each_shard(|first, data| {
        for (local, image) in data.chunks_exact(crops.per_image()).enumerate() {
            let i = first + local;
            if assignment.kept[i] {
                writer.push_row(image)?;
                labels.push(crop_labels.get(i).copied().unwrap_or(-1));
            }
        }
        progress.inc((data.len() / crops.per_image()) as u64);
        Ok(())
    })?;
    writer.finish()?;
    npy::write_array(&output.join("labels.npy"), &[labels.len() as u64], &labels)?;
    // The crops' class names, rewritten as classes.jsonl whichever form the crops hold.
    let classes = packed::read_classes(&crops.dir)?;
    if !classes.is_empty() {
        fsutil::write_atomic(&output.join(packed::CLASSES_FILE), &packed::encode_classes(&classes))?;
    }
    Ok(())
}

/// One row per input (kept with its packed row, or skipped as a duplicate of which), and kept.jsonl.
fn write_manifest(
    output: &Path,
    crops: &CropSet,
    hashes: &Hashes,
    check: &Check,
    assignment: &Assignment,
    progress: &Progress,
) -> Result<()> {
    let codes = &hashes.codes;
    let mut manifest: Vec<ManifestRow> = Vec::with_capacity(crops.rows.len());
    let mut crop_row = 0usize;
    let mut next_kept = 0u64;
    for row in &crops.rows {
        let mut out = row.clone();
        out.index = None;
        out.outputs = 0;
        out.part = 0;
        if row.index.is_some() {
            let i = crop_row;
            crop_row += 1;
            progress.inc(1);
            out.detail.insert("code".into(), json!(codes[i].to_hex()));
            out.detail.insert("cluster".into(), json!(assignment.cluster_of[i]));
            let k = assignment.kept_of[i];
            if assignment.kept[i] {
                out.index = Some(next_kept);
                next_kept += 1;
                out.outputs = 1;
            } else {
                out.status = Status::Skipped;
                out.reason = Some(format!("near duplicate of {}", crops.source(k)));
                out.detail.insert("duplicate_of".into(), json!(crops.source(k)));
                out.detail.insert("distance".into(), json!(codes[i].hamming(&codes[k as usize])));
                if let Some(c) = check.phash {
                    out.detail.insert("phash_distance".into(), json!(c.distance(i as u32, k)));
                }
                if let (Some(d), Some(r)) = (check.window_distance(i as u32, k), check.correlation(i as u32, k)) {
                    out.detail.insert("window_phash_distance".into(), json!(d));
                    out.detail.insert("correlation".into(), json!(r));
                }
                out.detail
                    .insert("found_by".into(), json!(if check.by_code(i as u32, k) { "code" } else { "windows" }));
            }
        }
        manifest.push(out);
    }
    fsutil::write_atomic(&output.join("manifest.jsonl"), &encode_manifest(&manifest))?;
    // One JSON string a line: a name holding a newline stays one line.
    let mut kept_list = Vec::new();
    for i in (0..crops.len() as u32).filter(|&i| assignment.kept[i as usize]) {
        serde_json::to_writer(&mut kept_list, crops.source(i))?;
        kept_list.push(b'\n');
    }
    fsutil::write_atomic(&output.join(KEPT_FILE), &kept_list)?;
    Ok(())
}

/// Clusters of two or more, largest first, as JSONL.
fn write_clusters(output: &Path, crops: &CropSet, hashes: &Hashes, assignment: &Assignment) -> Result<()> {
    let codes = &hashes.codes;
    let mut text = Vec::new();
    for members in &assignment.multi {
        let k = assignment.kept_of[members[0] as usize];
        let list: Vec<Value> = members
            .iter()
            .map(|&m| json!({"source": crops.source(m), "crop_index": m, "distance_to_kept": codes[m as usize].hamming(&codes[k as usize])}))
            .collect();
        let row = json!({"cluster": assignment.cluster_of[k as usize], "size": members.len(), "kept": crops.source(k), "members": list});
        serde_json::to_writer(&mut text, &row)?;
        text.push(b'\n');
    }
    fsutil::write_atomic(&output.join("clusters.jsonl"), &text)?;
    Ok(())
}

/// The candidate pairs with their distances and, with a check, whether they pass it.
fn write_pairs(
    output: &Path,
    crops: &CropSet,
    check: &Check,
    pairs: &[NearPair],
    progress: &Progress,
) -> Result<OutputCounts> {
    let mut text = Vec::new();
    let mut counts = OutputCounts { failed_check: 0, window_pairs_passing: 0 };
    for p in pairs {
        let mut row = json!({"a": crops.source(p.a), "b": crops.source(p.b), "crop_a": p.a, "crop_b": p.b, "distance": p.distance});
        if let Some(c) = check.phash {
            row["phash_distance"] = json!(c.distance(p.a, p.b));
        }
        if let (Some(d), Some(r)) = (check.window_distance(p.a, p.b), check.correlation(p.a, p.b)) {
            row["window_phash_distance"] = json!(d);
            row["correlation"] = json!(r);
            counts.window_pairs_passing += usize::from(check.by_windows(p.a, p.b));
        }
        if check.is_on() {
            let passed = check.same(p.a, p.b);
            counts.failed_check += usize::from(!passed);
            row["passes_check"] = json!(passed);
        }
        serde_json::to_writer(&mut text, &row)?;
        text.push(b'\n');
        progress.inc(1);
    }
    fsutil::write_atomic(&output.join("pairs.jsonl"), &text)?;
    Ok(counts)
}

/// The page for visual inspection: the largest clusters, then pairs. With a check, most pairs
/// near the radius fail it; the pairs that pass (the removals' evidence, at any distance above 0)
/// come first, up to half the page, then pairs near the radius.
fn write_page(
    config: &DedupeConfig,
    output: &Path,
    crops: &CropSet,
    check: &Check,
    assignment: &Assignment,
    pairs: &[NearPair],
) -> Result<()> {
    let near_radius =
        crate::dedupe::report::pairs_near_radius(pairs, config.radius, config.report_pairs, config.seed as u64);
    let shown_pairs = if check.is_on() {
        let passing: Vec<NearPair> = pairs.iter().filter(|p| p.distance > 0 && check.same(p.a, p.b)).copied().collect();
        let mut shown = crate::dedupe::report::random_pairs(passing, config.report_pairs / 2, config.seed as u64);
        shown.sort_by_key(|p| std::cmp::Reverse(p.distance));
        shown.extend(near_radius.into_iter().filter(|p| !check.same(p.a, p.b)).take(config.report_pairs - shown.len()));
        shown
    } else {
        near_radius
    };
    let page = crate::dedupe::report::Page {
        title: format!("dedupe: {} images, {} kept, radius {}", crops.len(), assignment.kept_count(), config.radius),
        side: config.size,
        radius: config.radius,
        clusters: assignment
            .multi
            .iter()
            .take(config.report_clusters)
            .map(|m| crate::dedupe::report::ClusterView {
                members: m.iter().take(48).copied().collect(),
                size: m.len(),
                kept: assignment.kept_of[m[0] as usize],
            })
            .collect(),
        check: check.is_on().then(|| {
            let radius = check.phash.map_or(config.window_phash_radius, |c| c.radius);
            (radius, shown_pairs.iter().map(|p| (check.shown_distance(p.a, p.b), check.same(p.a, p.b))).collect())
        }),
        pairs: shown_pairs,
    };
    let images = crops.read(&page.images())?;
    let html = page.render(&images, &|i| crops.source(i).to_owned());
    fsutil::write_atomic(&output.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// Size and sha256 of the packed outputs (what train reads and checks), read back once written.
fn packed_records(output: &Path) -> Result<crate::integrity::FileRecords> {
    let mut files = crate::integrity::FileRecords::new();
    for name in ["images-00000.npy", "labels.npy", crate::data::packed::CLASSES_FILE, "manifest.jsonl"] {
        let path = output.join(name);
        if !path.exists() {
            continue;
        }
        let mut record = crate::integrity::FileRecord::of_file(&path)
            .with_context(|| format!("{}: cannot read back", path.display()))?;
        if name.ends_with(".npy") {
            record = record.with_rows(npy::read_header(&path)?.shape[0]);
        }
        files.insert(name.to_owned(), record);
    }
    Ok(files)
}
