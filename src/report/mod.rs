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

mod copying;
mod faces;

use crate::data::packed::read_packed;
use crate::pictures::data_uri::{png_file_data_uri, rgb_data_uri};
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

/// Faces and crop: counts, a contact sheet, the inputs that were left out.
struct ImagesView {
    figures: Vec<Figure>,
    sheet: Option<Sheet>,
    problems: Problems,
    /// Faces: which detector ran, with its settings.
    detector: Option<String>,
    /// Faces: photos with their boxes and landmarks drawn, and both crops of each kept face.
    drawn: Vec<faces::DrawnPhoto>,
}

struct DedupeView {
    figures: Vec<Figure>,
    /// (precision, recall) when measured on labels.
    measured: Option<(String, String)>,
    no_clusters: bool,
    clusters: Vec<ClusterView>,
    own_page: Option<String>,
}

struct ClusterView {
    size: u64,
    kept: String,
    members: Vec<Thumb>,
}

struct Thumb {
    uri: String,
    source: String,
    distance: u64,
    kept: bool,
}

struct TrainView {
    figures: Vec<Figure>,
    grids: Vec<Grid>,
    losses: Option<String>,
    /// The collapse check's verdict (absent in runs from before it), and whether it is a collapse.
    collapse: Option<String>,
    collapsed: bool,
    /// G's samples' distance to the training set by epoch (nn_distance.png).
    nn_distance: Option<String>,
}

struct Grid {
    uri: String,
    name: String,
    caption: String,
}

struct SampleView {
    about: String,
    samples: Option<String>,
    samples_caption: String,
    walk: Option<String>,
    walk_caption: String,
    /// The data-copying test, when `sample --copy-test` ran.
    copying: Option<copying::CopyingView>,
}

