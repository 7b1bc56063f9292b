//! SCRFD (InsightFace's face detector with keypoints) through plain `cv::dnn`, for a model file
//! the user supplies: the project neither ships nor downloads one (its weights' licence is
//! unclear; docs/faces.md). Read as the `scrfd` 0.3.0 PyPI package's `models/scrfd.onnx` is made:
//! a fixed 640 x 640 RGB input of (x - 127.5) / 128 with the photo, scaled so that its longer side
//! is 640, in the top-left corner; nine outputs, `score_s`, `bbox_s` and `kps_s` for strides s =
//! 8, 16, 32, two anchors a cell. An anchor's centre is its cell's corner (column, row) x s; the box
//! is the centre minus (left, top) and plus (right, bottom) distances x s; each keypoint is the
//! centre plus its offset x s. Then greedy NMS on the float boxes.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use opencv::core::{Mat, Scalar, Size, Vector, CV_32F};
use opencv::dnn::Net;
use opencv::imgproc;
use opencv::prelude::*;

use super::detector::{Detection, DetectorError, FaceDetector};
use super::second_look::{self, Look, SecondLookParams};
use super::yunet::{build_net_with, load_checked, to_detection, with_net, NetKey, RawFace};
use crate::imageops::RgbImage;

/// sha256 of the `scrfd` 0.3.0 package's models/scrfd.onnx (3,291,739 bytes), the model this
/// decoding was checked on; configs/scrfd.toml expects it.
pub const MODEL_SHA256: &str = "9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30";
/// The network's fixed input side.
pub const SIDE: usize = 640;
const STRIDES: [usize; 3] = [8, 16, 32];
const ANCHORS: usize = 2;
/// The outputs in the order [`decode`] reads them.
const OUTPUTS: [&str; 9] =
    ["score_8", "score_16", "score_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"];

/// Detector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrfdParams {
    pub score_threshold: f32,
    /// Of two boxes overlapping more than this (IoU), the lower-scoring one goes.
    pub nms_threshold: f32,
}

pub struct Scrfd {
    id: usize,
    model: Vec<u8>,
    params: ScrfdParams,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // As YuNet's: a Net is neither Send nor Sync, so each worker thread builds its own once.
    static NETS: RefCell<Vec<(NetKey, Net)>> = const { RefCell::new(Vec::new()) };
}

impl Scrfd {
    /// Loads and checks the model once, so that a bad file fails the stage at start.
    pub fn new(path: &Path, expected_sha256: &str, params: ScrfdParams) -> Result<Self, DetectorError> {
        let model = load_checked(path, expected_sha256, "SCRFD", &OUTPUTS)?;
        Ok(Self { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), model, params })
    }

    /// Runs the network on `image` (at most 640 x 640, placed top-left) and returns its faces in
    /// the image's pixels, NMS done.
    fn detect_placed(&self, image: &RgbImage, score_threshold: f32) -> Result<Vec<RawFace>, DetectorError> {
        let mut blob = Mat::new_nd_with_default(&[1, 3, SIDE as i32, SIDE as i32], CV_32F, Scalar::all(0.0))?;
        fill_rgb_planes(image, blob.data_typed_mut::<f32>()?);
        let names: Vector<String> = OUTPUTS.iter().copied().collect();
        let mut outputs = Vector::<Mat>::new();
        let build = || build_net_with(&self.model, "SCRFD", &OUTPUTS);
        with_net(&NETS, (self.id, 0), build, |net| {
            net.set_input(&blob, "", 1.0, Scalar::default())?;
            net.forward(&mut outputs, &names)?;
            Ok(())
        })?;
        let mut slices = Vec::with_capacity(OUTPUTS.len());
        for mat in outputs.iter() {
            slices.push(mat.data_typed::<f32>()?.to_vec());
        }
        let views: Vec<&[f32]> = slices.iter().map(Vec::as_slice).collect();
        let faces = decode(&views, score_threshold).map_err(|e| DetectorError::OpenCv(e.to_string()))?;
        Ok(greedy_nms(faces, self.params.nms_threshold))
    }
}

