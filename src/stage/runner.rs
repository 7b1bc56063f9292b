//! The per-image stage contract, written once: inputs in a stable order, cut into parts of
//! `part_size` records; each part becomes `images-NNNNN.npy` plus `parts/manifest-NNNNN.jsonl`,
//! both written atomically, the manifest last (it marks the part done). A re-run skips done parts;
//! `--shard i/n` takes the parts p with p % n == i (shard.rs); the merge step (merge.rs) joins the
//! parts into `manifest.jsonl`, `labels.npy`, `classes.jsonl` and `summary.json`.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::manifest::{encode_manifest, read_manifest, ManifestRow, Status};
use super::merge::merge;
use super::parts::{
    done_parts, fingerprint_path, part_images, part_images_name, part_manifest, part_manifest_name, part_record,
    parts_dir, verify_part,
};
use super::progress::Progress;
use super::shard::{lock_shard, ShardSpec};
use crate::data::npy::NpyRowWriter;
use crate::data::source::{ImageSource, Record, RecordData};
use crate::fsutil;
use crate::integrity::{FileRecord, FileRecords};

/// What one input produced.
#[derive(Debug, Default)]
pub struct Processed {
    /// Output rows, each `row_shape` bytes (H x W x 3, uint8).
    pub rows: Vec<Vec<u8>>,
    /// Facts for the manifest row.
    pub detail: Map<String, Value>,
}

/// Why an input produced nothing.
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    pub reason: String,
    /// Facts for the manifest row all the same (what was looked at, what was found).
    pub detail: Map<String, Value>,
}

impl Failure {
    pub fn error(reason: impl Into<String>) -> Self {
        Self { status: Status::Error, reason: reason.into(), detail: Map::new() }
    }
}

/// A stage that turns each input image into zero or more packed output rows.
pub trait PerImageStage: Sync {
    /// The stage's name, as in the binary's.
    const NAME: &'static str;
    /// Shape of one output row: [height, width, 3].
    fn row_shape(&self) -> [u64; 3];
    fn max_file_bytes(&self) -> u64;
    /// The most bytes one worker may hold while it processes the largest photo the stage accepts
    /// (its file, the decoded pixels, the working copies), and how that was counted: the run keeps
    /// `run.threads` x this within the machine's memory.
    fn peak_bytes_per_image(&self) -> (f64, String) {
        (self.max_file_bytes() as f64, "the file".into())
    }
    fn process(&self, bytes: &[u8]) -> Result<Processed, Failure>;
    /// Writes per-input extras beside the packed rows (PNG crops, say), noting in `processed`'s
    /// detail what it wrote; runs on worker threads.
    fn save_extra(&self, _source: &str, _processed: &mut Processed) -> Result<(), String> {
        Ok(())
    }
    /// Stage-specific counts for summary.json.
    fn summarize(&self, _rows: &[ManifestRow]) -> Value {
        Value::Null
    }
}

/// Everything a run needs besides the stage.
pub struct RunSpec<'a> {
    pub source: &'a ImageSource,
    pub output: &'a Path,
    pub shard: ShardSpec,
    pub force: bool,
    pub part_size: u64,
    pub batch: usize,
    pub threads: usize,
    pub log_every_s: f64,
    /// The effective configuration, saved as config.toml; its output-shaping part is
    /// fingerprinted so that a resume never mixes parts made with different settings.
    pub config_toml: String,
    pub fingerprint: String,
}

/// What one shard's run did; saved as parts/shard-I-of-N.json for the merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardReport {
    pub shard: String,
    pub input: String,
    pub total_records: u64,
    pub part_size: u64,
    pub parts_done_before: u64,
    pub parts_written: u64,
    pub records_processed: u64,
    pub errors: u64,
    pub wall_s: f64,
    pub records_per_s: Option<f64>,
}

/// The merged result.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub stage: String,
    pub records: u64,
    pub ok: u64,
    pub skipped: u64,
    pub errors: u64,
    pub outputs: u64,
    pub summary_path: PathBuf,
}

const MAX_WARNINGS: u64 = 200;

