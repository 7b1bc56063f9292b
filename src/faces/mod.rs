//! The faces stage: detect faces, keep the "sufficiently high resolution" ones, crop them.
//!
//! The paper ran an OpenCV face detector over 3M photos and kept ~350,000 boxes large enough to
//! train the 64x64 model on without upscaling. The detector is YuNet (OpenCV's CNN, the default)
//! or the paper's Haar cascade.

pub mod align;
pub mod area;
pub mod detector;
pub mod eval;
pub mod geometry;
pub mod presence;
pub mod scrfd;
pub mod second_look;
pub mod wrong_sheet;
pub mod yunet;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::data::names::{decode_name, encode_name, split_occurrence};
use crate::imageops::{decode_rgb_with_libjpeg, DecodeOptions};
use crate::stage::{Failure, ManifestRow, PerImageStage, Processed, Status};
use detector::{cascade_path, Detection, FaceDetector, HaarCascade, HaarParams};
use geometry::{crop_square, face_square, invalid_box, too_thin};
use yunet::{resolve_model_path, YuNet, YuNetParams};

/// Which face detector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// OpenCV's YuNet CNN (models/face_detection_yunet_2023mar.onnx): scores and five landmarks.
    Yunet,
    /// OpenCV's Haar cascade, the paper's detector.
    Haar,
    /// SCRFD from a model file the user supplies (faces.model; not shipped: docs/faces.md).
    Scrfd,
}

/// How a kept face becomes a square crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// The paper's: a square around the detected box, axis-aligned.
    Box,
    /// Rotated so that the eyes are level, scaled and placed from the eyes and the mouth (YuNet's
    /// landmarks), as aligned face sets (CelebA's aligned images, FFHQ) are made.
    Eyes,
}

/// What a box's side is when it is compared with `min_face_side`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideMeasure {
    /// sqrt(w x h), the WIDER FACE evaluation's measure of a ground-truth face.
    SqrtArea,
    /// The longer of w and h: the side of the box's crop before the margin, so a kept box's crop
    /// is never upscaled. YuNet's boxes are smaller than WIDER FACE's annotations (docs/faces.md).
    Longer,
}

/// The faces stage: detection (YuNet or a Haar cascade) and face crops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FacesConfig {
    /// yunet, haar or scrfd (a model file the user supplies).
    pub detector: DetectorKind,
    /// YuNet: the ONNX file; a relative path is looked up in the working folder, then in the
    /// source tree.
    pub model: String,
    /// YuNet: the model file's expected sha256; "" accepts any file.
    pub model_sha256: String,
    /// YuNet: faces scoring below this are dropped.
    pub score_threshold: f32,
    /// YuNet: NMS overlap threshold.
    pub nms_threshold: f32,
    /// YuNet: detect on a copy whose longer side is at most this (0: full size); crops come from
    /// the full-size photo.
    pub detect_max_side: u32,
    /// YuNet: scale where faces are: detect on a copy in which a face of min_face_side px
    /// measures at least this many px (never enlarged, never smaller than the detect_max_side
    /// copy), plus a 4x smaller copy for big faces; 0: off (detect_max_side decides).
    pub detect_face_px: u32,
    /// YuNet: look again at each box of side >= min_face_side (second_look.rs); the cascade has none.
    pub second_look: bool,
    /// The box's side in the second look's neighbourhood image (px).
    pub second_look_face: f32,
    /// The neighbourhood's side as a multiple of second_look_face.
    pub second_look_context: f32,
    /// A box stays when (score + look + mirrored look) / 3 reaches this.
    pub second_look_threshold: f32,
    /// Only boxes scoring below this are looked at again; those at or above it stay as they are
    /// (above 1: every box is looked at again).
    pub second_look_below: f32,
    /// A box the second look rejects stays when the face-presence model ([`presence`]) scores it at
    /// least this (above 1: off, the model is not loaded).
    pub presence_rescue: f32,
    /// The face-presence model's ONNX file (relative: the working folder, then the source tree).
    pub presence_model: String,
    /// Its expected sha256; "" accepts any file.
    pub presence_model_sha256: String,
    /// box or eyes (YuNet's landmarks; the cascade has none, so it always crops boxes).
    pub align: Align,
    /// frontalface_default, alt, alt2, alt_tree, or a path to a cascade XML.
    pub cascade: String,
    /// Where named cascades live (Debian's opencv-data).
    pub cascade_dir: String,
    /// detectMultiScale's scale step between pyramid levels.
    pub scale_factor: f64,
    /// detectMultiScale's minimum number of grouped raw detections for a box.
    pub min_neighbors: i32,
    /// Smallest and largest detection window in pixels (0: no upper bound).
    pub min_size: u32,
    pub max_size: u32,
    /// Equalise the grey histogram before detection.
    pub equalize: bool,
    /// "Sufficiently high resolution": boxes whose side (by `side_measure`) is below this are not
    /// cropped.
    pub min_face_side: u32,
    /// sqrt_area or longer (the cascade's square boxes measure the same either way).
    pub side_measure: SideMeasure,
    /// The crop square's side is the box's longer side x (1 + margin).
    pub margin: f64,
    /// Where the square leaves the image: clamp (move it inside) or pad (black).
    pub border: geometry::Border,
    /// Side of the output crops.
    pub size: u32,
    /// Also write each crop as crops/<source>.<k>.png (see [`png_stem`]; the manifest lists them).
    pub save_png: bool,
    pub max_pixels: u64,
    pub max_file_bytes: u64,
    /// Keep photos whose decoder reported corrupt or missing data (see crop.keep_damaged).
    pub keep_damaged: bool,
    pub part_size: u64,
}

