//! The sample section: which G (and what it was trained on, from its record or its run's
//! summary), its sample grid and latent walk, and the copy test where it ran.

use std::path::Path;

use serde_json::Value;

use super::copying;
use super::{count, StageOutput};
use crate::pictures::data_uri::png_file_data_uri;

pub(super) struct SampleView {
    pub(super) about: String,
    pub(super) samples: Option<String>,
    pub(super) samples_caption: String,
    pub(super) walk: Option<String>,
    pub(super) walk_caption: String,
    /// The data-copying test, when `sample --copy-test` ran.
    pub(super) copying: Option<copying::CopyingView>,
}

/// The device and data a sampled generator was trained on. An export's record names both; a train
/// run's own generator.safetensors has a shorter record, and the run's summary.json beside it says them.
pub(super) fn trained_where(sample: &Value, record: &Value) -> (String, String) {
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

pub(super) fn sample_view(s: &StageOutput) -> SampleView {
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