// classes.txt: what the merge wrote before classes.jsonl; removed so no stale copy remains.
const MERGED_FILES: &[&str] = &["manifest.jsonl", "labels.npy", "classes.jsonl", "classes.txt", "summary.json"];

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove", path.display()))
        }
        _ => Ok(()),
    }
}

/// A temporary of a part older than this, whoever wrote it, is a leftover of a killed run.
const ORPHAN_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Clears what killed runs left half-written in `dir`: the temporaries of this shard's parts (we
/// hold their lock, so no live run writes them), and any other temporary old enough to be an orphan.
/// Other shards' temporaries are theirs: shards start side by side in one folder.
fn remove_stale_temporaries(dir: &Path, shard: ShardSpec) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(fsutil::TMP_SUFFIX)) else { continue };
        let target = inner.rsplit_once('.').map_or(inner, |(target, _pid)| target);
        let part = target
            .strip_prefix("images-")
            .and_then(|n| n.strip_suffix(".npy"))
            .or_else(|| target.strip_prefix("manifest-").and_then(|n| n.strip_suffix(".jsonl")))
            .or_else(|| target.strip_prefix("files-").and_then(|n| n.strip_suffix(".json")))
            .and_then(|n| n.parse::<u64>().ok());
        let orphan = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ORPHAN_AFTER)
        };
        if part.is_some_and(|p| shard.owns_part(p)) || orphan() {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// something else, clears what `--force` redoes and what an interrupted run left half-written.
fn prepare_output(spec: &RunSpec) -> Result<()> {
    let output = spec.output;
    std::fs::create_dir_all(parts_dir(output))
        .with_context(|| format!("{}: cannot create the output folder", output.display()))?;
    remove_stale_temporaries(output, spec.shard)?;
    remove_stale_temporaries(&parts_dir(output), spec.shard)?;
    let previous = std::fs::read_to_string(fingerprint_path(output)).ok();
    let ours = |name: &str| {
        name == "parts" || name == "config.toml" || name.starts_with("images-") || MERGED_FILES.contains(&name)
    };
    if previous.is_none() && !spec.force {
        let foreign: Vec<String> = std::fs::read_dir(output)?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| ours(n))
            .filter(|n| n != "parts")
            .collect();
        if !foreign.is_empty() {
            bail!(
                "{}: holds {} that this pipeline did not record writing; choose an empty folder or pass --force",
                output.display(),
                foreign.join(", ")
            );
        }
    }
    let same_settings = previous.as_deref().is_none_or(|p| p.trim() == spec.fingerprint);
    if !same_settings && !spec.force {
        bail!(
            "{}: holds outputs made with different settings (see its config.toml); \
             pass --force to redo them or choose another --output",
            output.display()
        );
    }
    if spec.force {
        // Settings changed: every part is stale. Same settings: redo only this shard's parts,
        // since other shards may be running beside us.
        let parts: Vec<u64> = done_parts(output)?.into_iter().collect();
        for part in parts {
            if !same_settings || spec.shard.owns_part(part) {
                remove_if_present(&part_manifest(output, part))?;
                remove_if_present(&part_record(output, part))?;
                remove_if_present(&part_images(output, part))?;
            }
        }
        if spec.shard.is_whole() || !same_settings {
            for entry in std::fs::read_dir(output)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.starts_with("images-") && name.ends_with(".npy") {
                    remove_if_present(&output.join(name))?;
                }
            }
        }
        // Redone on request: what was merged from the old parts goes. Without --force the merged
        // files stay until the merge replaces them, so a run that fails keeps them.
        for name in MERGED_FILES {
            remove_if_present(&output.join(name))?;
        }
    }
    fsutil::write_atomic(&fingerprint_path(output), spec.fingerprint.as_bytes())?;
    fsutil::write_atomic(&output.join("config.toml"), spec.config_toml.as_bytes())?;
    Ok(())
}

/// The part being written.
struct OpenPart {
    number: u64,
    writer: NpyRowWriter,
    rows: Vec<ManifestRow>,
}

