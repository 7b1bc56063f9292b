//! `--merge`: the parts of every shard joined into the final outputs (`manifest.jsonl`,
//! `labels.npy`, `classes.jsonl`, `summary.json`), written all or none once every part checks out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::lock::live_locks;
use super::manifest::{encode_manifest, ManifestRow, Status};
use super::parts::{done_parts, fingerprint_path, part_images, part_images_name, parts_dir, verify_part, CheckedPart};
use super::runner::{PerImageStage, RunSummary, ShardReport};
use crate::data::{npy, packed};
use crate::fsutil;
use crate::integrity::{FileRecord, FileRecords};

/// The report of every shard that has finished.
fn read_shard_reports(output: &Path) -> Result<Vec<ShardReport>> {
    let mut reports = Vec::new();
    for entry in std::fs::read_dir(parts_dir(output))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with("shard-") && name.ends_with(".json") {
            let text = std::fs::read_to_string(&path)?;
            let report: ShardReport =
                serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
            reports.push(report);
        }
    }
    Ok(reports)
}

/// The first shard's report, once every shard is found to have seen the same input.
fn shards_agree(reports: &[ShardReport], output: &Path) -> Result<ShardReport> {
    let Some(first) = reports.first().cloned() else {
        bail!("{}: no shard has finished yet", output.display());
    };
    let (total, part_size) = (first.total_records, first.part_size);
    if let Some(other) = reports.iter().find(|r| r.total_records != total || r.part_size != part_size) {
        bail!(
            "{}: shards saw different inputs ({} records in shard {}, {} in shard {})",
            output.display(),
            total,
            first.shard,
            other.total_records,
            other.shard
        );
    }
    Ok(first)
}