/// The digits demo's checks (`digits eval`): G's samples labelled by a pixel classifier, and the
/// few-label table.
struct DigitsView {
    verdict: String,
    passed: bool,
    failures: Vec<String>,
    histogram: Option<HistogramView>,
    by_class: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

struct HistogramView {
    summary: String,
    /// (digit, count, bar width in percent of the largest allowed count, over the limit).
    bars: Vec<(usize, u64, f64, bool)>,
    limit: u64,
}

struct CifarView {
    unfinished: Vec<String>,
    paper: Vec<(&'static str, &'static str, &'static str)>,
    rows: Vec<CifarRow>,
    confusions: Vec<ConfusionView>,
}

struct CifarRow {
    discriminator: String,
    relative: String,
    accuracy: String,
    few: String,
}

struct ConfusionView {
    relative: String,
    chosen_c: String,
    features: String,
    /// (name, its first four letters).
    classes: Vec<(String, String)>,
    rows: Vec<ConfusionRow>,
}

struct ConfusionRow {
    name: String,
    cells: Vec<ConfusionCell>,
    accuracy: String,
}

struct ConfusionCell {
    count: String,
    style: String,
    title: String,
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

fn faces_view(s: &StageOutput) -> ImagesView {
    let v = &s.summary;
    ImagesView {
        figures: vec![
            figure("photos read", count(v, "/counts/records")),
            figure("faces kept", count(v, "/stage_counts/kept")),
            figure("detections", count(v, "/stage_counts/detections")),
            figure("boxes rejected (too small)", sum_of(v, "/stage_counts/rejected")),
            figure("photos without a kept face", count(v, "/counts/skipped")),
            figure("unreadable", count(v, "/counts/error")),
        ],
        sheet: contact_sheet(&s.dir, 64, 8, "face crops"),
        problems: problems(&s.dir, "photos skipped or unreadable", 12),
        detector: Some(detector_line(v)),
        drawn: v["input"].as_str().map_or_else(Vec::new, |input| faces::drawn_photos(&s.dir, input, 8)),
    }
}

/// Which detector a faces run used, from its summary's config.
fn detector_line(v: &Value) -> String {
    let f = &v["config"]["faces"];
    let text = |k: &str| f[k].as_str().unwrap_or("?").to_string();
    // Thresholds are f32 in the config: two decimals, not 0.6000000238418579.
    let number = |k: &str| f[k].as_f64().map_or("?".into(), |x| format!("{}", (x * 100.0).round() / 100.0));
    match f["detector"].as_str() {
        // Runs from before the choice existed used the cascade.
        Some("haar") | None => format!(
            "Haar cascade {} (scale factor {}, min neighbours {}), crops around the boxes",
            text("cascade"),
            number("scale_factor"),
            number("min_neighbors")
        ),
        Some(other) => format!(
            "{} ({}), score >= {}, detected at a longer side of at most {} px (0: full size), crops aligned by {}",
            if other == "yunet" { "YuNet" } else { other },
            text("model"),
            number("score_threshold"),
            number("detect_max_side"),
            text("align")
        ),
    }
}

fn crop_view(s: &StageOutput) -> ImagesView {
    let v = &s.summary;
    ImagesView {
        figures: vec![
            figure("images read", count(v, "/counts/records")),
            figure("crops written", count(v, "/counts/output_rows")),
            figure("unreadable", count(v, "/counts/error")),
            figure("crop side", count(v, "/config/crop/size")),
        ],
        sheet: contact_sheet(&s.dir, 96, 12, "crops"),
        problems: problems(&s.dir, "inputs skipped or unreadable", 12),
        detector: None,
        drawn: Vec::new(),
    }
}

fn dedupe_view(s: &StageOutput) -> DedupeView {
    let v = &s.summary;
    let measured = v
        .pointer("/eval/precision")
        .and_then(Value::as_f64)
        .map(|p| (format!("{p:.3}"), format!("{:.3}", num(v.pointer("/eval/recall")).unwrap_or(f64::NAN))));
    let text = std::fs::read_to_string(s.dir.join("clusters.jsonl")).unwrap_or_default();
    let found: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).take(8).collect();
    let crops = read_packed(&s.dir.join("crops")).ok();
    let clusters = match &crops {
        None => Vec::new(),
        Some(crops) => found
            .iter()
            .map(|c| {
                let kept = c.get("kept").and_then(Value::as_str).unwrap_or("").to_string();
                let members = c
                    .get("members")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .take(10)
                    .filter_map(|m| {
                        let i = m
                            .get("crop_index")
                            .and_then(Value::as_u64)
                            .map(|i| i as usize)
                            .filter(|&i| i < crops.len())?;
                        let source = m.get("source").and_then(Value::as_str).unwrap_or("").to_string();
                        Some(Thumb {
                            uri: rgb_data_uri(crops.image(i), crops.width, crops.height),
                            kept: source == kept,
                            distance: m.get("distance_to_kept").and_then(Value::as_u64).unwrap_or(0),
                            source,
                        })
                    })
                    .collect();
                ClusterView { size: c.get("size").and_then(Value::as_u64).unwrap_or(0), kept, members }
            })
            .collect(),
    };
    let own_page = s.dir.join("report.html").exists().then(|| {
        if s.relative.is_empty() {
            "report.html".to_string()
        } else {
            format!("{}/report.html", s.relative)
        }
    });
    DedupeView {
        figures: vec![
            figure("images", count(v, "/counts/cropped")),
            figure("kept", count(v, "/counts/kept")),
            figure("removed as duplicates", count(v, "/counts/removed")),
            figure("clusters of 2 or more", count(v, "/counts/clusters_of_two_or_more")),
            figure("exact collisions (groups)", count(v, "/counts/exact_collision_groups")),
            figure("radius (bits of 128)", count(v, "/config/radius")),
        ],
        measured,
        no_clusters: found.is_empty(),
        clusters,
        own_page,
    }
}

fn train_view(s: &StageOutput) -> TrainView {
    let r = s.summary.get("report").cloned().unwrap_or(Value::Null);
    let f = |k: &str| num(r.pointer(k));
    let figures = vec![
        figure("training images", count(&r, "/images")),
        figure("steps", count(&r, "/end_step")),
        figure("images/s", f("/images_per_s").map_or("-".into(), |x| format!("{x:.0}"))),
        figure("wall time (this run)", f("/wall_s").map_or("-".into(), |x| format!("{x:.0} s"))),
        figure("device", r.get("device").and_then(Value::as_str).unwrap_or("-").to_string()),
        figure(
            "final D(x) / D(G(z))",
            match (f("/final_losses/d_real"), f("/final_losses/d_fake")) {
                (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
                _ => "-".into(),
            },
        ),
        figure(
            "collapse check",
            match r.pointer("/collapse/collapsed_at_end").and_then(Value::as_bool) {
                Some(true) => "COLLAPSED".into(),
                Some(false)
                    if r.pointer("/collapse/episodes").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) =>
                {
                    "recovered".into()
                }
                Some(false) => "no collapse".into(),
                None => "-".into(),
            },
        ),
    ];
    let mut samples: Vec<PathBuf> = std::fs::read_dir(s.dir.join("samples"))
        .map(|e| e.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "png")).collect())
        .unwrap_or_default();
    samples.sort();
    let epochs: Vec<&PathBuf> =
        samples.iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))).collect();
    let pool: Vec<&PathBuf> = if epochs.is_empty() { samples.iter().collect() } else { epochs };
    // Up to six grids spread over training, the last one always.
    let picks: Vec<usize> =
        if pool.len() <= 6 { (0..pool.len()).collect() } else { (0..6).map(|k| k * (pool.len() - 1) / 5).collect() };
    let grids = picks
        .into_iter()
        .filter_map(|k| {
            let name = pool[k].file_stem().map(|n| n.to_string_lossy().replace('-', " ")).unwrap_or_default();
            Some(Grid { uri: png_file_data_uri(pool[k])?, caption: collapse_zeros(&name), name })
        })
        .collect();
    let collapse = r.pointer("/collapse/verdict").and_then(Value::as_str).map(str::to_string);
    let collapsed = r.pointer("/collapse/collapsed_at_end").and_then(Value::as_bool).unwrap_or(false);
    TrainView {
        figures,
        grids,
        losses: png_file_data_uri(&s.dir.join("losses.png")),
        collapse,
        collapsed,
        nn_distance: png_file_data_uri(&s.dir.join(crate::gan::nn_watch::PNG)),
    }
}

