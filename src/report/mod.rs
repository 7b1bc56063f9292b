//! The run report: one self-contained HTML page for a run folder whose subfolders are stage
//! outputs (faces, dedupe, crop, train, cifar-eval: recognised by their summary.json's "stage"),
//! with a section per stage, images embedded as data URIs, and every stage's timings and config.
//! A stage that did not run gets a line saying so, never an error.
//!
//! The page's structure is templates/report.html (askama: everything printed is escaped); this
//! module reads the stage outputs into the plain values the template shows.

use std::path::{Path, PathBuf};

use askama::Template;
use serde_json::Value;

mod cifar;
mod copying;
mod dedupe;
mod digits;
mod faces;
mod images;
mod sample;
mod train;

use cifar::{cifar_view, CifarView};
use dedupe::{dedupe_view, DedupeView};
use digits::{digits_view, DigitsView};
use images::{crop_view, faces_view, ImagesView};
use sample::{sample_view, SampleView};
use train::{train_view, TrainView};

use crate::data::packed::read_packed;
use crate::pictures::data_uri::rgb_data_uri;
use crate::pictures::grid::tile_grid;

/// The sections in pipeline order: (section id, heading, the summary.json "stage"s it shows).
/// `sample` (pictures from a trained generator) and `digits-eval` (the digits demo's checks) sit
/// with the training run they look at.
pub const SECTIONS: [(&str, &str, &[&str]); 5] = [
    ("faces", "Faces: detected, cropped, resized", &["faces"]),
    ("dedupe", "Dedupe: near-duplicate clusters", &["dedupe"]),
    ("crop", "Crop: 32x32 min-resized center crops", &["crop"]),
    ("train", "Train: the DCGAN", &["train", "sample", "digits-eval"]),
    ("cifar-eval", "CIFAR-10: discriminator features + L2-SVM", &["cifar-eval"]),
];

/// One stage's output folder and its summary.json.
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub stage: String,
    pub dir: PathBuf,
    /// The folder relative to the run folder ("" for the run folder itself), for links.
    pub relative: String,
    pub summary: Value,
}

/// `run` itself, then the folders directly under it in name order: where stage outputs may be.
fn stage_dirs(run: &Path) -> impl Iterator<Item = PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    std::iter::once(run.to_path_buf()).chain(dirs)
}

/// The stage folders directly under `run` (and `run` itself), by their summary.json, in name order.
pub fn find_stages(run: &Path) -> Vec<StageOutput> {
    stage_dirs(run)
        .filter_map(|dir| {
            let summary: Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).ok()?).ok()?;
            let stage = summary.get("stage")?.as_str()?.to_string();
            let relative = dir.strip_prefix(run).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            Some(StageOutput { stage, dir, relative, summary })
        })
        .collect()
}

/// The summary.json files under `run` (where [`find_stages`] looks) that exist but cannot be read
/// as JSON, or whose "stage" names no stage the page shows (`42`, an array, `{}`), each with the
/// reason: their stage's section is missing, which the page and the log must say rather than
/// drop it without a word.
pub fn unreadable_summaries(run: &Path) -> Vec<(PathBuf, String)> {
    stage_dirs(run)
        .map(|dir| dir.join("summary.json"))
        .filter(|path| path.exists())
        .filter_map(|path| {
            let why = match std::fs::read(&path) {
                Err(e) => format!("unreadable ({e})"),
                Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Err(e) => format!("unreadable ({e})"),
                    Ok(summary) => not_a_stage(&summary)?,
                },
            };
            Some((path, why))
        })
        .collect()
}

