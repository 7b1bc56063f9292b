//! The run report: one self-contained HTML page for a run folder whose subfolders are stage
//! outputs (faces, dedupe, crop, train, cifar-eval: recognised by their summary.json's "stage"),
//! with a section per stage, images embedded as data URIs, and every stage's timings and config.
//! A stage that did not run gets a line saying so, never an error.

pub mod html;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::packed::read_packed;
use html::{escape, png_file_data_uri, rgb_data_uri, tile_grid};

/// The stages in pipeline order: (summary.json "stage", section id, heading).
pub const SECTIONS: [(&str, &str, &str); 5] = [
    ("faces", "faces", "Faces: detected, cropped, resized"),
    ("dedupe", "dedupe", "Dedupe: near-duplicate clusters"),
    ("crop", "crop", "Crop: 32x32 min-resized center crops"),
    ("train", "train", "Train: the DCGAN"),
    ("cifar-eval", "cifar-eval", "CIFAR-10: discriminator features + L2-SVM"),
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

/// The stage folders directly under `run` (and `run` itself), by their summary.json, in name order.
pub fn find_stages(run: &Path) -> Vec<StageOutput> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.insert(0, run.to_path_buf());
    dirs.into_iter()
        .filter_map(|dir| {
            let summary: Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).ok()?).ok()?;
            let stage = summary.get("stage")?.as_str()?.to_string();
            let relative = dir.strip_prefix(run).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            Some(StageOutput { stage, dir, relative, summary })
        })
        .collect()
}

/// Renders the page for `run`.
pub fn render(run: &Path, title: &str) -> String {
    let stages = find_stages(run);
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1>\n<p class=\"meta\">Run folder <code>{}</code>. ", escape(title), escape(&run.display().to_string()));
    body += "Sections follow the pipeline; each stage's numbers come from its own summary.json, images are embedded.</p>\n";
    body += "<nav>";
    for (_, id, heading) in SECTIONS {
        let _ = write!(body, "<a href=\"#{id}\">{}</a>", escape(heading.split(':').next().unwrap_or(heading)));
    }
    body += "<a href=\"#timings\">Timings and config</a></nav>\n";
    body += &overview(&stages);
    for (stage, id, heading) in SECTIONS {
        let _ = write!(body, "<section id=\"{id}\">\n<h2>{}</h2>\n", escape(heading));
        let found: Vec<&StageOutput> = stages.iter().filter(|s| s.stage == stage).collect();
        if found.is_empty() {
            body += "<p class=\"absent\">Not run in this run folder.</p>\n";
        }
        if stage == "cifar-eval" {
            for s in &found {
                let _ = write!(body, "<p class=\"meta\">Output: <code>{}</code></p>\n", escape(&s.dir.display().to_string()));
            }
            body += &cifar_section(&found);
            body += "</section>\n";
            continue;
        }
        for s in found {
            let _ = write!(body, "<p class=\"meta\">Output: <code>{}</code></p>\n", escape(&s.dir.display().to_string()));
            body += &match stage {
                "faces" => faces_section(s),
                "dedupe" => dedupe_section(s),
                "crop" => crop_section(s),
                _ => train_section(s),
            };
        }
        body += "</section>\n";
    }
    body += &timings_section(&stages);
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// Writes `<run>/report.html` (atomically) and returns its path.
pub fn write_report(run: &Path, title: &str) -> std::io::Result<PathBuf> {
    let path = run.join("report.html");
    crate::fsutil::write_atomic(&path, render(run, title).as_bytes())?;
    Ok(path)
}

