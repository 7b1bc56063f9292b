//! Scores a faces run against ground-truth boxes (`faces --eval-boxes GT.json`): precision and
//! recall of the kept boxes at IoU >= 0.5 for faces of side >= `min_side`, where the
//! ground-truth boxes marked invalid or smaller than that are ignore regions (a kept box on one
//! counts neither way), as WIDER FACE's evaluation treats its hard cases.
//!
//! The ground truth is WIDER FACE's format as ../shared/data/faces-wider-dev/gt.json holds it:
//! `{"images": [{"file": "<path relative to the input>", "boxes": [[x, y, w, h], ...],
//! "invalid": [0 or 1, ...]}, ...]}`; a box's side is sqrt(w x h).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stage::ManifestRow;

/// A detection counts as the face when their IoU is at least this.
pub const MATCH_IOU: f64 = 0.5;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {why}")]
    GroundTruth { path: String, why: String },
}

#[derive(Debug, Deserialize)]
struct GtFile {
    images: Vec<GtImage>,
}

#[derive(Debug, Deserialize)]
struct GtImage {
    file: String,
    boxes: Vec<[f64; 4]>,
    #[serde(default)]
    invalid: Vec<u8>,
}

/// One photo's ground truth: faces to find and regions to ignore.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoTruth {
    pub faces: Vec<[f64; 4]>,
    pub ignore: Vec<[f64; 4]>,
}

/// Reads a ground-truth file, splitting each photo's boxes at `min_side`.
pub fn read_ground_truth(path: &Path, min_side: f64) -> Result<BTreeMap<String, PhotoTruth>, EvalError> {
    let err = |why: String| EvalError::GroundTruth { path: path.display().to_string(), why };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: GtFile = serde_json::from_str(&text).map_err(|e| err(format!("not a ground-truth file: {e}")))?;
    let mut photos = BTreeMap::new();
    for image in file.images {
        let mut truth = PhotoTruth::default();
        for (k, b) in image.boxes.iter().enumerate() {
            let invalid = image.invalid.get(k).copied().unwrap_or(0) != 0;
            if invalid || (b[2] * b[3]).max(0.0).sqrt() < min_side {
                truth.ignore.push(*b);
            } else {
                truth.faces.push(*b);
            }
        }
        photos.insert(image.file, truth);
    }
    Ok(photos)
}

/// A kept box of a run: x, y, w, h and its score (the cascade's boxes have none: +inf).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kept {
    pub bbox: [f64; 4],
    pub score: f64,
}

/// The kept boxes of each photo of a run's manifest.
pub fn kept_boxes(rows: &[ManifestRow]) -> BTreeMap<String, Vec<Kept>> {
    let mut photos = BTreeMap::new();
    for row in rows {
        let mut kept = Vec::new();
        if let Some(Value::Array(boxes)) = row.detail.get("boxes") {
            for b in boxes.iter().filter(|b| b["kept"] == Value::Bool(true)) {
                let get = |k: &str| b[k].as_f64().unwrap_or(0.0);
                let score = b.get("score").and_then(Value::as_f64).unwrap_or(f64::INFINITY);
                kept.push(Kept { bbox: [get("x"), get("y"), get("w"), get("h")], score });
            }
        }
        photos.insert(row.source.clone(), kept);
    }
    photos
}

pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let h = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Counts at one score threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub score_threshold: f64,
    /// Kept boxes on a face to find (each face matched once, best score first).
    pub right: u64,
    /// Kept boxes on no face and no ignore region (a second box on a face counts here).
    pub wrong: u64,
    /// Kept boxes on an ignore region.
    pub ignored: u64,
    /// Faces to find.
    pub faces: u64,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        let judged = self.right + self.wrong;
        if judged == 0 {
            1.0
        } else {
            self.right as f64 / judged as f64
        }
    }

    pub fn recall(&self) -> f64 {
        if self.faces == 0 {
            0.0
        } else {
            self.right as f64 / self.faces as f64
        }
    }
}

/// Matches one photo's kept boxes scoring at least `threshold` against its truth.
fn score_photo(truth: &PhotoTruth, kept: &[Kept], threshold: f64, counts: &mut Counts, wrong: &mut Vec<Kept>) {
    let mut boxes: Vec<&Kept> = kept.iter().filter(|k| k.score >= threshold).collect();
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut matched = vec![false; truth.faces.len()];
    for k in boxes {
        let best = (0..truth.faces.len())
            .filter(|&i| !matched[i])
            .map(|i| (i, iou(&k.bbox, &truth.faces[i])))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, overlap)) if overlap >= MATCH_IOU => {
                matched[i] = true;
                counts.right += 1;
            }
            _ if truth.ignore.iter().any(|g| iou(&k.bbox, g) >= MATCH_IOU) => counts.ignored += 1,
            _ => {
                counts.wrong += 1;
                wrong.push(*k);
            }
        }
    }
}

