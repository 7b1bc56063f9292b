//! The report's view of `sample --copy-test` (copy-test/copy_test.json beside the sample grid):
//! the data-copying test's verdict, figures, per-cell table, the two distance distributions and the
//! samples nearest to a training image.

use std::path::Path;

use serde_json::Value;

use super::{figure, Figure};
use crate::pictures::data_uri::png_file_data_uri;

/// The copy test's folder inside a sample output.
pub const DIR: &str = "copy-test";

pub(super) struct CopyingView {
    pub verdict: String,
    pub copying: bool,
    pub about: String,
    pub figures: Vec<Figure>,
    pub cells: Vec<CellLine>,
    pub distances: Option<String>,
    pub closest: Option<String>,
}

pub(super) struct CellLine {
    pub cell: String,
    pub held_out: String,
    pub generated: String,
    pub share: String,
    pub z: String,
    pub medians: String,
}

fn fixed(v: Option<&Value>, digits: usize) -> String {
    v.and_then(Value::as_f64).map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn percent(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64).map_or("-".into(), |x| format!("{:.1}%", 100.0 * x))
}

fn cell_line(c: &Value) -> CellLine {
    let used = c.get("used").and_then(Value::as_bool).unwrap_or(false);
    CellLine {
        cell: fixed(c.get("cell"), 0),
        held_out: fixed(c.get("held_out"), 0),
        generated: fixed(c.get("generated"), 0),
        share: percent(c.get("held_out_share")),
        z: if used { fixed(c.get("z"), 2) } else { "left out (too few)".into() },
        medians: format!(
            "{} / {}",
            fixed(c.get("median_distance_generated"), 3),
            fixed(c.get("median_distance_held_out"), 3)
        ),
    }
}

/// The view of `sample_dir`/copy-test, None when the test was not run there.
pub(super) fn copying_view(sample_dir: &Path) -> Option<CopyingView> {
    let dir = sample_dir.join(DIR);
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("copy_test.json")).ok()?).ok()?;
    let r = &v["result"];
    let c_t = r.get("c_t").and_then(Value::as_f64);
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
    let figures = vec![
        figure("C_T (below -3: copying)", fixed(r.get("c_t"), 2)),
        figure(
            "cells used",
            format!("{} of {}", fixed(r.get("cells_used"), 0), r["cells"].as_array().map_or(0, Vec::len)),
        ),
        figure(
            "samples / held-out / training",
            format!(
                "{} / {} / {}",
                fixed(r.pointer("/generated/count"), 0),
                fixed(r.pointer("/held_out/count"), 0),
                fixed(r.get("training_images"), 0)
            ),
        ),
        figure(
            "median distance, samples / held-out",
            format!("{} / {}", fixed(r.pointer("/generated/median"), 3), fixed(r.pointer("/held_out/median"), 3)),
        ),
        figure(
            "near duplicates, samples / held-out",
            format!("{} / {}", percent(r.get("near_duplicate_share")), percent(r.get("held_out_near_duplicate_share"))),
        ),
    ];
    Some(CopyingView {
        verdict: text("/result/verdict"),
        copying: c_t.is_some_and(|c| c < -crate::neighbours::copying::VERDICT_Z),
        about: format!(
            "Held-out real images: {}. Distances: {}. Near duplicate: {}.",
            text("/images/held_out"),
            text("/result/distance"),
            text("/result/near_duplicate_rule")
        ),
        figures,
        cells: r["cells"].as_array().map(|a| a.iter().map(cell_line).collect()).unwrap_or_default(),
        distances: png_file_data_uri(&dir.join("distances.png")),
        closest: png_file_data_uri(&dir.join("closest.png")),
    })
}