/// The part being walked past because an earlier run finished it.
struct DonePart {
    number: u64,
    sources: Vec<String>,
    seen: usize,
}

struct Walk<'a, S: PerImageStage> {
    stage: &'a S,
    spec: &'a RunSpec<'a>,
    pool: rayon::ThreadPool,
    progress: Progress,
    done: BTreeSet<u64>,
    open: Option<OpenPart>,
    done_part: Option<DonePart>,
    /// Records with their occurrence of the name (1, or n for the n-th record of a repeated name).
    batch: Vec<(Record, u32)>,
    /// How often each name has come (hashed), for sources that can repeat one (archives).
    names: Option<std::collections::HashMap<u128, u32>>,
    report: ShardReport,
    failure: Option<anyhow::Error>,
}

/// An input as a person finds it: the file's path, or archive:entry.
fn describe(source: &ImageSource, name: &str) -> String {
    match source {
        ImageSource::Folder { root, .. } => root.join(name).display().to_string(),
        other => format!("{}:{name}", other.path().display()),
    }
}

impl<'a, S: PerImageStage> Walk<'a, S> {
    fn process_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let stage = self.stage;
        let max_bytes = stage.max_file_bytes();
        let batch = std::mem::take(&mut self.batch);
        let progress = &self.progress;
        let results: Vec<Result<Processed, Failure>> = self.pool.install(|| {
            batch
                .par_iter()
                .map(|(record, occurrence)| {
                    let bytes = load_record(record, max_bytes)?;
                    // A bug that panics on one odd input must not end a run of a million.
                    let processed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.process(&bytes)))
                        .unwrap_or_else(|panic| {
                            Err(Failure::error(format!("internal error: {}", panic_message(&panic))))
                        })?;
                    let mut processed = processed;
                    // Outputs named after the source stay apart for a repeated name.
                    let key = match occurrence {
                        1 => std::borrow::Cow::Borrowed(&record.name),
                        n => std::borrow::Cow::Owned(crate::data::names::nth_occurrence(&record.name, *n)),
                    };
                    stage.save_extra(&key, &mut processed).map_err(Failure::error)?;
                    Ok(processed)
                })
                .inspect(|_| progress.inc(1))
                .collect()
        });
        let open = self.open.as_mut().expect("a batch belongs to an open part");
        for ((record, occurrence), result) in batch.into_iter().zip(results) {
            let mut row = ManifestRow {
                source: record.name,
                class: record.class,
                status: Status::Ok,
                reason: None,
                part: open.number,
                index: None,
                outputs: 0,
                detail: Map::new(),
            };
            match result {
                Ok(processed) => {
                    for (i, out) in processed.rows.iter().enumerate() {
                        let at = open.writer.push_row(out)?;
                        if i == 0 {
                            row.index = Some(at);
                        }
                    }
                    row.outputs = processed.rows.len() as u32;
                    row.detail = processed.detail;
                }
                Err(failure) => {
                    if failure.status == Status::Error {
                        self.report.errors += 1;
                        if self.report.errors <= MAX_WARNINGS {
                            self.progress.note(&format!(
                                "warning: {}: {}",
                                describe(self.spec.source, &row.source),
                                failure.reason
                            ));
                        } else if self.report.errors == MAX_WARNINGS + 1 {
                            self.progress.note("further bad inputs are only listed in the manifest");
                        }
                    }
                    row.status = failure.status;
                    row.reason = Some(failure.reason);
                    row.detail = failure.detail;
                }
            }
            if occurrence > 1 {
                let note =
                    format!("member {occurrence} of this name in the input: a row of its own, its outputs named apart");
                self.progress.note(&format!("warning: {}: {note}", describe(self.spec.source, &row.source)));
                row.detail.insert("duplicate".into(), json!(note));
            }
            open.rows.push(row);
            self.report.records_processed += 1;
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        self.process_batch()?;
        if let Some(open) = self.open.take() {
            write_part_files(self.spec.output, open)?;
            self.report.parts_written += 1;
        }
        if let Some(done) = self.done_part.take() {
            if done.seen != done.sources.len() {
                bail!(input_changed(self.spec, done.number));
            }
        }
        Ok(())
    }

    fn visit(&mut self, record: Record) -> Result<()> {
        let occurrence = self.names.as_mut().map_or(1, |names| {
            let seen = names.entry(name_hash(&record.name)).or_insert(0);
            *seen += 1;
            *seen
        });
        let part = record.index / self.spec.part_size;
        self.report.total_records = record.index + 1;
        let current = self.open.as_ref().map(|p| p.number).or(self.done_part.as_ref().map(|p| p.number));
        if current.is_some_and(|c| c != part) {
            self.close_part()?;
        }
        if !self.spec.shard.owns_part(part) {
            return Ok(());
        }
        if self.done.contains(&part) {
            // Finished by an earlier run: check that the input still lists the same records.
            if self.done_part.is_none() {
                let rows = read_manifest(&part_manifest(self.spec.output, part))?;
                self.done_part =
                    Some(DonePart { number: part, sources: rows.into_iter().map(|r| r.source).collect(), seen: 0 });
            }
            let done = self.done_part.as_mut().expect("set above");
            if done.sources.get(done.seen) != Some(&record.name) {
                bail!(input_changed(self.spec, part));
            }
            done.seen += 1;
            self.progress.inc(1);
            return Ok(());
        }
        if self.open.is_none() {
            let [h, w, c] = self.stage.row_shape();
            let writer = NpyRowWriter::create_u8(&part_images(self.spec.output, part), &[h, w, c])?;
            self.open = Some(OpenPart { number: part, writer, rows: Vec::new() });
        }
        self.batch.push((record, occurrence));
        if self.batch.len() >= self.spec.batch {
            self.process_batch()?;
        }
        Ok(())
    }
    /// Visits every record this run still needs. The source is read on a thread of its own, up to two
    /// batches ahead, so that reading an archive (inflating, parsing) overlaps the decoding of the
    /// batch before instead of idling the workers.
    fn read_source(&mut self) -> Result<()> {
        let spec = self.spec;
        // A copy, since the visitor borrows `self` mutably.
        let done_before = self.done.clone();
        let wanted = |index: u64| {
            let part = index / spec.part_size;
            spec.shard.owns_part(part) && !done_before.contains(&part)
        };
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Record>(spec.batch.saturating_mul(2).max(1));
        let max_bytes = self.stage.max_file_bytes();
        let walked = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                spec.source.for_each_record(&wanted, max_bytes, &mut |record| match sender.send(record) {
                    Ok(()) => ControlFlow::Continue(()),
                    // The receiving side stopped on an error of its own.
                    Err(_) => ControlFlow::Break(()),
                })
            });
            for record in &receiver {
                if let Err(e) = self.visit(record) {
                    self.failure = Some(e);
                    break;
                }
            }
            drop(receiver);
            reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        walked?;
        match self.failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// 128 bits of a name, enough to tell a repeat from a collision among billions of names.