/// Scores the run's photos that the ground truth knows, at each threshold; also returns the
/// ground-truth photos that the run lacks.
pub fn evaluate(
    truth: &BTreeMap<String, PhotoTruth>,
    run: &BTreeMap<String, Vec<Kept>>,
    thresholds: &[f64],
) -> (Vec<Counts>, Vec<String>) {
    let missing: Vec<String> = truth.keys().filter(|f| !run.contains_key(*f)).cloned().collect();
    let table = thresholds
        .iter()
        .map(|&t| {
            let mut counts = Counts { score_threshold: t, ..Counts::default() };
            for (file, photo) in truth {
                counts.faces += photo.faces.len() as u64;
                score_photo(photo, run.get(file).map_or(&[][..], Vec::as_slice), t, &mut counts, &mut Vec::new());
            }
            counts
        })
        .collect();
    (table, missing)
}

/// The wrong boxes at `threshold`, photo by photo (in the ground truth's order of file names).
pub fn wrong_boxes(
    truth: &BTreeMap<String, PhotoTruth>,
    run: &BTreeMap<String, Vec<Kept>>,
    threshold: f64,
) -> Vec<(String, Kept)> {
    let mut out = Vec::new();
    for (file, photo) in truth {
        let mut wrong = Vec::new();
        let kept = run.get(file).map_or(&[][..], Vec::as_slice);
        score_photo(photo, kept, threshold, &mut Counts::default(), &mut wrong);
        out.extend(wrong.into_iter().map(|k| (file.clone(), k)));
    }
    out
}

/// The table as printed: one line per threshold.
pub fn format_table(table: &[Counts]) -> String {
    let mut out = String::from("score >=   right  wrong  ignored  faces  precision  recall\n");
    for c in table {
        let t = if c.score_threshold.is_finite() { format!("{:8.2}", c.score_threshold) } else { "     all".into() };
        out.push_str(&format!(
            "{t}  {:6}  {:5}  {:7}  {:5}  {:9.3}  {:6.3}\n",
            c.right,
            c.wrong,
            c.ignored,
            c.faces,
            c.precision(),
            c.recall()
        ));
    }
    out
}

/// The thresholds a run is scored at: Haar's boxes have no score (one row: every kept box);
/// YuNet's and SCRFD's at the configured threshold and each higher one of 0.35-0.95.
pub fn thresholds_for(faces: &super::FacesConfig) -> Vec<f64> {
    match faces.detector {
        super::DetectorKind::Haar => vec![f64::NEG_INFINITY],
        super::DetectorKind::Yunet | super::DetectorKind::Scrfd => {
            let t = faces.score_threshold as f64;
            let grid = [0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];
            let higher = grid.into_iter().filter(|&h| h > t + 1e-6);
            std::iter::once(t).chain(higher).collect()
        }
    }
}

