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
use super::second_look::{self, Look, SecondLookParams};
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
    /// Detect on a copy whose longer side is at most this (0: the photo as it is); used when
    /// `face_px` is 0.
    pub max_side: u32,
    /// Scale where faces are: detect on a copy in which a face of `min_face_side` px measures
    /// at least this (never enlarged, never smaller than the `max_side` copy), plus a 4x smaller
    /// copy for faces too big for YuNet there (0: off, `max_side` alone decides).
    pub face_px: u32,
    /// The smallest face kept (faces.min_face_side).
    pub min_face_side: u32,
}

/// YuNet finds faces up to about this side (px) in its input; bigger ones are looked for on a
/// copy 4x smaller.
pub const LARGEST_FACE: f64 = 300.0;
/// The smaller copy only adds faces that measure at least this (px) in the main copy: smaller
/// ones the main copy sees better, and the small copy's small boxes are mostly not faces.
pub const COARSE_FROM: f32 = 200.0;

/// The detection copies' sizes for a `width` x `height` photo (see [`YuNetParams::face_px`]).
pub fn detection_sizes(width: u32, height: u32, params: &YuNetParams) -> Vec<(u32, u32)> {
    if params.face_px == 0 || params.min_face_side == 0 {
        return vec![shrunk_size(width, height, params.max_side)];
    }
    // Never smaller than the longer-side rule's copy: on photos of up to ~1000 px, faces near
    // min_face_side are found more often at that size (measured on the dev photos halved).
    let longer_side_rule = params.max_side as f64 / width.max(height) as f64;
    let fine = (params.face_px as f64 / params.min_face_side as f64).max(longer_side_rule).min(1.0);
    let at = |scale: f64| {
        let side = |n: u32| ((n as f64 * scale).round() as u32).clamp(1, n);
        (side(width), side(height))
    };
    let mut sizes = vec![at(fine)];
    // Only where the main copy could hold faces well over YuNet's largest: on a smaller photo the
    // second copy costs a quarter of the detection time (a small forward pass has a fixed cost)
    // and finds almost nothing new.
    if width.min(height) as f64 * fine > 2.0 * LARGEST_FACE {
        sizes.push(at(fine / 4.0));
    }
    sizes
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
    // own from the checked bytes. One per detector and pass (the photo's copy, the 4x smaller copy,
    // the second look), re-planned by cv::dnn when the input's shape changes: a re-plan costs
    // little beside building a network and its first forward pass, which one network per shape
    // (the padded photo shapes are many) did over and over once the least recently used went.
    static NETS: RefCell<Vec<(NetKey, Net)>> = const { RefCell::new(Vec::new()) };
}

/// A thread's network: the detector's id and its pass ([`Pass`] for YuNet).
pub(super) type NetKey = (usize, usize);
/// Networks kept per thread (three per YuNet detector).
const NETS_KEPT: usize = 8;

/// What a forward pass is for: each has its network, so that the second look's small fixed shape
/// does not re-plan the photo's network and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The detection copy of the photo.
    Photo = 0,
    /// The 4x smaller copy for big faces.
    Coarse = 1,
    /// The second look's neighbourhood and its mirror.
    Look = 2,
}

/// Runs `f` on the thread's network for `key`, building it from `model` (with `build`) when
/// missing and dropping the least recently used beyond [`NETS_KEPT`].
pub(super) fn with_net<T>(
    nets: &'static std::thread::LocalKey<RefCell<Vec<(NetKey, Net)>>>,
    key: NetKey,
    build: impl FnOnce() -> Result<Net, String>,
    f: impl FnOnce(&mut Net) -> Result<T, DetectorError>,
) -> Result<T, DetectorError> {
    nets.with(|cell| {
        let mut nets = cell.borrow_mut();
        let net = match nets.iter().position(|(k, _)| *k == key) {
            Some(i) => nets.remove(i).1,
            None => build().map_err(DetectorError::OpenCv)?,
        };
        nets.push((key, net));
        if nets.len() > NETS_KEPT {
            nets.remove(0);
        }
        let last = nets.len() - 1;
        f(&mut nets[last].1)
    })
}

/// Reads the model, checks its sha256 (unless `expected_sha256` is empty) and that OpenCV reads it
/// as YuNet. Every failure is one line naming the file.
pub fn load_model(path: &Path, expected_sha256: &str) -> Result<Vec<u8>, DetectorError> {
    load_checked(path, expected_sha256, "YuNet", &OUTPUTS)
}