fn name_hash(name: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        (salt, name).hash(&mut hasher);
        hasher.finish() as u128
    };
    (half(0) << 64) | half(1)
}

/// Finishes a part: its images, the record of its files, then its manifest (which marks it done).
fn write_part_files(output: &Path, open: OpenPart) -> Result<()> {
    let part = open.number;
    let images = open.writer.finish_recorded()?;
    let manifest = encode_manifest(&open.rows);
    let record: FileRecords =
        [(part_images_name(part), images), (part_manifest_name(part), FileRecord::of_bytes(&manifest))].into();
    let record_path = part_record(output, part);
    fsutil::write_atomic(&record_path, &serde_json::to_vec_pretty(&record)?)?;
    let path = part_manifest(output, part);
    Ok(fsutil::write_atomic(&path, &manifest)?)
}

/// This shard's finished parts that check out; a damaged one (a file altered, a manifest that does
/// not parse) is left out, so the walk redoes it, with a note naming the file.
fn intact_done_parts(spec: &RunSpec, done: BTreeSet<u64>, progress: &Progress) -> BTreeSet<u64> {
    let mut unrecorded = 0;
    let mut intact = BTreeSet::new();
    for part in done {
        if !spec.shard.owns_part(part) {
            intact.insert(part);
            continue;
        }
        match verify_part(spec.output, part, "redoing the part") {
            Ok(checked) => {
                unrecorded += usize::from(checked.images_record.is_none());
                intact.insert(part);
            }
            Err(e) => progress.note(&format!("warning: {e}")),
        }
    }
    if unrecorded > 0 {
        progress.note(&format!(
            "note: {unrecorded} finished parts were written before their files' sizes and sha256 were recorded; \
             resumed unverified"
        ));
    }
    intact
}

