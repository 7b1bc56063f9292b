//! OpenCV's YuNet face detector (the 2023 model) through plain `cv::dnn`.
//!
//! Debian 12's OpenCV 4.6 has a `FaceDetectorYN`, but it expects the 2022 model's outputs; the 2023
//! model loads with `readNetFromONNX` and we decode its twelve outputs here the way OpenCV 4.8's
//! `FaceDetectorYN` does: for each stride s in 8, 16, 32 and each cell (row r, column c) of the
//! input padded to a multiple of 32, score = sqrt(cls * obj) (both clamped to [0, 1]), box centre
//! ((c, r) + offset) x s, box side exp(log-side) x s, landmarks ((c, r) + offset) x s; then
//! OpenCV's NMSBoxes over the boxes truncated to integers.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use opencv::core::{Mat, Rect, Scalar, Size, Vector, CV_32F};
use opencv::dnn::{self, Net};
use opencv::imgproc;
use opencv::prelude::*;

use super::detector::{Detection, DetectorError, FaceBox, FaceDetector, Landmarks};
use crate::imageops::RgbImage;

/// sha256 of models/face_detection_yunet_2023mar.onnx (232,589 bytes).
pub const MODEL_SHA256: &str = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4";

const STRIDES: [usize; 3] = [8, 16, 32];
/// The network's outputs in the order [`decode`] reads them: cls, obj, bbox, kps, each at the
/// three strides.
const OUTPUTS: [&str; 12] = [
    "cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16",
    "kps_32",
];

/// Detector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct YuNetParams {
    /// Faces scoring below this are dropped (OpenCV's default 0.9).
    pub score_threshold: f32,
    /// Overlap (IoU) above which the lower-scoring of two boxes is suppressed (OpenCV's 0.3).
    pub nms_threshold: f32,
    /// At most this many faces per photo after NMS.
    pub top_k: i32,
    /// Detect on a copy whose longer side is at most this (0: the photo as it is).
    pub max_side: u32,
}

pub struct YuNet {
    /// Identifies this detector's networks among the thread's.
    id: usize,
    model: Vec<u8>,
    params: YuNetParams,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // A Net holds its layers' buffers and is neither Send nor Sync: each worker thread builds its
    // own from the checked bytes, once.
    static NETS: RefCell<Vec<(usize, Net)>> = const { RefCell::new(Vec::new()) };
}

/// Reads the model, checks its sha256 (unless `expected_sha256` is empty) and that OpenCV reads it
/// as YuNet. Every failure is one line naming the file.
pub fn load_model(path: &Path, expected_sha256: &str) -> Result<Vec<u8>, DetectorError> {
    let err = |why: String| DetectorError::Model { path: path.to_owned(), why };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.is_empty() {
        return Err(err("empty file".into()));
    }
    if !expected_sha256.is_empty() {
        let got = crate::fsutil::sha256_hex(&bytes);
        if got != expected_sha256.to_ascii_lowercase() {
            return Err(err(format!(
                "sha256 {got} is not the expected {expected_sha256} ({} bytes: truncated or another file; \
                 faces.model_sha256 = \"\" accepts any)",
                bytes.len()
            )));
        }
    }
    build_net(&bytes).map_err(err)?;
    Ok(bytes)
}

/// One line out of OpenCV's multi-line messages.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn build_net(model: &[u8]) -> Result<Net, String> {
    let buffer = Vector::<u8>::from_slice(model);
    let net = dnn::read_net_from_onnx_buffer(&buffer)
        .map_err(|e| format!("not an ONNX model OpenCV can read: {}", one_line(&e.message)))?;
    if net.empty().unwrap_or(true) {
        return Err("not an ONNX model OpenCV can read (no layers)".into());
    }
    for name in OUTPUTS {
        if net.get_layer_id(name).map_or(true, |id| id < 0) {
            return Err(format!("not the 2023 YuNet model: it has no output {name}"));
        }
    }
    Ok(net)
}

impl YuNet {
    /// Loads and checks the model once here, so that a bad file fails the stage at start.
    pub fn new(path: &Path, expected_sha256: &str, params: YuNetParams) -> Result<Self, DetectorError> {
        let model = load_model(path, expected_sha256)?;
        Ok(Self { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), model, params })
    }

    pub fn params(&self) -> &YuNetParams {
        &self.params
    }

    /// Runs the network on `image` (RGB, already at detection size) and returns the faces in its
    /// pixels.
    fn detect_at_size(&self, image: &RgbImage) -> Result<Vec<RawFace>, DetectorError> {
        let (pad_w, pad_h) = (padded(image.width as usize), padded(image.height as usize));
        let mut blob = Mat::new_nd_with_default(&[1, 3, pad_h as i32, pad_w as i32], CV_32F, Scalar::all(0.0))?;
        fill_bgr_planes(image, blob.data_typed_mut::<f32>()?, pad_w, pad_h);
        let names: Vector<String> = OUTPUTS.iter().copied().collect();
        let mut outputs = Vector::<Mat>::new();
        NETS.with(|cell| -> Result<(), DetectorError> {
            let mut nets = cell.borrow_mut();
            let index = match nets.iter().position(|(id, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    let net = build_net(&self.model).map_err(DetectorError::OpenCv)?;
                    nets.push((self.id, net));
                    nets.len() - 1
                }
            };
            let net = &mut nets[index].1;
            net.set_input(&blob, "", 1.0, Scalar::default())?;
            net.forward(&mut outputs, &names)?;
            Ok(())
        })?;
        let mut slices = Vec::with_capacity(OUTPUTS.len());
        for mat in outputs.iter() {
            slices.push(mat.data_typed::<f32>()?.to_vec());
        }
        let views: Vec<&[f32]> = slices.iter().map(Vec::as_slice).collect();
        let faces = decode(&views, pad_w, pad_h, self.params.score_threshold)?;
        nms(faces, &self.params)
    }
}