/// `faces --eval-boxes`: scores the run in `output` against `truth` (read from `gt` before the
/// run, so that a bad file stops it at once), writes eval-boxes.json beside it and, when the input
/// is a folder, the wrong boxes at the configured threshold as eval-wrong-boxes.png; returns the
/// table as printed.
pub fn score_run(
    truth: &BTreeMap<String, PhotoTruth>,
    gt: &Path,
    input: Option<&Path>,
    output: &Path,
    faces: &super::FacesConfig,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let manifest = output.join("manifest.jsonl");
    let rows = crate::stage::manifest::read_manifest(&manifest).with_context(|| format!("{}", manifest.display()))?;
    let run = kept_boxes(&rows);
    let thresholds = thresholds_for(faces);
    let (table, missing) = evaluate(truth, &run, &thresholds);
    let wrong = wrong_boxes(truth, &run, thresholds[0]);
    let mut text = format!(
        "faces --eval-boxes {}: {} photos, faces of side >= {} px, IoU >= {MATCH_IOU}\n",
        gt.display(),
        truth.len() - missing.len(),
        faces.min_face_side,
    );
    text.push_str(&format_table(&table));
    if let Some(first) = missing.first() {
        let n = missing.len();
        text.push_str(&format!(
            "{n} ground-truth photos are not in the run (their faces count as missed), e.g. {first}\n"
        ));
    }
    let record = serde_json::json!({
        "ground_truth": gt.display().to_string(),
        "min_face_side": faces.min_face_side,
        "match_iou": MATCH_IOU,
        "detector": faces.detector,
        "photos_missing_from_the_run": missing,
        "wrong_boxes": wrong.iter().map(|(file, k)| serde_json::json!({
            "file": file, "box": k.bbox, "score": if k.score.is_finite() { serde_json::json!(k.score) } else { Value::Null },
        })).collect::<Vec<_>>(),
        "table": table.iter().map(|c| serde_json::json!({
            "score_threshold": if c.score_threshold.is_finite() { serde_json::json!(c.score_threshold) } else { Value::Null },
            "right": c.right, "wrong": c.wrong, "ignored": c.ignored, "faces": c.faces,
            "precision": c.precision(), "recall": c.recall(),
        })).collect::<Vec<_>>(),
    });
    let path = output.join("eval-boxes.json");
    crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&record)?.as_bytes())?;
    match input.filter(|i| i.is_dir()) {
        Some(folder) if !wrong.is_empty() => {
            let sheet = output.join(super::wrong_sheet::FILE_NAME);
            let drawn = super::wrong_sheet::write(folder, &wrong, &sheet)?;
            text.push_str(&format!(
                "the {drawn} wrong boxes at score >= {:.2}: {} (in eval-boxes.json's order)\n",
                thresholds[0],
                sheet.display()
            ));
        }
        _ => {}
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(x: f64, y: f64, side: f64, score: f64) -> Kept {
        Kept { bbox: [x, y, side, side], score }
    }

    #[test]
    fn right_wrong_ignored_and_duplicates() {
        let truth = PhotoTruth { faces: vec![[0.0, 0.0, 100.0, 100.0]], ignore: vec![[300.0, 0.0, 40.0, 40.0]] };
        let photos = BTreeMap::from([("a.jpg".to_string(), truth)]);
        let boxes = vec![
            kept(5.0, 5.0, 100.0, 0.95),  // the face
            kept(0.0, 10.0, 100.0, 0.85), // a second box on it: wrong
            kept(302.0, 0.0, 40.0, 0.9),  // on the ignore region
            kept(600.0, 0.0, 80.0, 0.7),  // on nothing
        ];
        let run = BTreeMap::from([("a.jpg".to_string(), boxes)]);
        let (table, missing) = evaluate(&photos, &run, &[0.5, 0.8, 0.99]);
        assert!(missing.is_empty());
        let at = |t: usize| (table[t].right, table[t].wrong, table[t].ignored, table[t].faces);
        assert_eq!(at(0), (1, 2, 1, 1));
        assert_eq!(at(1), (1, 1, 1, 1));
        assert_eq!(at(2), (0, 0, 0, 1));
        assert!((table[0].precision() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(table[2].recall(), 0.0);
    }

    #[test]
    fn small_and_invalid_boxes_become_ignore_regions_and_missing_photos_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.json");
        let gt = r#"{"images": [{"file": "x/a.jpg", "boxes": [[0, 0, 64, 64], [0, 0, 70, 50], [9, 9, 90, 90]],
            "invalid": [0, 0, 1]}, {"file": "b.jpg", "boxes": []}]}"#;
        std::fs::write(&path, gt).unwrap();
        let truth = read_ground_truth(&path, 64.0).unwrap();
        // sqrt(70 x 50) = 59 < 64: ignored; the invalid one too.
        assert_eq!(truth["x/a.jpg"].faces, vec![[0.0, 0.0, 64.0, 64.0]]);
        assert_eq!(truth["x/a.jpg"].ignore.len(), 2);
        let run = BTreeMap::from([("x/a.jpg".to_string(), vec![kept(0.0, 0.0, 64.0, f64::INFINITY)])]);
        let (table, missing) = evaluate(&truth, &run, &[f64::NEG_INFINITY]);
        assert_eq!((table[0].right, table[0].faces), (1, 1));
        assert_eq!(missing, vec!["b.jpg".to_string()]);
        std::fs::write(&path, "[1, 2]").unwrap();
        let err = read_ground_truth(&path, 64.0).unwrap_err().to_string();
        assert!(err.contains("gt.json") && err.contains("not a ground-truth file"), "{err}");
    }
}