pub struct FacesStage {
    pub config: FacesConfig,
    detector: Box<dyn FaceDetector>,
    /// Loaded when the second look can reject and `presence_rescue` is on.
    presence: Option<presence::FacePresence>,
    png_dir: Option<PathBuf>,
}

impl FacesStage {
    /// `output` receives `crops/*.png` when `save_png` is set.
    pub fn new(config: FacesConfig, output: Option<&std::path::Path>) -> Result<Self, detector::DetectorError> {
        // Our rayon threads spread images over the cores; OpenCV's pool would oversubscribe them.
        let _ = opencv::core::set_num_threads(1);
        let detector = build_detector(&config)?;
        let presence = build_presence(&config)?;
        let png_dir = config.save_png.then(|| output.map(|o| o.join("crops"))).flatten();
        Ok(Self { config, detector, presence, png_dir })
    }

    /// With a detector of one's own (tests, other detectors).
    pub fn with_detector(config: FacesConfig, detector: Box<dyn FaceDetector>) -> Self {
        Self { config, detector, presence: None, png_dir: None }
    }
}

/// The face-presence model, when the second look is on for a detector that has one (not the
/// cascade) and `presence_rescue` is at most 1.
pub fn build_presence(config: &FacesConfig) -> Result<Option<presence::FacePresence>, detector::DetectorError> {
    if !config.second_look || config.detector == DetectorKind::Haar || config.presence_rescue > 1.0 {
        return Ok(None);
    }
    let path = resolve_model_path(&config.presence_model);
    presence::FacePresence::new(&path, &config.presence_model_sha256).map(Some)
}

/// The configured detector, its files loaded and checked.
pub fn build_detector(config: &FacesConfig) -> Result<Box<dyn FaceDetector>, detector::DetectorError> {
    match config.detector {
        DetectorKind::Haar => {
            let path = cascade_path(&config.cascade, std::path::Path::new(&config.cascade_dir));
            let params = HaarParams {
                scale_factor: config.scale_factor,
                min_neighbors: config.min_neighbors,
                min_size: config.min_size as i32,
                max_size: config.max_size as i32,
                equalize: config.equalize,
            };
            Ok(Box::new(HaarCascade::new(path, params)?))
        }
        DetectorKind::Yunet => {
            let params = YuNetParams {
                score_threshold: config.score_threshold,
                nms_threshold: config.nms_threshold,
                top_k: 5000,
                max_side: config.detect_max_side,
                face_px: config.detect_face_px,
                min_face_side: config.min_face_side,
            };
            let path = resolve_model_path(&config.model);
            Ok(Box::new(YuNet::new(&path, &config.model_sha256, params)?))
        }
        DetectorKind::Scrfd => {
            let params =
                scrfd::ScrfdParams { score_threshold: config.score_threshold, nms_threshold: config.nms_threshold };
            let path = resolve_model_path(&config.model);
            Ok(Box::new(scrfd::Scrfd::new(&path, &config.model_sha256, params)?))
        }
    }
}

