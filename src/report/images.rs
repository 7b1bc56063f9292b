//! The faces and crop sections: counts, a contact sheet of the crops, the inputs left out, and for
//! faces which detector ran and the photos drawn with their boxes.

use serde_json::Value;

use super::faces;
use super::{contact_sheet, count, figure, problems, sum_of, Figure, Problems, Sheet, StageOutput};

/// Faces and crop: counts, a contact sheet, the inputs that were left out.
pub(super) struct ImagesView {
    pub(super) figures: Vec<Figure>,
    pub(super) sheet: Option<Sheet>,
    pub(super) problems: Problems,
    /// Faces: which detector ran, with its settings.
    pub(super) detector: Option<String>,
    /// Faces: photos with their boxes and landmarks drawn, and both crops of each kept face.
    pub(super) drawn: Vec<faces::DrawnPhoto>,
}

pub(super) fn faces_view(s: &StageOutput) -> ImagesView {
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
pub(super) fn detector_line(v: &Value) -> String {
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

pub(super) fn crop_view(s: &StageOutput) -> ImagesView {
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