/// `n` rounded up to a multiple of 32, as the network's three strides need.
pub fn padded(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// The network's input: planes B, G, R of 0-255 floats (what cv::dnn::blobFromImage makes of a BGR
/// photo), zero to the right and below the photo.
fn fill_bgr_planes(image: &RgbImage, blob: &mut [f32], pad_w: usize, pad_h: usize) {
    let plane = pad_w * pad_h;
    let width = image.width as usize;
    for (y, row) in image.pixels.chunks_exact(width * 3).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = y * pad_w + x;
            blob[at] = px[2] as f32;
            blob[plane + at] = px[1] as f32;
            blob[2 * plane + at] = px[0] as f32;
        }
    }
}

/// One decoded face before NMS, in the pixels of the image the network saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawFace {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub landmarks: Landmarks,
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
#[error("YuNet output {name} holds {got} values, {want} expected")]
pub struct ShapeError {
    name: &'static str,
    got: usize,
    want: usize,
}

/// Decodes the twelve outputs (in [`OUTPUTS`] order) of a `pad_w` x `pad_h` input into every
/// face scoring at least `score_threshold`.
pub fn decode(
    outputs: &[&[f32]],
    pad_w: usize,
    pad_h: usize,
    score_threshold: f32,
) -> Result<Vec<RawFace>, ShapeError> {
    let mut faces = Vec::new();
    for (level, stride) in STRIDES.iter().enumerate() {
        let (cols, rows) = (pad_w / stride, pad_h / stride);
        let cells = cols * rows;
        let [cls, obj, bbox, kps] = [0, 1, 2, 3].map(|k| outputs[level + 3 * k]);
        for (k, data, per_cell) in [(0, cls, 1), (1, obj, 1), (2, bbox, 4), (3, kps, 10)] {
            if data.len() != cells * per_cell {
                return Err(ShapeError { name: OUTPUTS[level + 3 * k], got: data.len(), want: cells * per_cell });
            }
        }
        let s = *stride as f32;
        for cell in 0..cells {
            let score = (cls[cell].clamp(0.0, 1.0) * obj[cell].clamp(0.0, 1.0)).sqrt();
            if score < score_threshold {
                continue;
            }
            let (c, r) = ((cell % cols) as f32, (cell / cols) as f32);
            let b = &bbox[cell * 4..cell * 4 + 4];
            let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
            let (w, h) = (b[2].exp() * s, b[3].exp() * s);
            let p = &kps[cell * 10..cell * 10 + 10];
            let landmarks = std::array::from_fn(|n| [(p[2 * n] + c) * s, (p[2 * n + 1] + r) * s]);
            faces.push(RawFace { x: cx - w / 2.0, y: cy - h / 2.0, w, h, landmarks, score });
        }
    }
    Ok(faces)
}

impl From<ShapeError> for DetectorError {
    fn from(e: ShapeError) -> Self {
        DetectorError::OpenCv(e.to_string())
    }
}

/// OpenCV's NMSBoxes on the boxes truncated to integers (as FaceDetectorYN does), best first.
fn nms(faces: Vec<RawFace>, params: &YuNetParams) -> Result<Vec<RawFace>, DetectorError> {
    if faces.len() < 2 {
        return Ok(faces);
    }
    let boxes: Vector<Rect> = faces.iter().map(|f| Rect::new(f.x as i32, f.y as i32, f.w as i32, f.h as i32)).collect();
    let scores: Vector<f32> = faces.iter().map(|f| f.score).collect();
    let mut keep = Vector::<i32>::new();
    dnn::nms_boxes(&boxes, &scores, params.score_threshold, params.nms_threshold, &mut keep, 1.0, params.top_k)?;
    Ok(keep.iter().map(|i| faces[i as usize]).collect())
}

