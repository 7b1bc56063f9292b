//! The CIFAR-10 section: one Table 1 with a row per scored D beside the paper's, then each one's
//! confusion matrix.

use serde_json::Value;

use super::{count, num, StageOutput};

pub(super) struct CifarView {
    pub(super) unfinished: Vec<String>,
    pub(super) paper: Vec<(&'static str, &'static str, &'static str)>,
    pub(super) rows: Vec<CifarRow>,
    pub(super) confusions: Vec<ConfusionView>,
}

pub(super) struct CifarRow {
    pub(super) discriminator: String,
    pub(super) relative: String,
    pub(super) accuracy: String,
    pub(super) few: String,
}

pub(super) struct ConfusionView {
    pub(super) relative: String,
    pub(super) chosen_c: String,
    pub(super) features: String,
    /// (name, its first four letters).
    pub(super) classes: Vec<(String, String)>,
    pub(super) rows: Vec<ConfusionRow>,
}

pub(super) struct ConfusionRow {
    pub(super) name: String,
    pub(super) cells: Vec<ConfusionCell>,
    pub(super) accuracy: String,
}

pub(super) struct ConfusionCell {
    pub(super) count: String,
    pub(super) style: String,
    pub(super) title: String,
}

pub(super) fn read_metrics(s: &StageOutput) -> Option<Value> {
    let m: Value = std::fs::read(s.dir.join("metrics.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())?;
    num(m.pointer("/test/accuracy")).is_some().then_some(m)
}

/// All cifar-eval outputs of the run together: one Table 1 with a row per scored D, then each
/// one's confusion matrix.
pub(super) fn cifar_view(outputs: &[&StageOutput]) -> CifarView {
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
pub(super) fn confusion_view(s: &StageOutput, m: &Value) -> Option<ConfusionView> {
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
