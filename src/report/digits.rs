//! The digits demo's section (`digits eval`): the verdict, G's samples labelled by a pixel
//! classifier as a histogram, and the few-label table.

use serde_json::Value;

use super::{count, num, StageOutput};
use crate::pictures::data_uri::png_file_data_uri;

/// The digits demo's checks (`digits eval`): G's samples labelled by a pixel classifier, and the
/// few-label table.
pub(super) struct DigitsView {
    pub(super) verdict: String,
    pub(super) passed: bool,
    pub(super) failures: Vec<String>,
    pub(super) histogram: Option<HistogramView>,
    pub(super) by_class: Option<String>,
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<Vec<String>>,
}

pub(super) struct HistogramView {
    pub(super) summary: String,
    /// (digit, count, bar width in percent of the largest allowed count, over the limit).
    pub(super) bars: Vec<(usize, u64, f64, bool)>,
    pub(super) limit: u64,
}

pub(super) fn digits_view(s: &StageOutput) -> DigitsView {
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