/// The input: planes R, G, B of (x - 127.5) / 128, the photo top-left, black (0) elsewhere.
fn fill_rgb_planes(image: &RgbImage, blob: &mut [f32]) {
    let plane = SIDE * SIDE;
    blob.fill(-127.5 / 128.0);
    let width = image.width as usize;
    for (y, row) in image.pixels.chunks_exact(width * 3).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = y * SIDE + x;
            for c in 0..3 {
                blob[c * plane + at] = (px[c] as f32 - 127.5) / 128.0;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("SCRFD output {name} holds {got} values, {want} expected")]
pub struct ShapeError {
    name: &'static str,
    got: usize,
    want: usize,
}

/// Decodes the nine outputs (in [`OUTPUTS`] order) into every face scoring at least
/// `score_threshold`, in the 640 x 640 input's pixels.
pub fn decode(outputs: &[&[f32]], score_threshold: f32) -> Result<Vec<RawFace>, ShapeError> {
    let mut faces = Vec::new();
    for (level, &stride) in STRIDES.iter().enumerate() {
        let cols = SIDE / stride;
        let anchors = cols * cols * ANCHORS;
        let [score, bbox, kps] = [0, 1, 2].map(|k| outputs[level + 3 * k]);
        for (k, data, per_anchor) in [(0, score, 1), (1, bbox, 4), (2, kps, 10)] {
            if data.len() != anchors * per_anchor {
                return Err(ShapeError { name: OUTPUTS[level + 3 * k], got: data.len(), want: anchors * per_anchor });
            }
        }
        let s = stride as f32;
        for anchor in 0..anchors {
            // A NaN score is no face.
            if score[anchor].is_nan() || score[anchor] < score_threshold {
                continue;
            }
            let cell = anchor / ANCHORS;
            let (cx, cy) = ((cell % cols) as f32 * s, (cell / cols) as f32 * s);
            let d = &bbox[anchor * 4..anchor * 4 + 4];
            let (x0, y0, x1, y1) = (cx - d[0] * s, cy - d[1] * s, cx + d[2] * s, cy + d[3] * s);
            let p = &kps[anchor * 10..anchor * 10 + 10];
            let landmarks = std::array::from_fn(|n| [cx + p[2 * n] * s, cy + p[2 * n + 1] * s]);
            faces.push(RawFace { x: x0, y: y0, w: x1 - x0, h: y1 - y0, landmarks, score: score[anchor] });
        }
    }
    Ok(faces)
}

/// Greedy NMS on the float boxes: best score first (ties in decoding order), a box overlapping a
/// kept one by IoU > `threshold` goes.
pub fn greedy_nms(mut faces: Vec<RawFace>, threshold: f32) -> Vec<RawFace> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<RawFace> = Vec::new();
    for face in faces {
        let b = [face.x, face.y, face.w, face.h];
        if kept.iter().all(|k| second_look::overlap(&[k.x, k.y, k.w, k.h], &b) <= threshold) {
            kept.push(face);
        }
    }
    kept
}

/// The photo's size in the input: the longer side 640, the other rounded half up.
pub fn scaled_size(width: u32, height: u32) -> (u32, u32) {
    let longest = width.max(height) as u64;
    let side = |n: u32| ((2 * n as u64 * SIDE as u64 + longest) / (2 * longest)).max(1) as u32;
    (side(width), side(height))
}