/// Why a summary that parses is no stage's the page shows; None when it is one.
fn not_a_stage(summary: &Value) -> Option<String> {
    let known: Vec<&str> = SECTIONS.iter().flat_map(|(_, _, stages)| stages.iter().copied()).collect();
    let why = match summary.get("stage") {
        _ if !summary.is_object() => format!("a JSON {}, not an object", json_kind(summary)),
        None => "no \"stage\" in it".to_owned(),
        Some(Value::String(name)) if known.contains(&name.as_str()) => return None,
        Some(Value::String(name)) => format!("its \"stage\" {name:?} is none of {}", known.join(", ")),
        Some(other) => format!("its \"stage\" is {other}, not a stage's name"),
    };
    Some(format!("not a stage's summary: {why}"))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The page (templates/report.html).
#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    title: &'a str,
    run: String,
    nav: Vec<(&'static str, &'static str)>,
    overview: Vec<OverviewRow>,
    /// summary.json files that could not be read: (path, why); their sections are missing.
    unreadable: Vec<(String, String)>,
    sections: Vec<SectionView>,
    timings: Vec<TimingsView>,
}

struct OverviewRow {
    id: &'static str,
    stage: String,
    /// None: the stage did not run.
    output: Option<String>,
    wall: String,
}

struct SectionView {
    id: &'static str,
    heading: &'static str,
    outputs: Vec<OutputView>,
    /// The CIFAR-10 section's table and confusion matrices.
    cifar: Option<CifarView>,
}

struct OutputView {
    dir: String,
    view: StageView,
}

enum StageView {
    Faces(ImagesView),
    Crop(ImagesView),
    Dedupe(DedupeView),
    Train(TrainView),
    Sample(SampleView),
    Digits(DigitsView),
    /// Only the output line (cifar-eval: its numbers are in one table for all outputs).
    Listed,
}

struct Figure {
    label: &'static str,
    value: String,
}

struct Sheet {
    uri: String,
    max_width: u32,
    caption: String,
}

struct Problems {
    what: &'static str,
    total: usize,
    shown: Vec<(String, String)>,
    more: usize,
}

struct TimingsView {
    stage: String,
    folder: Option<String>,
    steps: Vec<(String, String)>,
    wall: Option<String>,
    config: String,
}

/// Renders the page for `run`.
pub fn render(run: &Path, title: &str) -> String {
    let stages = find_stages(run);
    let sections = SECTIONS
        .iter()
        .map(|&(id, heading, names)| {
            let found: Vec<&StageOutput> =
                names.iter().flat_map(|n| stages.iter().filter(move |s| s.stage == *n)).collect();
            let outputs = found
                .iter()
                .map(|s| OutputView {
                    dir: s.dir.display().to_string(),
                    view: match s.stage.as_str() {
                        "faces" => StageView::Faces(faces_view(s)),
                        "crop" => StageView::Crop(crop_view(s)),
                        "dedupe" => StageView::Dedupe(dedupe_view(s)),
                        "train" => StageView::Train(train_view(s)),
                        "sample" => StageView::Sample(sample_view(s)),
                        "digits-eval" => StageView::Digits(digits_view(s)),
                        _ => StageView::Listed,
                    },
                })
                .collect();
            let cifar = (id == "cifar-eval" && !found.is_empty()).then(|| cifar_view(&found));
            SectionView { id, heading, outputs, cifar }
        })
        .collect();
    let page = ReportPage {
        title,
        run: run.display().to_string(),
        nav: SECTIONS.iter().map(|&(id, heading, _)| (id, heading.split(':').next().unwrap_or(heading))).collect(),
        overview: overview(&stages),
        unreadable: unreadable_summaries(run).into_iter().map(|(p, why)| (p.display().to_string(), why)).collect(),
        sections,
        timings: stages.iter().map(timings_view).collect(),
    };
    page.render().expect("the report template renders (it has no fallible parts)")
}

/// Writes `<run>/report.html` (atomically) and returns its path.
pub fn write_report(run: &Path, title: &str) -> std::io::Result<PathBuf> {
    let path = run.join("report.html");
    crate::fsutil::write_atomic(&path, render(run, title).as_bytes())?;
    Ok(path)
}

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn count(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_f64).map_or("-".into(), |x| format!("{}", x as i64))
}

/// A number, or the sum of an object's numbers (e.g. rejects by reason).
fn sum_of(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::Object(m)) => format!("{}", m.values().filter_map(Value::as_f64).sum::<f64>() as i64),
        _ => count(v, pointer),
    }
}