const STYLE: &str = "
:root { --fg: #1d232a; --muted: #5b6570; --line: #d9dee3; --accent: #2458a6; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: var(--fg); background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; }
h2 { font-size: 1.25rem; margin: 0 0 0.5rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 0.4rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin: 16px 0; }
nav { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
nav a { color: var(--accent); text-decoration: none; border: 1px solid var(--line); border-radius: 999px; padding: 2px 10px; background: #fff; font-size: 0.9rem; }
.meta { color: var(--muted); font-size: 0.9rem; overflow-wrap: anywhere; }
.absent { color: var(--muted); font-style: italic; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.ours td { font-weight: 600; background: #eef4fc; }
figure { margin: 8px 0; }
figcaption { color: var(--muted); font-size: 0.85rem; }
img.sheet { width: 100%; max-width: 640px; image-rendering: pixelated; border: 1px solid var(--line); }
img.plot { width: 100%; max-width: 720px; border: 1px solid var(--line); }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.gallery img { width: 100%; image-rendering: pixelated; border: 1px solid var(--line); }
.cluster { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-start; margin: 4px 0 12px; }
.cluster img { width: 64px; height: 64px; image-rendering: pixelated; border: 2px solid transparent; }
.cluster img.kept { border-color: #1a8a3a; }
.figures { display: flex; flex-wrap: wrap; gap: 16px 32px; margin: 8px 0; }
.figure b { display: block; font-size: 1.4rem; }
.figure span { color: var(--muted); font-size: 0.85rem; }
details pre { background: #f3f5f7; padding: 8px; overflow-x: auto; font-size: 0.8rem; }
table.confusion td, table.confusion th { padding: 3px 6px; }
ul.rejects { font-size: 0.9rem; padding-left: 1.2rem; overflow-wrap: anywhere; }
";

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

fn figures(items: &[(&str, String)]) -> String {
    let mut out = String::from("<div class=\"figures\">");
    for (label, value) in items {
        let _ = write!(out, "<div class=\"figure\"><b>{}</b><span>{}</span></div>", escape(value), escape(label));
    }
    out + "</div>\n"
}

/// The first `limit` images of a packed set as a contact sheet, or None when there is none.
fn contact_sheet(dir: &Path, limit: usize, cols: usize) -> Option<(String, usize)> {
    let set = read_packed(dir).ok()?;
    if set.is_empty() || set.height != set.width {
        return None;
    }
    let tiles: Vec<&[u8]> = (0..set.len().min(limit)).map(|i| set.image(i)).collect();
    // As many columns as tiles when there are few, so that three faces make one short row.
    let grid = tile_grid(&tiles, set.width, set.height, cols.min(tiles.len()), 1, 1);
    // At most twice the natural size: a sheet of three faces should not fill the page.
    let img = format!(
        "<img class=\"sheet\" style=\"max-width:min(100%, {}px)\" alt=\"contact sheet\" src=\"{}\">",
        2 * grid.width(),
        rgb_data_uri(grid.as_raw(), grid.width(), grid.height())
    );
    Some((img, set.len()))
}

/// Manifest rows that are not "ok": (source, status, reason).
fn manifest_problems(dir: &Path, limit: usize) -> (usize, Vec<(String, String, String)>) {
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
            let reason = [field("reason"), field("error")].into_iter().find(|s| !s.is_empty()).unwrap_or_default();
            shown.push((field("source"), status, reason));
        }
    }
    (total, shown)
}

fn problems_list(dir: &Path, what: &str) -> String {
    let (total, shown) = manifest_problems(dir, 12);
    if total == 0 {
        return format!("<p>No {what}.</p>\n");
    }
    let mut out = format!("<h3>{} {what}</h3>\n<ul class=\"rejects\">", total);
    for (source, status, reason) in shown {
        let why = if reason.is_empty() { status } else { reason };
        let _ = write!(out, "<li><code>{}</code>: {}</li>", escape(&source), escape(&why));
    }
    if total > 12 {
        let _ = write!(out, "<li>... and {} more in manifest.jsonl</li>", total - 12);
    }
    out + "</ul>\n"
}

fn faces_section(s: &StageOutput) -> String {
    let v = &s.summary;
    let mut out = figures(&[
        ("photos read", count(v, "/counts/records")),
        ("faces kept", count(v, "/stage_counts/kept")),
        ("detections", count(v, "/stage_counts/detections")),
        ("boxes rejected (too small)", sum_of(v, "/stage_counts/rejected")),
        ("photos without a kept face", count(v, "/counts/skipped")),
        ("unreadable", count(v, "/counts/error")),
    ]);
    match contact_sheet(&s.dir, 64, 8) {
        Some((uri, n)) => {
            let _ = write!(out, "<figure>{uri}<figcaption>The first {} of {n} face crops, in input order.</figcaption></figure>\n", n.min(64));
        }
        None => out += "<p class=\"absent\">No face crops were kept.</p>\n",
    }
    out + &problems_list(&s.dir, "photos skipped or unreadable")
}

fn dedupe_section(s: &StageOutput) -> String {
    let v = &s.summary;
    let mut out = figures(&[
        ("images", count(v, "/counts/cropped")),
        ("kept", count(v, "/counts/kept")),
        ("removed as duplicates", count(v, "/counts/removed")),
        ("clusters of 2 or more", count(v, "/counts/clusters_of_two_or_more")),
        ("exact collisions (groups)", count(v, "/counts/exact_collision_groups")),
        ("radius (bits of 128)", count(v, "/config/radius")),
    ]);
    if let Some(p) = v.pointer("/eval/precision").and_then(Value::as_f64) {
        let r = num(v.pointer("/eval/recall")).unwrap_or(f64::NAN);
        let _ = write!(out, "<p>Measured on a labelled set: precision {p:.3}, recall {r:.3}.</p>\n");
    } else {
        out += "<p class=\"meta\">Precision and recall are not measured on a real run (no labels); <code>dedupe --eval</code> measures them on labelled edits (docs/dedupe.md).</p>\n";
    }
    let crops = read_packed(&s.dir.join("crops")).ok();
    let text = std::fs::read_to_string(s.dir.join("clusters.jsonl")).unwrap_or_default();
    let clusters: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).take(8).collect();
    if clusters.is_empty() {
        out += "<p>No clusters: every image was kept.</p>\n";
    } else if let Some(crops) = crops {
        out += "<h3>Largest clusters (kept image outlined in green)</h3>\n";
        for c in &clusters {
            let kept = c.get("kept").and_then(Value::as_str).unwrap_or("");
            let size = c.get("size").and_then(Value::as_u64).unwrap_or(0);
            let _ = write!(out, "<div class=\"meta\">{size} images, kept <code>{}</code></div><div class=\"cluster\">", escape(kept));
            for m in c.get("members").and_then(Value::as_array).into_iter().flatten().take(10) {
                let Some(i) = m.get("crop_index").and_then(Value::as_u64).map(|i| i as usize).filter(|&i| i < crops.len()) else { continue };
                let source = m.get("source").and_then(Value::as_str).unwrap_or("");
                let d = m.get("distance_to_kept").and_then(Value::as_u64).unwrap_or(0);
                let class = if source == kept { " class=\"kept\"" } else { "" };
                let uri = rgb_data_uri(crops.image(i), crops.width, crops.height);
                let _ = write!(out, "<img{class} src=\"{uri}\" alt=\"{}\" title=\"{} ({d} bits from the kept one)\">", escape(source), escape(source));
            }
            out += "</div>\n";
        }
    }
    if s.dir.join("report.html").exists() {
        let link = if s.relative.is_empty() { "report.html".to_string() } else { format!("{}/report.html", s.relative) };
        let _ = write!(out, "<p>The stage's own page, with random pairs near the radius: <a href=\"{0}\">{0}</a>.</p>\n", escape(&link));
    }
    out
}

fn crop_section(s: &StageOutput) -> String {
    let v = &s.summary;
    let mut out = figures(&[
        ("images read", count(v, "/counts/records")),
        ("crops written", count(v, "/counts/output_rows")),
        ("unreadable", count(v, "/counts/error")),
        ("crop side", count(v, "/config/crop/size")),
    ]);
    match contact_sheet(&s.dir, 96, 12) {
        Some((uri, n)) => {
            let _ = write!(out, "<figure>{uri}<figcaption>The first {} of {n} crops, in input order.</figcaption></figure>\n", n.min(96));
        }
        None => out += "<p class=\"absent\">No crops.</p>\n",
    }
    out + &problems_list(&s.dir, "inputs skipped or unreadable")
}

fn train_section(s: &StageOutput) -> String {
    let r = s.summary.get("report").cloned().unwrap_or(Value::Null);
    let f = |k: &str| num(r.pointer(k));
    let mut out = figures(&[
        ("training images", count(&r, "/images")),
        ("steps", count(&r, "/end_step")),
        ("images/s", f("/images_per_s").map_or("-".into(), |x| format!("{x:.0}"))),
        ("wall time (this run)", f("/wall_s").map_or("-".into(), |x| format!("{x:.0} s"))),
        ("device", r.get("device").and_then(Value::as_str).unwrap_or("-").to_string()),
        ("final D(x) / D(G(z))", match (f("/final_losses/d_real"), f("/final_losses/d_fake")) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
            _ => "-".into(),
        }),
    ]);
    let mut samples: Vec<PathBuf> = std::fs::read_dir(s.dir.join("samples"))
        .map(|e| e.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "png")).collect())
        .unwrap_or_default();
    samples.sort();
    let epochs: Vec<&PathBuf> = samples.iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))).collect();
    let pool: Vec<&PathBuf> = if epochs.is_empty() { samples.iter().collect() } else { epochs };
    if pool.is_empty() {
        out += "<p class=\"absent\">No sample grids yet.</p>\n";
    } else {
        // Up to six grids spread over training, the last one always.
        let picks: Vec<usize> = if pool.len() <= 6 { (0..pool.len()).collect() } else { (0..6).map(|k| k * (pool.len() - 1) / 5).collect() };
        out += "<h3>Samples from a fixed z over training</h3>\n<div class=\"gallery\">";
        for k in picks {
            let name = pool[k].file_stem().map(|n| n.to_string_lossy().replace('-', " ")).unwrap_or_default();
            if let Some(uri) = png_file_data_uri(pool[k]) {
                let _ = write!(out, "<figure><img src=\"{uri}\" alt=\"{}\"><figcaption>{}</figcaption></figure>", escape(&name), escape(&name.trim_start_matches('0')));
            }
        }
        out += "</div>\n";
    }
    if let Some(uri) = png_file_data_uri(&s.dir.join("losses.png")) {
        let _ = write!(out, "<figure><img class=\"plot\" alt=\"losses\" src=\"{uri}\"><figcaption>x: step. Top: D loss (red), G loss (blue). Bottom: D(x) (red), D(G(z)) (blue), from 0 to 1. Numbers in losses.csv.</figcaption></figure>\n");
    }
    out
}

