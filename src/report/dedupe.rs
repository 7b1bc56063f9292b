//! The dedupe section: its counts, precision and recall where measured on labels, and the largest
//! clusters with their kept image.

use serde_json::Value;

use super::{count, figure, num, Figure, StageOutput};
use crate::data::packed::read_packed;
use crate::pictures::data_uri::rgb_data_uri;

pub(super) struct DedupeView {
    pub(super) figures: Vec<Figure>,
    /// (precision, recall) when measured on labels.
    pub(super) measured: Option<(String, String)>,
    pub(super) no_clusters: bool,
    pub(super) clusters: Vec<ClusterView>,
    pub(super) own_page: Option<String>,
}

pub(super) struct ClusterView {
    pub(super) size: u64,
    pub(super) kept: String,
    pub(super) members: Vec<Thumb>,
}

pub(super) struct Thumb {
    pub(super) uri: String,
    pub(super) source: String,
    pub(super) distance: u64,
    pub(super) kept: bool,
}

pub(super) fn dedupe_view(s: &StageOutput) -> DedupeView {
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
