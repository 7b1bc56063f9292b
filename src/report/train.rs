//! The train section: the run's figures, its sample grids by epoch, the loss plot, the collapse
//! check's verdict and the distance to the training set.

use std::path::PathBuf;

use serde_json::Value;

use super::{count, figure, num, Figure, StageOutput};
use crate::pictures::data_uri::png_file_data_uri;

pub(super) struct TrainView {
    pub(super) figures: Vec<Figure>,
    pub(super) grids: Vec<Grid>,
    pub(super) losses: Option<String>,
    /// The collapse check's verdict (absent in runs from before it), and whether it is a collapse.
    pub(super) collapse: Option<String>,
    pub(super) collapsed: bool,
    /// G's samples' distance to the training set by epoch (nn_distance.png).
    pub(super) nn_distance: Option<String>,
}

pub(super) struct Grid {
    pub(super) uri: String,
    pub(super) name: String,
    pub(super) caption: String,
}

pub(super) fn train_view(s: &StageOutput) -> TrainView {
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
pub(super) fn collapse_zeros(name: &str) -> String {
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