fn figure(label: &'static str, value: String) -> Figure {
    Figure { label, value }
}

/// The first `limit` images of a packed set as a contact sheet, or None when there is none.
fn contact_sheet(dir: &Path, limit: usize, cols: usize, what: &str) -> Option<Sheet> {
    let set = read_packed(dir).ok()?;
    if set.is_empty() || set.height != set.width {
        return None;
    }
    let tiles: Vec<&[u8]> = (0..set.len().min(limit)).map(|i| set.image(i)).collect();
    // As many columns as tiles when there are few, so that three faces make one short row.
    let grid = tile_grid(&tiles, set.width, set.height, cols.min(tiles.len()), 1, 1);
    Some(Sheet {
        uri: rgb_data_uri(grid.as_raw(), grid.width(), grid.height()),
        // At most twice the natural size: a sheet of three faces should not fill the page.
        max_width: 2 * grid.width(),
        caption: format!("The first {} of {} {what}, in input order.", tiles.len(), set.len()),
    })
}

/// Manifest rows that are not "ok", the first `limit` as (source, why).
fn problems(dir: &Path, what: &'static str, limit: usize) -> Problems {
    let text = std::fs::read_to_string(dir.join("manifest.jsonl")).unwrap_or_default();
    let mut total = 0;
    let mut shown = Vec::new();
    for row in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let status = row.get("status").and_then(Value::as_str).unwrap_or("").to_string();
        if status == "ok" || status == "kept" {
            continue;
        }
        total += 1;
        if shown.len() < limit {
            let field = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let reason = [field("reason"), field("error")].into_iter().find(|s| !s.is_empty()).unwrap_or(status);
            shown.push((field("source"), reason));
        }
    }
    Problems { what, total, more: total.saturating_sub(limit), shown }
}

/// A stage's wall time in seconds, from whichever field its summary keeps it in.
fn wall_seconds(s: &StageOutput) -> Option<f64> {
    let v = &s.summary;
    if let Some(shards) = v.get("shards").and_then(Value::as_array) {
        return Some(shards.iter().filter_map(|x| num(x.get("wall_s"))).sum());
    }
    if let Some(t) = num(v.pointer("/report/wall_s")) {
        return Some(t);
    }
    if let Some(t) = v.get("timings_s").and_then(Value::as_object) {
        return Some(t.values().filter_map(Value::as_f64).sum());
    }
    let m: Value = std::fs::read(s.dir.join("metrics.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())?;
    num(m.pointer("/timings_s/total"))
}

fn overview(stages: &[StageOutput]) -> Vec<OverviewRow> {
    let mut rows = Vec::new();
    for (id, _, names) in SECTIONS {
        for name in names {
            let found: Vec<&StageOutput> = stages.iter().filter(|s| s.stage == *name).collect();
            // A stage that only adds to another's section (sample) is not listed as missing.
            if found.is_empty() && *name == names[0] {
                rows.push(OverviewRow { id, stage: name.to_string(), output: None, wall: String::new() });
            }
            for s in found {
                rows.push(OverviewRow {
                    id,
                    stage: name.to_string(),
                    output: Some(s.dir.display().to_string()),
                    wall: wall_seconds(s).map_or("-".into(), |t| format!("{t:.1} s")),
                });
            }
        }
    }
    rows
}

fn timings_view(s: &StageOutput) -> TimingsView {
    let timings = s.summary.get("timings_s").or_else(|| s.summary.get("timings")).and_then(Value::as_object);
    let steps = timings
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_f64().map_or(v.to_string(), |x| format!("{x:.2}"))))
        .collect();
    let config = std::fs::read_to_string(s.dir.join("config.toml")).unwrap_or_else(|_| {
        s.summary.get("config").map(|c| serde_json::to_string_pretty(c).unwrap_or_default()).unwrap_or_default()
    });
    TimingsView {
        stage: s.stage.clone(),
        folder: (!s.relative.is_empty()).then(|| s.relative.clone()),
        steps,
        wall: wall_seconds(s).map(|t| format!("{t:.1} s")),
        config,
    }
}
