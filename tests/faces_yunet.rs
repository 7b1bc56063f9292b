//! YuNet through cv::dnn against Python's cv2 4.10 FaceDetectorYN: the boxes, landmarks and scores
//! that tests/fixtures/yunet_cv2_boxes.py recorded on opencv-doc's photos, with the same model file.

mod common;

use std::path::Path;

use common::OPENCV_SAMPLES;
use dcgan_pipeline::faces::detector::{Detection, FaceDetector};
use dcgan_pipeline::faces::yunet::{YuNet, YuNetParams, MODEL_SHA256};
use dcgan_pipeline::imageops::{decode_rgb_with_libjpeg, DecodeOptions};
use serde_json::Value;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/face_detection_yunet_2023mar.onnx");
const FIXTURE: &str = include_str!("fixtures/yunet_cv2_boxes.json");
/// "Within a pixel or two": box corners, sides and landmarks.
const PIXELS: f32 = 2.0;
/// Faces this close to the fixture's threshold may fall on either side of it (OpenCV 4.6's and
/// 4.10's convolutions round differently); they are not required on both sides.
const MARGIN: f32 = 0.03;

/// A fixture row or one of ours: x, y, w, h, 10 landmark coordinates, score.
fn as_row(d: &Detection) -> Vec<f32> {
    let mut row = d.exact.to_vec();
    row.extend(d.landmarks.expect("YuNet gives landmarks").iter().flatten());
    row.push(d.score.expect("YuNet gives a score"));
    row
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a[..14].iter().zip(&b[..14]).all(|(x, y)| (x - y).abs() <= PIXELS) && (a[14] - b[14]).abs() <= 0.02
}

fn detect_all(max_side: u32, threshold: f32) -> Vec<(String, Vec<Vec<f32>>)> {
    let params = YuNetParams {
        score_threshold: threshold,
        nms_threshold: 0.3,
        top_k: 5000,
        max_side,
        face_px: 0,
        min_face_side: 64,
    };
    let yunet = YuNet::new(Path::new(MODEL), MODEL_SHA256, params).unwrap();
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let run = fixture["runs"].as_array().unwrap().iter().find(|r| r["max_side"] == max_side).unwrap();
    let options = DecodeOptions::checked(1 << 28);
    run["photos"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| {
            let bytes = std::fs::read(Path::new(OPENCV_SAMPLES).join(name)).unwrap();
            let image = decode_rgb_with_libjpeg(&bytes, &options).unwrap().image;
            (name.clone(), yunet.detect(&image).unwrap().iter().map(as_row).collect())
        })
        .collect()
}

fn check_against_fixture(max_side: u32) {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(fixture["model_sha256"], MODEL_SHA256);
    let threshold = fixture["score_threshold"].as_f64().unwrap() as f32;
    let run = fixture["runs"].as_array().unwrap().iter().find(|r| r["max_side"] == max_side).unwrap();
    let ours = detect_all(max_side, threshold);
    assert_eq!(ours.len(), 91, "every opencv-doc photo of the fixture");
    let mut matched = 0;
    for (name, found) in &ours {
        let theirs: Vec<Vec<f32>> = run["photos"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
            .collect();
        for t in theirs.iter().filter(|t| t[14] >= threshold + MARGIN) {
            assert!(
                found.iter().any(|o| close(o, t)),
                "{name} (max side {max_side}): cv2's {t:?} not among ours {found:?}"
            );
            matched += 1;
        }
        for o in found.iter().filter(|o| o[14] >= threshold + MARGIN) {
            assert!(
                theirs.iter().any(|t| close(o, t)),
                "{name} (max side {max_side}): our {o:?} not among cv2's {theirs:?}"
            );
        }
    }
    // Not vacuous: the fixture's faces and non-faces above the band were all compared.
    assert!(matched >= 6, "only {matched} boxes compared");
}

#[test]
fn full_size_photos_give_cv2s_boxes_landmarks_and_scores() {
    check_against_fixture(0);
}

#[test]
fn shrunk_copies_give_cv2s_boxes_mapped_back_to_the_photo() {
    check_against_fixture(320);
}
