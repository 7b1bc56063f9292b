//! The crop stage: ImageNet-style trees to `size` x `size` min-resized center crops, packed.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::imageops::{
    decode_rgb_with_libjpeg, min_resize_center_crop, DecodeError, DecodeOptions, DECODE_BYTES_PER_PIXEL,
};
use crate::stage::{Failure, ManifestRow, PerImageStage, Processed, Status};

/// The crop stage: min-resized center crops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CropConfig {
    /// Side of the square crops, in pixels (the paper: 32 for ImageNet).
    pub size: u32,
    /// Decode large JPEGs at 1/2, 1/4 or 1/8 scale in the DCT.
    pub dct_scaling: bool,
    /// With dct_scaling, the decoded shorter side stays at least this many times `size`.
    pub min_decoded_factor: u32,
    /// Refuse images with more pixels than this (decompression bombs).
    pub max_pixels: u64,
    /// Refuse files larger than this many bytes.
    pub max_file_bytes: u64,
    /// Keep photos whose decoder reported corrupt or missing data (a JPEG with a hole or a cut
    /// tail, which libjpeg fills with grey) as ok rows marked "damaged"; false: a failed row.
    pub keep_damaged: bool,
    /// Inputs per output shard (images-NNNNN.npy); also the unit of resume and of --shard.
    pub part_size: u64,
}

pub struct CropStage {
    pub config: CropConfig,
}

impl CropStage {
    pub fn new(config: CropConfig) -> Self {
        // Decoding runs on our rayon threads; OpenCV's own pool would only oversubscribe them.
        let _ = opencv::core::set_num_threads(1);
        Self { config }
    }

    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_pixels: self.config.max_pixels,
            min_decoded_side: self.config.dct_scaling.then_some(self.config.size * self.config.min_decoded_factor),
            keep_damaged: self.config.keep_damaged,
        }
    }
}

impl PerImageStage for CropStage {
    const NAME: &'static str = "crop";

    fn row_shape(&self) -> [u64; 3] {
        [self.config.size as u64, self.config.size as u64, 3]
    }

    fn max_file_bytes(&self) -> u64 {
        self.config.max_file_bytes
    }

    fn peak_bytes_per_image(&self) -> (f64, String) {
        let c = &self.config;
        let bytes = c.max_file_bytes as f64 + c.max_pixels as f64 * DECODE_BYTES_PER_PIXEL;
        (bytes, format!("crop.max_file_bytes + crop.max_pixels {} x {DECODE_BYTES_PER_PIXEL} B decoding", c.max_pixels))
    }

    fn process(&self, bytes: &[u8]) -> Result<Processed, Failure> {
        let decoded = decode_rgb_with_libjpeg(bytes, &self.decode_options())
            .map_err(|e: DecodeError| Failure::error(e.to_string()))?;
        let crop = min_resize_center_crop(&decoded.image, self.config.size);
        let mut detail = Map::new();
        detail.insert("width".into(), json!(decoded.source_width));
        detail.insert("height".into(), json!(decoded.source_height));
        detail.insert("format".into(), json!(decoded.format));
        if decoded.dct_scale > 1 {
            detail.insert("dct_scale".into(), json!(decoded.dct_scale));
        }
        if decoded.orientation > 1 {
            detail.insert("orientation".into(), json!(decoded.orientation));
        }
        if let Some(damage) = decoded.damage {
            detail.insert("damaged".into(), json!(damage));
        }
        // Smaller than the crop: it was upscaled, which a user may want to filter out.
        if decoded.source_width.min(decoded.source_height) < self.config.size {
            detail.insert("upscaled".into(), json!(true));
        }
        Ok(Processed { rows: vec![crop.pixels], detail })
    }

    fn summarize(&self, rows: &[ManifestRow]) -> Value {
        let flagged = |key: &str| rows.iter().filter(|r| r.detail.get(key) == Some(&json!(true))).count();
        let mut scales = std::collections::BTreeMap::<String, usize>::new();
        for row in rows.iter().filter(|r| r.status == Status::Ok) {
            let scale = row.detail.get("dct_scale").and_then(Value::as_u64).unwrap_or(1);
            *scales.entry(format!("1/{scale}")).or_default() += 1;
        }
        let damaged = rows.iter().filter(|r| r.detail.contains_key("damaged")).count();
        json!({ "upscaled": flagged("upscaled"), "decode_scales": scales, "kept_damaged": damaged })
    }
}