/// "epoch 0007" -> "epoch 7".
fn collapse_zeros(name: &str) -> String {
    name.split(' ')
        .map(|w| {
            if w.chars().all(|c| c.is_ascii_digit()) && w.len() > 1 {
                w.trim_start_matches('0').to_string()
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The device and data a sampled generator was trained on. An export's record names both; a train
/// run's own generator.safetensors has a shorter record, and the run's summary.json beside it says them.
fn trained_where(sample: &Value, record: &Value) -> (String, String) {
    let run: Option<Value> = sample
        .get("generator")
        .and_then(Value::as_str)
        .and_then(|g| std::fs::read(Path::new(g).with_file_name("summary.json")).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|s| s.get("stage").and_then(Value::as_str) == Some("train"));
    let from_run = |pointer: &str| run.as_ref().and_then(|r| r.pointer(pointer)).and_then(Value::as_str);
    let device = record.get("device").and_then(Value::as_str).or_else(|| from_run("/report/device"));
    let data = record.get("data").and_then(Value::as_str).map(str::to_string).or_else(|| {
        let input = from_run("/input")?;
        Some(match run.as_ref()?.pointer("/report/images").and_then(Value::as_u64) {
            Some(n) => format!("{input}: {n} images"),
            None => input.to_string(),
        })
    });
    (device.unwrap_or("an unrecorded device").to_string(), data.unwrap_or_else(|| "unrecorded data".to_string()))
}

fn sample_view(s: &StageOutput) -> SampleView {
    let v = &s.summary;
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
    let mut about = format!(
        "Generator {} ({} of width {}, stored as {}), z from the {} prior with seed {}.",
        text("/generator"),
        text("/preset"),
        count(v, "/width"),
        text("/stored_dtype"),
        text("/prior"),
        count(v, "/seed")
    );
    if let Some(record) = v.get("generator_record").filter(|r| r.is_object()) {
        let step = count(record, "/step");
        let (device, data) = trained_where(v, record);
        about += &format!(" Trained {step} steps on {device}, on {data}.");
    }
    SampleView {
        about,
        samples: png_file_data_uri(&s.dir.join("samples.png")),
        samples_caption: format!("{} samples, each G(z) for a z of its own.", count(v, "/samples/count")),
        walk: png_file_data_uri(&s.dir.join("walk.png")),
        walk_caption: format!(
            "The latent walk (the paper's section 6.1): each row is {} steps on a straight line in z between two random points, each row starting where the one above ended. Smooth change means the generator learned a space; sudden jumps mean it memorised.",
            count(v, "/walk/steps")
        ),
        copying: copying::copying_view(&s.dir),
    }
}

fn digits_view(s: &StageOutput) -> DigitsView {
    let m: Value = std::fs::read(s.dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let passed = m.get("passed").and_then(Value::as_bool).unwrap_or(false);
    let failures: Vec<String> = m
        .get("failures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    let histogram = m.pointer("/histogram/check").map(|c| {
        let limit = c.get("largest_allowed").and_then(Value::as_u64).unwrap_or(0);
        let counts: Vec<u64> =
            c.get("counts").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64).collect();
        let scale = limit.max(counts.iter().copied().max().unwrap_or(0)).max(1) as f64;
        HistogramView {
            summary: m.pointer("/histogram/summary").and_then(Value::as_str).unwrap_or("").to_string(),
            bars: counts
                .iter()
                .enumerate()
                .map(|(d, &n)| (d, n, 100.0 * n as f64 / scale, n > limit || n == 0))
                .collect(),
            limit,
        }
    });
    let rows_json: Vec<Value> = m.get("few_label").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut columns: Vec<String> = rows_json
        .first()
        .and_then(|r| r.get("few"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| format!("{} per class", count(f, "/per_class")))
        .collect();
    columns.push("all training labels".into());
    let rows = rows_json
        .iter()
        .map(|r| {
            let mut cells = vec![format!(
                "{} ({} features)",
                r.get("name").and_then(Value::as_str).unwrap_or("?"),
                count(r, "/features")
            )];
            for f in r.get("few").and_then(Value::as_array).into_iter().flatten() {
                cells.push(format!(
                    "{:.1}% (+-{:.1}%)",
                    100.0 * num(f.get("mean")).unwrap_or(f64::NAN),
                    100.0 * num(f.get("std")).unwrap_or(f64::NAN)
                ));
            }
            cells.push(format!("{:.1}%", 100.0 * num(r.get("all_labels_accuracy")).unwrap_or(f64::NAN)));
            cells
        })
        .collect();
    DigitsView {
        verdict: if passed { "Every check passed.".into() } else { "A check FAILED.".into() },
        passed,
        failures,
        histogram,
        by_class: png_file_data_uri(&s.dir.join("samples-by-class.png")),
        columns,
        rows,
    }
}

fn read_metrics(s: &StageOutput) -> Option<Value> {
    let m: Value = std::fs::read(s.dir.join("metrics.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())?;
    num(m.pointer("/test/accuracy")).is_some().then_some(m)
}

/// All cifar-eval outputs of the run together: one Table 1 with a row per scored D, then each
/// one's confusion matrix.
fn cifar_view(outputs: &[&StageOutput]) -> CifarView {
    let mut view = CifarView {
        unfinished: Vec::new(),
        paper: crate::eval::protocol::PAPER_TABLE_1.to_vec(),
        rows: Vec::new(),
        confusions: Vec::new(),
    };
    for s in outputs {
        let Some(m) = read_metrics(s) else {
            view.unfinished.push(s.dir.display().to_string());
            continue;
        };
        let acc = num(m.pointer("/test/accuracy")).unwrap_or(f64::NAN);
        let source = m.get("test_source").and_then(Value::as_str).unwrap_or("test split");
        view.rows.push(CifarRow {
            discriminator: m.get("discriminator").and_then(Value::as_str).unwrap_or("?").to_string(),
            relative: s.relative.clone(),
            accuracy: format!("{:.1}% ({source})", 100.0 * acc),
            few: match (num(m.get("per_class_mean")), num(m.get("per_class_std"))) {
                (Some(a), Some(b)) => {
                    format!("{:.1}% (+-{:.1}%) ({} per class)", 100.0 * a, 100.0 * b, count(&m, "/per_class_labels"))
                }
                _ => "-".into(),
            },
        });
        if let Some(c) = confusion_view(s, &m) {
            view.confusions.push(c);
        }
    }
    view
}

/// The confusion matrix as a table: rows true class, columns predicted, cells shaded by the
/// row's share, with each class's accuracy at the end of its row.
fn confusion_view(s: &StageOutput, m: &Value) -> Option<ConfusionView> {
    let rows = m.pointer("/test/confusion").and_then(Value::as_array)?;
    let classes = crate::data::cifar::CIFAR10_CLASSES;
    let name = |i: usize| classes.get(i).map_or(format!("class {i}"), |c| c.to_string());
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let counts: Vec<f64> =
                row.as_array().map(|r| r.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
            let total: f64 = counts.iter().sum::<f64>().max(1.0);
            let cells = counts
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let share = c / total;
                    let ink = if share > 0.5 { "#fff" } else { "inherit" };
                    ConfusionCell {
                        count: c.to_string(),
                        style: format!("background:rgba(36,88,166,{share:.2});color:{ink}"),
                        title: format!("{} as {}: {c}", name(i), name(j)),
                    }
                })
                .collect();
            let accuracy = counts.get(i).map_or(f64::NAN, |d| 100.0 * d / total);
            ConfusionRow { name: name(i), cells, accuracy: format!("{accuracy:.1}%") }
        })
        .collect::<Vec<_>>();
    Some(ConfusionView {
        relative: s.relative.clone(),
        chosen_c: num(m.get("chosen_c")).map_or("-".into(), |c| format!("{c:e}")),
        features: count(m, "/feature_count"),
        classes: (0..rows.len()).map(|j| (name(j), name(j).chars().take(4).collect())).collect(),
        rows,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_train_runs_generator_is_said_trained_on_the_device_and_data_its_summary_records() {
        let dir = tempfile::tempdir().unwrap();
        let run = serde_json::json!({
            "stage": "train", "input": "digits.png", "report": { "device": "cpu", "images": 4000 }
        });
        std::fs::write(dir.path().join("summary.json"), run.to_string()).unwrap();
        let generator = dir.path().join("generator.safetensors");
        let sample = serde_json::json!({ "generator": generator.display().to_string() });
        let own_record = serde_json::json!({ "network": "generator", "step": 1500 });
        assert_eq!(trained_where(&sample, &own_record), ("cpu".to_string(), "digits.png: 4000 images".to_string()));
        // An export's record names both itself, and is believed over the folder's summary.
        let export = serde_json::json!({ "step": 9, "device": "cuda (H100)", "data": "Tiny ImageNet" });
        assert_eq!(trained_where(&sample, &export), ("cuda (H100)".to_string(), "Tiny ImageNet".to_string()));
        // Without a train summary beside it, nothing is made up.
        std::fs::remove_file(dir.path().join("summary.json")).unwrap();
        assert_eq!(
            trained_where(&sample, &own_record),
            ("an unrecorded device".to_string(), "unrecorded data".to_string())
        );
    }
}