/// The file name stem of a source's PNG crops: the source's own bytes, with `/`, `%` and control
/// characters written `%XX` and a leading `.` as `%2E` (no hidden files), so that two sources never
/// share a name, whatever bytes their names hold; a stem too long for a file name is cut and given
/// a suffix of the source's hash. The manifest row lists the names written (its "png").
pub fn png_stem(source: &str) -> Vec<u8> {
    // The second member of one name in an archive gets "%#2": `%` is otherwise always followed by
    // two hex digits here, so the suffix meets no other source's stem.
    let (source, occurrence) = split_occurrence(source);
    let bytes = decode_name(source).unwrap_or_else(|| source.as_bytes().to_vec());
    let mut stem = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' || b == b'%' || b < 0x20 || b == 0x7f || (i == 0 && b == b'.') {
            stem.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            stem.push(b);
        }
    }
    // File names hold at most 255 bytes; ".NNN.png" must still fit.
    if stem.len() > 200 {
        stem.truncate(180);
        stem.push(b'~');
        stem.extend_from_slice(&crate::fsutil::sha256_hex(source.as_bytes()).as_bytes()[..16]);
    }
    if let Some(n) = occurrence {
        stem.extend_from_slice(format!("%#{n}").as_bytes());
    }
    stem
}

/// A box's side for the resolution bar. YuNet's and SCRFD's boxes are taller than wide:
/// sqrt(w x h) or the longer side, in whole pixels, as `measure` says (docs/faces.md, "What counts
/// as a face's side"). The cascade's: its shorter side, as before (its boxes are square, so every
/// measure agrees).
pub fn box_side(detection: &Detection, measure: SideMeasure) -> i32 {
    let face = &detection.face;
    if detection.score.is_none() {
        return face.w.min(face.h);
    }
    match measure {
        SideMeasure::SqrtArea => ((face.w.max(0) as f64) * (face.h.max(0) as f64)).sqrt().floor() as i32,
        SideMeasure::Longer => face.w.max(face.h).max(0),
    }
}

/// The manifest entry of one detection before the crop: the box and what the detector adds.
fn box_entry(detection: &Detection) -> Value {
    let face = &detection.face;
    let mut entry = json!({"x": face.x, "y": face.y, "w": face.w, "h": face.h});
    match (detection.score, &detection.landmarks) {
        (Some(score), Some(points)) => {
            entry["score"] = json!(round_to(score, 4));
            entry["landmarks"] = json!(points.map(|[x, y]| [round_to(x, 1), round_to(y, 1)]));
        }
        _ => entry["neighbours"] = json!(face.neighbours),
    }
    entry
}

fn round_to(value: f32, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value as f64 * scale).round() / scale
}

impl FacesStage {
    /// The size the detector looks at `image` in, for the too-thin check: YuNet's longer-side copy
    /// (whatever the scale rule would choose: on a strip thinner than that allows, YuNet's outputs
    /// are not finite and differ from run to run), SCRFD's copy in its 640 square, the cascade's
    /// full size.
    fn detection_size(&self, image: &crate::imageops::RgbImage) -> (u32, u32) {
        let (width, height) = (image.width, image.height);
        match self.config.detector {
            DetectorKind::Yunet => yunet::shrunk_size(width, height, self.config.detect_max_side),
            DetectorKind::Scrfd => scrfd::scaled_size(width, height),
            DetectorKind::Haar => (width, height),
        }
    }

    /// The crop of one kept face and where it was taken from (for the manifest): the box's
    /// square, or with `align = "eyes"` and landmarks, the eye-levelled square.
    fn crop(
        &self,
        image: &crate::imageops::RgbImage,
        detection: &Detection,
    ) -> Result<(Vec<u8>, Value), opencv::Error> {
        let c = &self.config;
        if let (Align::Eyes, Some(points)) = (c.align, &detection.landmarks) {
            let square = align::eyes_square(points, c.margin);
            let crop = align::crop_rotated(image, &square, c.size)?;
            let placed = json!({"centre": [round_to(square.centre[0], 1), round_to(square.centre[1], 1)],
                "side": round_to(square.side, 1), "angle_deg": round_to(square.angle.to_degrees(), 2)});
            return Ok((crop, placed));
        }
        let square = face_square(&detection.face, c.margin, c.border, image.width, image.height);
        Ok((crop_square(image, square, c.size)?, json!([square.x, square.y, square.side])))
    }
}