/// Reads an ONNX model, checks its sha256 (unless `expected_sha256` is empty) and that OpenCV
/// reads it with every output in `outputs`; errors name the file and `detector`.
pub(super) fn load_checked(
    path: &Path,
    expected_sha256: &str,
    detector: &'static str,
    outputs: &[&str],
) -> Result<Vec<u8>, DetectorError> {
    let err = |why: String| DetectorError::Model { path: path.to_owned(), detector, why };
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
    build_net_with(&bytes, detector, outputs).map_err(err)?;
    Ok(bytes)
}

/// One line out of OpenCV's multi-line messages.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn build_net(model: &[u8]) -> Result<Net, String> {
    build_net_with(model, "YuNet", &OUTPUTS)
}

/// OpenCV's network from ONNX bytes, refused unless it has every output in `outputs`.
pub(super) fn build_net_with(model: &[u8], detector: &str, outputs: &[&str]) -> Result<Net, String> {
    let buffer = Vector::<u8>::from_slice(model);
    let net = dnn::read_net_from_onnx_buffer(&buffer)
        .map_err(|e| format!("not an ONNX model OpenCV can read: {}", one_line(&e.message)))?;
    if net.empty().unwrap_or(true) {
        return Err("not an ONNX model OpenCV can read (no layers)".into());
    }
    for name in outputs {
        if net.get_layer_id(name).map_or(true, |id| id < 0) {
            let which = match detector {
                "YuNet" => "the 2023 YuNet model",
                "SCRFD" => "an SCRFD model with keypoints",
                _ => "MediaPipe's face-presence model (benches/facemesh_flag_to_onnx.py writes it)",
            };
            return Err(format!("not {which}: it has no output {name}"));
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
    fn detect_at_size(
        &self,
        image: &RgbImage,
        pass: Pass,
        score_threshold: f32,
    ) -> Result<Vec<RawFace>, DetectorError> {
        let (pad_w, pad_h) = (padded(image.width as usize), padded(image.height as usize));
        let mut blob = Mat::new_nd_with_default(&[1, 3, pad_h as i32, pad_w as i32], CV_32F, Scalar::all(0.0))?;
        fill_bgr_planes(image, blob.data_typed_mut::<f32>()?, pad_w, pad_h);
        let names: Vector<String> = OUTPUTS.iter().copied().collect();
        let mut outputs = Vector::<Mat>::new();
        with_net(
            &NETS,
            (self.id, pass as usize),
            || build_net(&self.model),
            |net| {
                net.set_input(&blob, "", 1.0, Scalar::default())?;
                net.forward(&mut outputs, &names)?;
                Ok(())
            },
        )?;
        let mut slices = Vec::with_capacity(OUTPUTS.len());
        for mat in outputs.iter() {
            slices.push(mat.data_typed::<f32>()?.to_vec());
        }
        let views: Vec<&[f32]> = slices.iter().map(Vec::as_slice).collect();
        let faces = decode(&views, pad_w, pad_h, score_threshold)?;
        nms(faces, score_threshold, &self.params)
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
fn nms(faces: Vec<RawFace>, score_threshold: f32, params: &YuNetParams) -> Result<Vec<RawFace>, DetectorError> {
    if faces.len() < 2 {
        return Ok(faces);
    }
    let boxes: Vector<Rect> = faces.iter().map(|f| Rect::new(f.x as i32, f.y as i32, f.w as i32, f.h as i32)).collect();
    let scores: Vector<f32> = faces.iter().map(|f| f.score).collect();
    let mut keep = Vector::<i32>::new();
    dnn::nms_boxes(&boxes, &scores, score_threshold, params.nms_threshold, &mut keep, 1.0, params.top_k)?;
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

/// `image` shrunk with OpenCV's INTER_AREA to `size` (the same pixels computed here where the
/// factor is not a whole number: [`super::area`]).
pub(super) fn shrink(image: &RgbImage, size: (u32, u32)) -> Result<RgbImage, opencv::Error> {
    if super::area::shrinks_here((image.width, image.height), size) {
        let pixels = super::area::shrink_area(&image.pixels, (image.width, image.height), size);
        return Ok(RgbImage::new(size.0, size.1, pixels));
    }
    let flat = Mat::new_rows_cols_with_data(image.height as i32, (image.width * 3) as i32, &image.pixels)?;
    let src = flat.reshape(3, image.height as i32)?;
    let mut dst = Mat::default();
    imgproc::resize(&src, &mut dst, Size::new(size.0 as i32, size.1 as i32), 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(RgbImage::new(size.0, size.1, dst.data_bytes()?.to_vec()))
}

impl FaceDetector for YuNet {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let sizes = detection_sizes(image.width, image.height, &self.params);
        let threshold = self.params.score_threshold;
        let mut levels = Vec::with_capacity(sizes.len());
        let main = if sizes[0] == (image.width, image.height) { None } else { Some(shrink(image, sizes[0])?) };
        let main = main.as_ref().unwrap_or(image);
        for (level, &size) in sizes.iter().enumerate() {
            let mut faces = if level == 0 {
                self.detect_at_size(main, Pass::Photo, threshold)?
            } else {
                // From the main copy: shrinking 4x is cheaper from there than from the photo.
                self.detect_at_size(&shrink(main, size)?, Pass::Coarse, threshold)?
            };
            if level > 0 {
                let ratio = sizes[0].0 as f32 / size.0 as f32;
                faces.retain(|f| (f.w.max(0.0) * f.h.max(0.0)).sqrt() * ratio >= COARSE_FROM);
            }
            let (sx, sy) = (image.width as f32 / size.0 as f32, image.height as f32 / size.1 as f32);
            levels.push((faces, sx, sy));
        }
        if let [(faces, sx, sy)] = &levels[..] {
            return Ok(faces.iter().map(|f| to_detection(f, *sx, *sy)).collect());
        }
        // Several copies: their faces in the photo's pixels, one NMS over all.
        let all: Vec<RawFace> =
            levels.iter().flat_map(|(faces, sx, sy)| faces.iter().map(|f| scaled(f, *sx, *sy))).collect();
        Ok(nms(all, threshold, &self.params)?.iter().map(|f| to_detection(f, 1.0, 1.0)).collect())
    }

    fn look_again(
        &self,
        image: &RgbImage,
        detection: &Detection,
        params: &SecondLookParams,
    ) -> Result<Option<Look>, DetectorError> {
        let detect = |near: &RgbImage| -> Result<Vec<([f32; 4], f32)>, DetectorError> {
            let faces = self.detect_at_size(near, Pass::Look, second_look::SCORE_FLOOR)?;
            Ok(faces.iter().map(|f| ([f.x, f.y, f.w, f.h], f.score)).collect())
        };
        second_look::look_again(image, detection, params, detect).map(Some)
    }
}

/// A face of a detection copy in the photo's pixels, before rounding.
fn scaled(face: &RawFace, sx: f32, sy: f32) -> RawFace {
    RawFace {
        x: face.x * sx,
        y: face.y * sy,
        w: face.w * sx,
        h: face.h * sy,
        landmarks: face.landmarks.map(|[x, y]| [x * sx, y * sy]),
        score: face.score,
    }
}

/// A face of the detection copy in the photo's pixels.
pub(super) fn to_detection(face: &RawFace, sx: f32, sy: f32) -> Detection {
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
    fn faces_are_looked_for_where_a_min_face_side_face_is_face_px() {
        let params = |face_px| YuNetParams {
            score_threshold: 0.5,
            nms_threshold: 0.3,
            top_k: 10,
            max_side: 640,
            face_px,
            min_face_side: 64,
        };
        // 40 / 64: a 1024 x 683 photo at 640 x 427 (too small to need a second copy).
        assert_eq!(detection_sizes(1024, 683, &params(40)), vec![(640, 427)]);
        // Where the main copy's shorter side is over 600 px, also 4x smaller for faces over 300 px.
        assert_eq!(detection_sizes(2048, 1366, &params(40)), vec![(1280, 854), (320, 213)]);
        // The same scale whatever the photo's size; small photos need no second copy.
        assert_eq!(detection_sizes(3072, 2049, &params(40)), vec![(1920, 1281), (480, 320)]);
        // Never below the longer-side-640 copy: a small photo stays as it is.
        assert_eq!(detection_sizes(512, 342, &params(40)), vec![(512, 342)]);
        // Never enlarged; off: the longer side rule.
        assert_eq!(detection_sizes(100, 80, &params(128)), vec![(100, 80)]);
        // A portrait photo: 0.625 x 1400 = 875 px high, where the longer side rule gave 640.
        assert_eq!(detection_sizes(1024, 1400, &params(40)), vec![(640, 875), (160, 219)]);
        assert_eq!(detection_sizes(1024, 683, &params(0)), vec![(640, 427)]);
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