/// A record's bytes, or why it has none: a skipped row for a record not read on purpose (a
/// hidden file), a failed row for one that cannot be read.
fn load_record(record: &Record, max_bytes: u64) -> Result<std::borrow::Cow<'_, [u8]>, Failure> {
    if let RecordData::Skipped(reason) = &record.data {
        return Err(Failure { status: Status::Skipped, reason: reason.clone(), detail: Map::new() });
    }
    record.load(max_bytes).map_err(Failure::error)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

fn input_changed(spec: &RunSpec, part: u64) -> String {
    format!(
        "{}: the input no longer lists the records that part {part} of {} was made from; \
         pass --force to redo the output or choose another --output",
        spec.source.path().display(),
        spec.output.display()
    )
}

/// Runs this process's shard of a per-image stage; merges when it is the whole run.
pub fn run_per_image<S: PerImageStage>(stage: &S, spec: &RunSpec) -> Result<(ShardReport, Option<RunSummary>)> {
    let started = Instant::now();
    let _lock = lock_shard(spec.output, spec.shard, S::NAME)?;
    prepare_output(spec)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(spec.threads).build()?;
    let total = spec.source.len_hint().map(|n| {
        // Records in this shard's parts.
        (0..n.div_ceil(spec.part_size))
            .filter(|p| spec.shard.owns_part(*p))
            .map(|p| (n - p * spec.part_size).min(spec.part_size))
            .sum()
    });
    let label = if spec.shard.is_whole() { S::NAME.to_owned() } else { format!("{} shard {}", S::NAME, spec.shard) };
    let report = ShardReport {
        shard: spec.shard.to_string(),
        input: spec.source.path().display().to_string(),
        total_records: 0,
        part_size: spec.part_size,
        parts_done_before: 0,
        parts_written: 0,
        records_processed: 0,
        errors: 0,
        wall_s: 0.0,
        records_per_s: None,
    };
    let progress = Progress::new(&label, total, spec.log_every_s);
    let done = intact_done_parts(spec, done_parts(spec.output)?, &progress);
    let mut walk = Walk {
        stage,
        spec,
        pool,
        progress,
        done,
        open: None,
        done_part: None,
        batch: Vec::with_capacity(spec.batch),
        // A folder's paths and an LMDB's keys are unique; an archive may repeat a name.
        names: (!matches!(spec.source, ImageSource::Folder { .. } | ImageSource::Lmdb { .. }))
            .then(std::collections::HashMap::new),
        report,
        failure: None,
    };
    walk.report.parts_done_before = walk.done.iter().filter(|p| spec.shard.owns_part(**p)).count() as u64;
    if walk.report.parts_done_before > 0 {
        walk.progress.note(&format!("resuming: {} parts already done", walk.report.parts_done_before));
    }
    walk.read_source()?;
    walk.close_part()?;
    walk.progress.finish();
    let mut report = walk.report;
    report.wall_s = started.elapsed().as_secs_f64();
    if report.records_processed > 0 {
        report.records_per_s = Some(report.records_processed as f64 / report.wall_s);
    }
    let shard_file = parts_dir(spec.output).join(format!("shard-{}-of-{}.json", spec.shard.index, spec.shard.count));
    fsutil::write_atomic(&shard_file, &serde_json::to_vec_pretty(&report)?)?;
    let summary = if spec.shard.is_whole() { Some(merge::<S>(stage, spec.output)?) } else { None };
    Ok((report, summary))
}