impl FacesStage {
    /// Looks again at a box big enough to keep (when configured and the detector can), notes what
    /// it saw in the box's manifest entry, and returns why the box goes, if it does.
    fn second_look_rejects(
        &self,
        image: &crate::imageops::RgbImage,
        detection: &Detection,
        entry: &mut Value,
    ) -> Result<Option<String>, Failure> {
        let c = &self.config;
        let Some(score) = detection.score.filter(|_| c.second_look) else {
            return Ok(None);
        };
        if score >= c.second_look_below {
            return Ok(None);
        }
        let params = second_look::SecondLookParams {
            face: c.second_look_face,
            context: c.second_look_context,
            threshold: c.second_look_threshold,
        };
        let look = self.detector.look_again(image, detection, &params).map_err(|e| Failure::error(e.to_string()))?;
        let Some(look) = look else {
            return Ok(None);
        };
        entry["second_look"] = json!([round_to(look.plain, 4), round_to(look.mirrored, 4)]);
        let mean = look.mean_with(score);
        if mean >= params.threshold {
            return Ok(None);
        }
        let why = format!("second look: mean score {mean:.3} < second_look_threshold {}", params.threshold);
        let Some(model) = &self.presence else {
            return Ok(Some(why));
        };
        // What the look rejects, a second model may give back (docs/faces.md, "a face-presence rescue").
        let presence = model.score(image, detection).map_err(|e| Failure::error(e.to_string()))?;
        entry["presence"] = json!(round_to(presence, 4));
        Ok((presence < c.presence_rescue)
            .then(|| format!("{why} and face presence {presence:.3} < presence_rescue {}", c.presence_rescue)))
    }
}

impl PerImageStage for FacesStage {
    const NAME: &'static str = "faces";

    fn row_shape(&self) -> [u64; 3] {
        [self.config.size as u64, self.config.size as u64, 3]
    }

    fn max_file_bytes(&self) -> u64 {
        self.config.max_file_bytes
    }

    fn peak_bytes_per_image(&self) -> (f64, String) {
        let c = &self.config;
        // After the decode, the RGB photo (3 B) stays while the detector works: YuNet at full
        // size adds its float input (12 B per pixel); its shrunk copy and the cascade's grey
        // images are small beside the decode's peak.
        let detect = match (c.detector, c.detect_max_side) {
            (DetectorKind::Yunet, 0) => 3.0 + 12.0,
            _ => 0.0,
        };
        let per_pixel = crate::imageops::DECODE_BYTES_PER_PIXEL.max(detect);
        let bytes = c.max_file_bytes as f64 + c.max_pixels as f64 * per_pixel;
        (
            bytes,
            format!("faces.max_file_bytes + faces.max_pixels {} x {per_pixel} B decoding and detection", c.max_pixels),
        )
    }