fn read_metrics(s: &StageOutput) -> Option<Value> {
    let m: Value = std::fs::read(s.dir.join("metrics.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())?;
    num(m.pointer("/test/accuracy")).is_some().then_some(m)
}

/// All cifar-eval outputs of the run together: one Table 1 with a row per scored D, then each
/// one's confusion matrix.
fn cifar_section(outputs: &[&StageOutput]) -> String {
    let mut scored: Vec<(&StageOutput, Value)> = Vec::new();
    let mut out = String::new();
    for s in outputs {
        match read_metrics(s) {
            Some(m) => scored.push((*s, m)),
            None => {
                let _ = write!(out, "<p class=\"absent\"><code>{}</code>: no metrics.json (the stage did not finish).</p>\n", escape(&s.dir.display().to_string()));
            }
        }
    }
    if scored.is_empty() {
        return out;
    }
    out += "<div class=\"scroll\"><table><tr><th>Model</th><th class=\"num\">Accuracy</th><th class=\"num\">Few labels</th></tr>";
    for (model, a, b) in crate::eval::protocol::PAPER_TABLE_1 {
        let _ = write!(out, "<tr><td>{} (paper)</td><td class=\"num\">{a}</td><td class=\"num\">{} (400 per class)</td></tr>", escape(model), escape(b));
    }
    for (s, m) in &scored {
        let acc = num(m.pointer("/test/accuracy")).unwrap_or(f64::NAN);
        let source = m.get("test_source").and_then(Value::as_str).unwrap_or("test split");
        let small = match (num(m.get("per_class_mean")), num(m.get("per_class_std"))) {
            (Some(a), Some(b)) => format!("{:.1}% (+-{:.1}%) ({} per class)", 100.0 * a, 100.0 * b, count(m, "/per_class_labels")),
            _ => "-".into(),
        };
        let d = m.get("discriminator").and_then(Value::as_str).unwrap_or("?");
        let _ = write!(
            out,
            "<tr class=\"ours\"><td>this run: D <code>{}</code> (<code>{}</code>)</td><td class=\"num\">{:.1}% ({})</td><td class=\"num\">{}</td></tr>",
            escape(d),
            escape(&s.relative),
            100.0 * acc,
            escape(source),
            escape(&small)
        );
    }
    out += "</table></div>\n<p class=\"meta\">The paper's figures are on the official CIFAR-10 test split with a D trained on ImageNet-1k; this run's are on the split named in each row. C is chosen on a validation split of the training images.</p>\n";
    for (s, m) in &scored {
        let _ = write!(
            out,
            "<h3>Confusion matrix: <code>{}</code> (chosen C {}, {} features per image)</h3>\n",
            escape(&s.relative),
            num(m.get("chosen_c")).map_or("-".into(), |c| format!("{c:e}")),
            count(m, "/feature_count")
        );
        out += &confusion_table(m);
    }
    out
}

/// The confusion matrix as a table: rows true class, columns predicted, cells shaded by the
/// row's share, with each class's accuracy at the end of its row.
fn confusion_table(m: &Value) -> String {
    let Some(rows) = m.pointer("/test/confusion").and_then(Value::as_array) else {
        return String::new();
    };
    let classes = crate::data::cifar::CIFAR10_CLASSES;
    let name = |i: usize| classes.get(i).map_or(format!("class {i}"), |c| c.to_string());
    let mut out = String::from("<div class=\"scroll\"><table class=\"confusion\"><tr><th>true \\ predicted</th>");
    for j in 0..rows.len() {
        let _ = write!(out, "<th class=\"num\" title=\"{0}\">{1}</th>", escape(&name(j)), escape(&name(j).chars().take(4).collect::<String>()));
    }
    out += "<th class=\"num\">accuracy</th></tr>";
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<f64> = row.as_array().map(|r| r.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        let total: f64 = cells.iter().sum::<f64>().max(1.0);
        let _ = write!(out, "<tr><td>{}</td>", escape(&name(i)));
        for (j, c) in cells.iter().enumerate() {
            let share = c / total;
            let text = if share > 0.5 { "#fff" } else { "inherit" };
            let _ = write!(out, "<td class=\"num\" style=\"background:rgba(36,88,166,{share:.2});color:{text}\" title=\"{} as {}: {c}\">{c}</td>", escape(&name(i)), escape(&name(j)));
        }
        let acc = cells.get(i).map_or(f64::NAN, |d| 100.0 * d / total);
        let _ = write!(out, "<td class=\"num\">{acc:.1}%</td></tr>");
    }
    out + "</table></div>\n"
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

fn overview(stages: &[StageOutput]) -> String {
    let mut out = String::from("<section id=\"overview\">\n<h2>Overview</h2>\n<div class=\"scroll\"><table><tr><th>stage</th><th>output</th><th class=\"num\">wall time</th></tr>");
    for (stage, id, _) in SECTIONS {
        let found: Vec<&StageOutput> = stages.iter().filter(|s| s.stage == stage).collect();
        if found.is_empty() {
            let _ = write!(out, "<tr><td><a href=\"#{id}\">{stage}</a></td><td class=\"absent\">not run</td><td></td></tr>");
        }
        for s in found {
            let wall = wall_seconds(s).map_or("-".into(), |t| format!("{t:.1} s"));
            let _ = write!(out, "<tr><td><a href=\"#{id}\">{stage}</a></td><td><code>{}</code></td><td class=\"num\">{wall}</td></tr>", escape(&s.dir.display().to_string()));
        }
    }
    out + "</table></div>\n</section>\n"
}

fn timings_section(stages: &[StageOutput]) -> String {
    let mut out = String::from("<section id=\"timings\">\n<h2>Timings and config</h2>\n");
    if stages.is_empty() {
        out += "<p class=\"absent\">No stage outputs in this folder.</p>\n";
    }
    for s in stages {
        let folder = if s.relative.is_empty() { String::new() } else { format!(" <code>{}</code>", escape(&s.relative)) };
        let _ = write!(out, "<h3>{}{folder}</h3>", escape(&s.stage));
        let timings = s.summary.get("timings_s").or_else(|| s.summary.get("timings")).and_then(Value::as_object).cloned();
        if let Some(t) = timings {
            out += "<div class=\"scroll\"><table><tr><th>step</th><th class=\"num\">value</th></tr>";
            for (k, v) in t {
                let shown = v.as_f64().map_or(v.to_string(), |x| format!("{x:.2}"));
                let _ = write!(out, "<tr><td>{}</td><td class=\"num\">{shown}</td></tr>", escape(&k));
            }
            out += "</table></div>";
        } else if let Some(t) = wall_seconds(s) {
            let _ = write!(out, "<p>Wall time {t:.1} s.</p>");
        }
        let config = std::fs::read_to_string(s.dir.join("config.toml")).unwrap_or_else(|_| {
            s.summary.get("config").map(|c| serde_json::to_string_pretty(c).unwrap_or_default()).unwrap_or_default()
        });
        if !config.is_empty() {
            let _ = write!(out, "<details><summary>Configuration</summary><pre>{}</pre></details>\n", escape(&config));
        }
    }
    out + "</section>\n"
}