/// `image` resized to `size`: INTER_AREA when shrinking, INTER_LINEAR when growing.
fn resized(image: &RgbImage, size: (u32, u32)) -> Result<RgbImage, opencv::Error> {
    if size == (image.width, image.height) {
        return Ok(image.clone());
    }
    let flat = Mat::new_rows_cols_with_data(image.height as i32, (image.width * 3) as i32, &image.pixels)?;
    let src = flat.reshape(3, image.height as i32)?;
    let mut dst = Mat::default();
    let interpolation = if size.0 < image.width { imgproc::INTER_AREA } else { imgproc::INTER_LINEAR };
    imgproc::resize(&src, &mut dst, Size::new(size.0 as i32, size.1 as i32), 0.0, 0.0, interpolation)?;
    Ok(RgbImage::new(size.0, size.1, dst.data_bytes()?.to_vec()))
}

impl FaceDetector for Scrfd {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let size = scaled_size(image.width, image.height);
        let faces = self.detect_placed(&resized(image, size)?, self.params.score_threshold)?;
        let (sx, sy) = (image.width as f32 / size.0 as f32, image.height as f32 / size.1 as f32);
        Ok(faces.iter().map(|f| to_detection(f, sx, sy)).collect())
    }

    /// SCRFD again on the neighbourhood, placed top-left in its 640 square (a whole forward pass
    /// per look: see docs/faces.md for its cost).
    fn look_again(
        &self,
        image: &RgbImage,
        detection: &Detection,
        params: &SecondLookParams,
    ) -> Result<Option<Look>, DetectorError> {
        let detect = |near: &RgbImage| -> Result<Vec<([f32; 4], f32)>, DetectorError> {
            let faces = self.detect_placed(near, second_look::SCORE_FLOOR)?;
            Ok(faces.iter().map(|f| ([f.x, f.y, f.w, f.h], f.score)).collect())
        };
        second_look::look_again(image, detection, params, detect).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_outputs() -> Vec<Vec<f32>> {
        let anchors = STRIDES.map(|s| (SIDE / s) * (SIDE / s) * ANCHORS);
        let mut out = Vec::new();
        for per_anchor in [1, 4, 10] {
            for a in anchors {
                out.push(vec![0.0; a * per_anchor]);
            }
        }
        out
    }

    #[test]
    fn an_anchor_decodes_to_distances_from_its_cell_corner() {
        let mut out = empty_outputs();
        // Stride 32 (20 x 20 cells), cell row 2 column 3, second anchor: (2 * 20 + 3) * 2 + 1.
        let anchor = 87;
        out[2][anchor] = 0.9;
        out[5][anchor * 4..anchor * 4 + 4].copy_from_slice(&[1.0, 0.5, 2.0, 1.5]);
        out[8][anchor * 10..anchor * 10 + 2].copy_from_slice(&[0.25, -0.5]);
        let views: Vec<&[f32]> = out.iter().map(Vec::as_slice).collect();
        let faces = decode(&views, 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        // Centre (96, 64): box from (64, 48) to (160, 112); first keypoint (104, 48).
        assert_eq!([f.x, f.y, f.w, f.h], [64.0, 48.0, 96.0, 64.0]);
        assert_eq!(f.landmarks[0], [104.0, 48.0]);
        assert_eq!(f.landmarks[1], [96.0, 64.0]);
        assert!(decode(&views, 0.95).unwrap().is_empty());
        out[4].pop();
        let views: Vec<&[f32]> = out.iter().map(Vec::as_slice).collect();
        assert!(decode(&views, 0.5).unwrap_err().to_string().contains("bbox_16"));
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_sizes_scale_to_640() {
        let face = |x: f32, score: f32| RawFace { x, y: 0.0, w: 10.0, h: 10.0, landmarks: [[0.0; 2]; 5], score };
        let kept = greedy_nms(vec![face(0.0, 0.6), face(1.0, 0.9), face(30.0, 0.5)], 0.4);
        assert_eq!(kept.iter().map(|f| f.x).collect::<Vec<_>>(), vec![1.0, 30.0]);
        assert_eq!(scaled_size(1024, 683), (640, 427));
        assert_eq!(scaled_size(320, 200), (640, 400));
    }
}