    fn process(&self, bytes: &[u8]) -> Result<Processed, Failure> {
        let options = DecodeOptions {
            max_pixels: self.config.max_pixels,
            min_decoded_side: None,
            keep_damaged: self.config.keep_damaged,
        };
        // libjpeg, as cv2.imread decodes: the same pixels give the same boxes.
        let decoded = decode_rgb_with_libjpeg(bytes, &options).map_err(|e| Failure::error(e.to_string()))?;
        let image = &decoded.image;
        if let Some(reason) = too_thin(image.width, image.height, self.detection_size(image)) {
            let mut detail = Map::new();
            detail.insert("width".into(), json!(image.width));
            detail.insert("height".into(), json!(image.height));
            return Err(Failure { status: Status::Skipped, reason, detail });
        }
        let detections = self.detector.detect(image).map_err(|e| Failure::error(e.to_string()))?;
        let mut rows = Vec::new();
        let mut boxes = Vec::with_capacity(detections.len());
        for detection in &detections {
            let mut entry = box_entry(detection);
            let side = box_side(detection, self.config.side_measure);
            if let Some(why) = invalid_box(detection, image.width, image.height) {
                entry["kept"] = json!(false);
                entry["invalid"] = json!(true);
                entry["reason"] = json!(format!("invalid box: {why}"));
            } else if side < self.config.min_face_side as i32 {
                entry["kept"] = json!(false);
                entry["reason"] = json!(format!("side {side} px < min_face_side {}", self.config.min_face_side));
            } else if let Some(reason) = self.second_look_rejects(image, detection, &mut entry)? {
                entry["kept"] = json!(false);
                entry["reason"] = json!(reason);
            } else {
                let (crop, placed) = self.crop(image, detection).map_err(|e| Failure::error(e.message))?;
                entry["kept"] = json!(true);
                entry["output"] = json!(rows.len());
                entry["crop"] = placed;
                rows.push(crop);
            }
            boxes.push(entry);
        }
        let mut detail = Map::new();
        detail.insert("width".into(), json!(image.width));
        detail.insert("height".into(), json!(image.height));
        detail.insert("detections".into(), json!(detections.len()));
        detail.insert("faces".into(), json!(rows.len()));
        detail.insert("boxes".into(), Value::Array(boxes));
        if let Some(damage) = &decoded.damage {
            detail.insert("damaged".into(), json!(damage));
        }
        if rows.is_empty() {
            let reason = if detections.is_empty() {
                "no face found".to_owned()
            } else {
                format!("no face of at least {} px", self.config.min_face_side)
            };
            return Err(Failure { status: Status::Skipped, reason, detail });
        }
        Ok(Processed { rows, detail })
    }

    fn save_extra(&self, source: &str, processed: &mut Processed) -> Result<(), String> {
        let Some(dir) = &self.png_dir else {
            return Ok(());
        };
        let stem = png_stem(source);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut written = Vec::with_capacity(processed.rows.len());
        for (k, row) in processed.rows.iter().enumerate() {
            let mut name = stem.clone();
            name.extend_from_slice(format!(".{k}.png").as_bytes());
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            let img = image::RgbImage::from_raw(self.config.size, self.config.size, row.clone()).expect("row size");
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| e.to_string())?;
            crate::fsutil::write_atomic(&path, bytes.get_ref()).map_err(|e| e.to_string())?;
            written.push(format!("crops/{}", encode_name(&name)));
        }
        processed.detail.insert("png".into(), json!(written));
        Ok(())
    }

    fn summarize(&self, rows: &[ManifestRow]) -> Value {
        let mut detections = 0u64;
        let mut kept = 0u64;
        let mut too_small = 0u64;
        let mut invalid = 0u64;
        let mut second_look = 0u64;
        let mut rescued = 0u64;
        let mut with_face = 0u64;
        for row in rows {
            detections += row.detail.get("detections").and_then(Value::as_u64).unwrap_or(0);
            let faces = row.detail.get("faces").and_then(Value::as_u64).unwrap_or(0);
            kept += faces;
            with_face += (faces > 0) as u64;
            if let Some(Value::Array(boxes)) = row.detail.get("boxes") {
                invalid += boxes.iter().filter(|b| b["invalid"] == json!(true)).count() as u64;
                let dropped = boxes.iter().filter(|b| b["kept"] == json!(false) && b["invalid"] != json!(true));
                let (looked, small): (Vec<_>, Vec<_>) = dropped.partition(|b| b.get("second_look").is_some());
                too_small += small.len() as u64;
                second_look += looked.len() as u64;
                rescued +=
                    boxes.iter().filter(|b| b["kept"] == json!(true) && b.get("presence").is_some()).count() as u64;
            }
        }
        let mut rejected = json!({ "smaller_than_min_face_side": too_small, "invalid_box": invalid });
        // The cascade has no second look: its summary stays as it was.
        if self.config.detector != DetectorKind::Haar {
            rejected["by_second_look"] = json!(second_look);
        }
        let mut summary = json!({
            "images_with_a_kept_face": with_face,
            "detections": detections,
            "kept": kept,
            "rejected": rejected,
        });
        if self.presence.is_some() {
            summary["kept_by_presence_rescue"] = json!(rescued);
        }
        summary
    }
}