/// Fails, naming the missing parts (and the shards still running), unless all `parts` are done.
fn every_part_done(output: &Path, parts: u64) -> Result<()> {
    let done = done_parts(output)?;
    let missing: Vec<u64> = (0..parts).filter(|p| !done.contains(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing.iter().take(10).map(|p| p.to_string()).collect();
    let running: Vec<String> =
        live_locks(&parts_dir(output), "lock-shard-").into_iter().map(|(_, h)| h.describe()).collect();
    bail!(
        "{}: {} of {parts} parts are not done yet (parts {}{}); {}finish every shard, then merge",
        output.display(),
        missing.len(),
        shown.join(", "),
        if missing.len() > 10 { ", ..." } else { "" },
        if running.is_empty() { String::new() } else { format!("still running: {}; ", running.join(", ")) }
    )
}

/// The parts' manifests joined in order (each row's index into the images made global), checked
/// against their images' files.
struct JoinedParts {
    rows: Vec<ManifestRow>,
    /// Output rows in all.
    outputs: u64,
    image_files: Vec<String>,
    /// Each images file's record.
    files: FileRecords,
}

/// Every part checked (see [`verify_part`]) and joined; nothing is written, so a damaged part
/// fails the merge before any merged output is touched.
fn join_parts(output: &Path, parts: u64, total: u64, row_shape: [u64; 3], stage: &str) -> Result<JoinedParts> {
    let mut rows: Vec<ManifestRow> = Vec::with_capacity(total as usize);
    let mut offset = 0u64;
    let mut image_files = Vec::new();
    let mut files = FileRecords::new();
    for part in 0..parts {
        let images = part_images(output, part);
        let fix = format!(
            "re-run `{stage}` with the same --input and --output (and the --shard that holds part {part}): \
             it redoes a damaged part; then --merge"
        );
        let CheckedPart { images_record, rows: mut part_rows, shape } = verify_part(output, part, &fix)?;
        let images_record = match images_record {
            Some(record) => record,
            None => FileRecord::of_file(&images)
                .with_context(|| format!("{}: unreadable", images.display()))?
                .with_rows(shape[0]),
        };
        if shape[1..] != row_shape {
            bail!("{}: rows of shape {:?}, expected {:?}", images.display(), &shape[1..], row_shape);
        }
        // verify_part checked that the manifest's outputs add up to the images' rows.
        let outputs = shape[0];
        files.insert(part_images_name(part), images_record);
        for row in &mut part_rows {
            row.index = row.index.map(|i| i + offset);
        }
        offset += outputs;
        rows.append(&mut part_rows);
        image_files.push(images.file_name().unwrap_or_default().to_string_lossy().into_owned());
    }
    Ok(JoinedParts { rows, outputs: offset, image_files, files })
}

/// labels.npy's and classes.jsonl's bytes, and the classes. Classes are sorted by name (ImageNet's
/// wnid order), over every input so that a class whose images all failed still keeps its number.
fn encode_labels(joined: &JoinedParts) -> (Vec<u8>, Vec<u8>, Vec<String>) {
    let rows = &joined.rows;
    let classes: Vec<String> =
        rows.iter().filter_map(|r| r.class.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let class_id: BTreeMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
    let mut labels = Vec::with_capacity(joined.outputs as usize);
    for row in rows {
        let label = row.class.as_deref().map_or(-1, |c| class_id[c]);
        labels.extend(std::iter::repeat_n(label, row.outputs as usize));
    }
    let labels_npy = npy::to_bytes(&[labels.len() as u64], &labels);
    (labels_npy, packed::encode_classes(&classes), classes)
}

/// Writes every file under a temporary name first and renames them into place only once all are
/// written, so a failure (a full disk) leaves the previous outputs as they were; the error names
/// the file.
fn write_all_or_none(output: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    use std::io::Write;
    let mut staged = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = output.join(name);
        let cannot = || format!("{}: cannot write", path.display());
        let mut file = fsutil::AtomicFile::create(&path).with_context(cannot)?;
        file.write_all(bytes).with_context(cannot)?;
        file.sync().with_context(cannot)?;
        staged.push((path, file));
    }
    for (path, file) in staged {
        file.commit().with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// What the merged run holds, for summary.json: counts, the outputs, timings, the shards, the config.
struct MergedRun<'a> {
    output: &'a Path,
    joined: &'a JoinedParts,
    classes: &'a [String],
    row_shape: [u64; 3],
    first: &'a ShardReport,
    fingerprint: &'a str,
    /// Every file's record: the images, labels.npy, classes.jsonl, manifest.jsonl.
    files: &'a FileRecords,
}

impl MergedRun<'_> {
    fn summary_json<S: PerImageStage>(&self, stage: &S, summary: &RunSummary, mut reports: Vec<ShardReport>) -> Value {
        let rows = &self.joined.rows;
        let errors: Vec<Value> = rows
            .iter()
            .filter(|r| r.status == Status::Error)
            .take(50)
            .map(|r| json!({"source": r.source, "reason": r.reason}))
            .collect();
        let config: Value = std::fs::read_to_string(self.output.join("config.toml"))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let wall_s: f64 = reports.iter().map(|r| r.wall_s).sum();
        let processed: u64 = reports.iter().map(|r| r.records_processed).sum();
        reports.sort_by(|a, b| a.shard.cmp(&b.shard));
        json!({
            "stage": S::NAME,
            "input": self.first.input,
            "counts": {
                "records": summary.records,
                "ok": summary.ok,
                "skipped": summary.skipped,
                "error": summary.errors,
                "output_rows": summary.outputs,
            },
            "stage_counts": stage.summarize(rows),
            "errors": errors,
            "outputs": {
                "images": self.joined.image_files,
                "row_shape": self.row_shape,
                "labels": "labels.npy",
                "classes": packed::CLASSES_FILE,
                "num_classes": self.classes.len(),
                "manifest": "manifest.jsonl",
            },
            "timings": {
                "last_run_wall_s": wall_s,
                "last_run_records_processed": processed,
                "last_run_records_per_s": if wall_s > 0.0 && processed > 0 { Some(processed as f64 / wall_s) } else { None },
            },
            "files": self.files,
            "shards": reports,
            "config": config,
            "config_fingerprint": self.fingerprint.trim(),
            "versions": crate::versions_with_opencv(),
        })
    }
}

/// Joins the parts of every shard into the final outputs. Fails, naming the missing parts, while
/// any shard has not finished.
pub fn merge<S: PerImageStage>(stage: &S, output: &Path) -> Result<RunSummary> {
    let fingerprint = std::fs::read_to_string(fingerprint_path(output))
        .with_context(|| format!("{}: no parts to merge (run the stage first)", output.display()))?;
    let reports = read_shard_reports(output)?;
    let first = shards_agree(&reports, output)?;
    let parts = first.total_records.div_ceil(first.part_size);
    every_part_done(output, parts)?;
    let row_shape = stage.row_shape();
    let joined = join_parts(output, parts, first.total_records, row_shape, S::NAME)?;
    let (labels_npy, classes_jsonl, classes) = encode_labels(&joined);
    let manifest = encode_manifest(&joined.rows);
    let mut files = joined.files.clone();
    files.insert("labels.npy".into(), FileRecord::of_bytes(&labels_npy).with_rows(joined.outputs));
    files.insert(packed::CLASSES_FILE.into(), FileRecord::of_bytes(&classes_jsonl));
    files.insert("manifest.jsonl".into(), FileRecord::of_bytes(&manifest));

    let count = |s: Status| joined.rows.iter().filter(|r| r.status == s).count() as u64;
    let summary = RunSummary {
        stage: S::NAME.to_owned(),
        records: joined.rows.len() as u64,
        ok: count(Status::Ok),
        skipped: count(Status::Skipped),
        errors: count(Status::Error),
        outputs: joined.outputs,
        summary_path: output.join("summary.json"),
    };
    let merged = MergedRun {
        output,
        joined: &joined,
        classes: &classes,
        row_shape,
        first: &first,
        fingerprint: &fingerprint,
        files: &files,
    };
    let document = serde_json::to_vec_pretty(&merged.summary_json(stage, &summary, reports))?;
    write_all_or_none(
        output,
        &[
            ("labels.npy", &labels_npy),
            (packed::CLASSES_FILE, &classes_jsonl),
            ("manifest.jsonl", &manifest),
            ("summary.json", &document),
        ],
    )?;
    Ok(summary)
}