/// The detection copy's size: the longer side brought to `max_side`, the other side rounded half
/// up, in integers (benches and fixtures in Python use the same rule).
pub fn shrunk_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height) as u64;
    if max_side == 0 || longest <= max_side as u64 {
        return (width, height);
    }
    let side = |n: u32| ((2 * n as u64 * max_side as u64 + longest) / (2 * longest)).max(1) as u32;
    (side(width), side(height))
}

/// `image` shrunk with OpenCV's INTER_AREA to `size`.
fn shrink(image: &RgbImage, size: (u32, u32)) -> Result<RgbImage, opencv::Error> {
    let flat = Mat::new_rows_cols_with_data(image.height as i32, (image.width * 3) as i32, &image.pixels)?;
    let src = flat.reshape(3, image.height as i32)?;
    let mut dst = Mat::default();
    imgproc::resize(&src, &mut dst, Size::new(size.0 as i32, size.1 as i32), 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(RgbImage::new(size.0, size.1, dst.data_bytes()?.to_vec()))
}

impl FaceDetector for YuNet {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let size = shrunk_size(image.width, image.height, self.params.max_side);
        let faces = if size == (image.width, image.height) {
            self.detect_at_size(image)?
        } else {
            self.detect_at_size(&shrink(image, size)?)?
        };
        let (sx, sy) = (image.width as f32 / size.0 as f32, image.height as f32 / size.1 as f32);
        Ok(faces.iter().map(|f| to_detection(f, sx, sy)).collect())
    }
}

/// A face of the detection copy in the photo's pixels.
fn to_detection(face: &RawFace, sx: f32, sy: f32) -> Detection {
    let exact = [face.x * sx, face.y * sy, face.w * sx, face.h * sy];
    let landmarks = face.landmarks.map(|[x, y]| [x * sx, y * sy]);
    let face_box = FaceBox {
        x: exact[0].round() as i32,
        y: exact[1].round() as i32,
        w: exact[2].round() as i32,
        h: exact[3].round() as i32,
        neighbours: 0,
    };
    Detection { face: face_box, exact, score: Some(face.score), landmarks: Some(landmarks) }
}

/// Where the default model lives: models/ under the working folder, else under the source tree
/// this binary was built from (tests and `cargo run` from elsewhere).
pub fn resolve_model_path(configured: &str) -> PathBuf {
    let path = PathBuf::from(configured);
    if path.is_absolute() || path.exists() {
        return path;
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(&path);
    if in_tree.exists() {
        in_tree
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs of a 32 x 32 input (16 cells at stride 8, 4 at 16, 1 at 32), all scores zero.
    fn empty_outputs() -> Vec<Vec<f32>> {
        let cells = [16, 4, 1];
        let mut out = Vec::new();
        for per_cell in [1, 1, 4, 10] {
            for c in cells {
                out.push(vec![0.0; c * per_cell]);
            }
        }
        out
    }

    #[test]
    fn a_confident_cell_decodes_to_its_box_and_landmarks() {
        let mut out = empty_outputs();
        // Stride 16, cell (row 1, column 0): index 2 of 4.
        out[1][2] = 0.81; // cls_16
        out[4][2] = 1.2; // obj_16, clamped to 1
        out[7][8..12].copy_from_slice(&[0.5, 0.25, 1.0f32.ln(), 2.0f32.ln()]);
        out[10][20..30].copy_from_slice(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        let views: Vec<&[f32]> = out.iter().map(Vec::as_slice).collect();
        let faces = decode(&views, 32, 32, 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert!((f.score - 0.9).abs() < 1e-6, "{f:?}");
        // Centre (0 + 0.5, 1 + 0.25) x 16 = (8, 20); size (16, 32).
        let close = |a: f32, b: f32| (a - b).abs() < 1e-4;
        assert!(close(f.x, 0.0) && close(f.y, 4.0) && close(f.w, 16.0) && close(f.h, 32.0), "{f:?}");
        assert!(close(f.landmarks[0][0], 1.6) && close(f.landmarks[0][1], 19.2), "{f:?}");
        assert!(close(f.landmarks[4][0], 14.4) && close(f.landmarks[4][1], 32.0), "{f:?}");
        assert!(decode(&views, 32, 32, 0.95).unwrap().is_empty());
    }

    #[test]
    fn outputs_of_the_wrong_size_are_an_error() {
        let mut out = empty_outputs();
        out[9].pop();
        let views: Vec<&[f32]> = out.iter().map(Vec::as_slice).collect();
        let err = decode(&views, 32, 32, 0.5).unwrap_err();
        assert!(err.to_string().contains("kps_8"), "{err}");
    }

    #[test]
    fn shrunk_sizes_round_half_up_and_never_grow() {
        assert_eq!(shrunk_size(1024, 683, 640), (640, 427));
        assert_eq!(shrunk_size(300, 200, 640), (300, 200));
        assert_eq!(shrunk_size(3, 2000, 640), (1, 640));
        assert_eq!(shrunk_size(1000, 1000, 0), (1000, 1000));
        assert_eq!(padded(427), 448);
        assert_eq!(padded(640), 640);
    }
}
