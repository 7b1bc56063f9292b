//! The faces stage's second look, its eval-boxes checks and picture of mistakes, and the
//! user-supplied SCRFD detector's refusals, on opencv-doc's messi5.jpg (one frontal face).
//! No test needs the SCRFD model file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn faces(input: &Path, output: &Path, sets: &[&str], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faces"));
    cmd.args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn messi_folder(root: &Path) -> PathBuf {
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(opencv_sample("messi5.jpg"), input.join("messi5.jpg")).unwrap();
    input
}

fn summary(output: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn the_second_look_finds_a_real_face_again_and_its_threshold_drops_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let input = messi_folder(dir.path());
    let output = dir.path().join("out");
    // Every box looked at again (by default a box scoring >= second_look_below, 0.9, is not).
    let every = ["faces.min_face_side=32", "faces.second_look_below=2"];
    assert!(faces(&input, &output, &every, &[]).status.success());
    let rows = read_manifest(&output);
    let face = &row_for(&rows, "messi5.jpg")["boxes"][0];
    assert_eq!(face["kept"], true, "{face}");
    let looks: Vec<f64> = face["second_look"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(looks.len(), 2, "{face}");
    // The face is found again on its neighbourhood and on the mirror.
    assert!(looks.iter().all(|&s| s >= 0.5), "{face}");
    assert_eq!(summary(&output)["stage_counts"]["rejected"]["by_second_look"], 0);

    // No mean of scores reaches 1: the same face is dropped (the presence rescue off), and
    // counted, with its reason.
    let strict = dir.path().join("strict");
    let sets = [
        "faces.min_face_side=32",
        "faces.second_look_below=2",
        "faces.second_look_threshold=1.0",
        "faces.presence_rescue=2",
    ];
    assert!(faces(&input, &strict, &sets, &[]).status.success());
    let rows = read_manifest(&strict);
    let row = row_for(&rows, "messi5.jpg");
    assert_eq!(row["status"], "skipped", "{row}");
    let reason = row["boxes"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("second look: mean score"), "{reason}");
    assert_eq!(summary(&strict)["stage_counts"]["rejected"]["by_second_look"], 1);

    // By default the face, scoring >= 0.9, stays without a second look, whatever its threshold.
    let high = dir.path().join("high");
    let sets = ["faces.min_face_side=32", "faces.second_look_threshold=1.0"];
    assert!(faces(&input, &high, &sets, &[]).status.success());
    let rows = read_manifest(&high);
    let face = &row_for(&rows, "messi5.jpg")["boxes"][0];
    assert!(face["score"].as_f64().unwrap() >= 0.9, "{face}");
    assert!(face["kept"] == true && face.get("second_look").is_none(), "{face}");

    // Off: no second_look in the entry.
    let off = dir.path().join("off");
    assert!(faces(&input, &off, &["faces.min_face_side=32", "faces.second_look=false"], &[]).status.success());
    let rows = read_manifest(&off);
    assert!(row_for(&rows, "messi5.jpg")["boxes"][0].get("second_look").is_none());
}

#[test]
fn the_presence_model_gives_back_a_face_the_second_look_rejects_and_not_grass() {
    let dir = tempfile::tempdir().unwrap();
    let input = messi_folder(dir.path());
    // The look rejects everything (no mean reaches 1); the rescue (default 0.7) keeps the face.
    let output = dir.path().join("out");
    let sets = ["faces.min_face_side=32", "faces.second_look_below=2", "faces.second_look_threshold=1.0"];
    assert!(faces(&input, &output, &sets, &[]).status.success());
    let rows = read_manifest(&output);
    let face = &row_for(&rows, "messi5.jpg")["boxes"][0];
    let presence = face["presence"].as_f64().unwrap();
    assert!(face["kept"] == true && presence >= 0.7, "{face}");
    let counts = &summary(&output)["stage_counts"];
    assert_eq!(counts["kept_by_presence_rescue"], 1, "{counts}");
    assert_eq!(counts["rejected"]["by_second_look"], 0, "{counts}");

    // The same box moved onto the grass below the players scores far lower.
    use dcgan_pipeline::faces::detector::{Detection, FaceBox};
    use dcgan_pipeline::faces::presence::FacePresence;
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mediapipe_face_presence.onnx");
    let presence_model = FacePresence::new(Path::new(model), "").unwrap();
    // Decoded as the stage decodes it (libjpeg).
    use dcgan_pipeline::imageops::{decode_rgb_with_libjpeg, DecodeOptions};
    let bytes = std::fs::read(opencv_sample("messi5.jpg")).unwrap();
    let options = DecodeOptions { max_pixels: 1 << 30, min_decoded_side: None, keep_damaged: false };
    let photo = decode_rgb_with_libjpeg(&bytes, &options).unwrap().image;
    let height = photo.height;
    let at = |k: &str| face[k].as_i64().unwrap() as i32;
    let boxed = FaceBox { x: at("x"), y: at("y"), w: at("w"), h: at("h"), neighbours: 0 };
    let mut detection = Detection::from_box(boxed);
    let points: Vec<[f32; 2]> = face["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
        .collect();
    detection.landmarks = Some([points[0], points[1], points[2], points[3], points[4]]);
    let here = presence_model.score(&photo, &detection).unwrap();
    assert!((f64::from(here) - presence).abs() < 1e-3, "{here} against the manifest's {presence}");
    let grass = Detection::from_box(FaceBox { y: height as i32 - boxed.h - 5, ..boxed });
    let there = presence_model.score(&photo, &grass).unwrap();
    assert!(there < 0.1, "grass scores {there}");

    // Off, and a file that is not the model: refused at start in one line naming it.
    let yunet = concat!(env!("CARGO_MANIFEST_DIR"), "/models/face_detection_yunet_2023mar.onnx");
    let bad = format!("faces.presence_model={yunet}");
    let out = faces(&input, &dir.path().join("bad"), &[bad.as_str(), "faces.presence_model_sha256="], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(yunet) && stderr.contains("no output face_presence"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let off = dir.path().join("off");
    let sets = [bad.as_str(), "faces.presence_rescue=2", "faces.min_face_side=32"];
    assert!(faces(&input, &off, &sets, &[]).status.success(), "off: the file is not read");
}

#[test]
fn a_missing_or_malformed_ground_truth_stops_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let input = messi_folder(dir.path());
    let malformed = dir.path().join("gt-bad.json");
    write(&malformed, br#"{"images": [{"file": "messi5.jpg", "boxes": [[1, 2, 3]]}]}"#);
    let missing = dir.path().join("gt-missing.json");
    for (k, gt) in [missing, malformed].iter().enumerate() {
        let output = dir.path().join(format!("out{k}"));
        let out = faces(&input, &output, &[], &["--eval-boxes", gt.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(gt.to_str().unwrap()), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        // Before the run: nothing was detected or written.
        assert!(!output.join("manifest.jsonl").exists(), "{}", output.display());
    }
}

#[test]
fn eval_boxes_draws_the_wrong_boxes_in_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let input = messi_folder(dir.path());
    // A ground truth that says messi5.jpg holds no face: the kept box is a wrong one.
    let gt = dir.path().join("gt.json");
    write(&gt, br#"{"images": [{"file": "messi5.jpg", "boxes": []}]}"#);
    let output = dir.path().join("out");
    let out = faces(&input, &output, &["faces.min_face_side=32"], &["--eval-boxes", gt.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("eval-wrong-boxes.png"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("eval-boxes.json")).unwrap()).unwrap();
    let wrong = record["wrong_boxes"].as_array().unwrap();
    assert_eq!(wrong.len(), 1, "{record}");
    assert_eq!(wrong[0]["file"], "messi5.jpg");
    let sheet = image::open(output.join("eval-wrong-boxes.png")).unwrap().into_rgb8();
    assert_eq!((sheet.width(), sheet.height()), (100, 100));
    // The tile holds the photo (not the grey background) and the box's red outline.
    let red = sheet.pixels().filter(|p| p.0 == [255, 0, 0]).count();
    assert!(red > 100, "{red} red pixels");
    let photo = sheet.pixels().filter(|p| p.0 != [255, 0, 0] && p.0 != [128, 128, 128]).count();
    assert!(photo > 5000, "{photo}");
}

#[test]
fn scrfd_refuses_a_model_that_is_not_one_in_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = messi_folder(dir.path());
    let yunet = concat!(env!("CARGO_MANIFEST_DIR"), "/models/face_detection_yunet_2023mar.onnx");
    let cases = [
        (yunet.to_string(), "", "no output score_8"),
        (yunet.to_string(), dcgan_pipeline::faces::scrfd::MODEL_SHA256, "sha256"),
        ("/nonexistent/scrfd.onnx".to_string(), "", "No such file"),
    ];
    for (k, (model, sha, words)) in cases.iter().enumerate() {
        let sets =
            ["faces.detector=scrfd".to_string(), format!("faces.model={model}"), format!("faces.model_sha256={sha}")];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let out = faces(&input, &dir.path().join(format!("out{k}")), &sets, &[]);
        assert_eq!(out.status.code(), Some(1), "{model}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(model.as_str()) && stderr.contains("SCRFD") && stderr.contains(words), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn the_side_measure_decides_whether_a_tall_box_is_big_enough() {
    let dir = tempfile::tempdir().unwrap();
    let input = messi_folder(dir.path());
    // YuNet's box on the face is taller than wide (31 x 40 at the time of writing): its
    // sqrt(w x h) is under a bar its longer side reaches. The bar is set from the box itself, so
    // that the test does not hang on the model's exact pixels.
    // The messi box of a run with these settings.
    let face_with = |name: &str, sets: &[&str]| {
        let output = dir.path().join(name);
        assert!(faces(&input, &output, sets, &[]).status.success());
        row_for(&read_manifest(&output), "messi5.jpg")["boxes"][0].clone()
    };
    let face = face_with("probe", &["faces.min_face_side=16"]);
    let (w, h) = (face["w"].as_i64().unwrap(), face["h"].as_i64().unwrap());
    let sqrt_side = ((w * h) as f64).sqrt().floor() as i64;
    assert!(w.max(h) > sqrt_side + 1, "the face's box is square ({w} x {h}): the test needs a tall one");
    let bar = format!("faces.min_face_side={}", sqrt_side + 1);

    let face = face_with("area", &[bar.as_str(), "faces.side_measure=\"sqrt_area\""]);
    assert_eq!(face["kept"], false, "{face}");
    let reason = face["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("side {sqrt_side} px < min_face_side")), "{reason}");

    let face = face_with("longer", &[bar.as_str(), "faces.side_measure=\"longer\""]);
    assert_eq!(face["kept"], true, "{face}");
    // Its crop is the longer side's square: at least the bar, so nothing was upscaled.
    assert!(face["crop"][2].as_i64().unwrap() > sqrt_side, "{face}");

    let bad = dir.path().join("bad");
    let out = faces(&input, &bad, &["faces.side_measure=\"shorter\""], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("side_measure") && err.lines().filter(|l| !l.trim().is_empty()).count() <= 2, "{err}");
}
