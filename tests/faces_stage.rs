//! The faces stage on Debian's real sample photo (messi5.jpg: one frontal face, 38 px, found by
//! the Haar cascade at x=226 y=94) and on generated images; the Haar cascade's tests set
//! faces.detector = "haar", YuNet's (the default) are at the end.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use dcgan_pipeline::data::packed::read_packed;
use dcgan_pipeline::faces::detector::FaceBox;
use image::{imageops, Rgb, RgbImage};

fn faces_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faces"))
}

/// The stage with the paper's Haar cascade.
fn run_haar(input: &Path, output: &Path, sets: &[&str]) -> std::process::Output {
    let mut all = vec!["faces.detector=haar"];
    all.extend_from_slice(sets);
    run_faces(input, output, &all)
}

fn run_faces(input: &Path, output: &Path, sets: &[&str]) -> std::process::Output {
    let mut cmd = faces_bin();
    cmd.args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn messi() -> RgbImage {
    image::open(opencv_sample("messi5.jpg")).unwrap().into_rgb8()
}

/// The face that the default cascade finds in messi5.jpg today.
const MESSI_FACE: FaceBox = FaceBox { x: 226, y: 94, w: 38, h: 38, neighbours: 12 };

fn boxes(row: &serde_json::Value) -> Vec<FaceBox> {
    row["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| FaceBox {
            x: b["x"].as_i64().unwrap() as i32,
            y: b["y"].as_i64().unwrap() as i32,
            w: b["w"].as_i64().unwrap() as i32,
            h: b["h"].as_i64().unwrap() as i32,
            neighbours: b["neighbours"].as_i64().unwrap() as i32,
        })
        .collect()
}

/// `root/in`: messi5.jpg (one face) beside four photos without a face (two opencv-doc photos,
/// textured noise, a flat grey square).
fn one_face_and_four_faceless(root: &Path) -> std::path::PathBuf {
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["messi5.jpg", "baboon.jpg", "fruits.jpg"] {
        std::fs::copy(opencv_sample(name), input.join(name)).unwrap();
    }
    write(&input.join("noise.png"), &png_bytes(&textured(300, 200, 7)));
    write(&input.join("flat.png"), &png_bytes(&RgbImage::from_pixel(200, 200, Rgb([120, 120, 120]))));
    input
}

#[test]
fn finds_the_face_in_messi5_and_none_in_faceless_images() {
    let dir = tempfile::tempdir().unwrap();
    let input = one_face_and_four_faceless(dir.path());
    let output = dir.path().join("out");
    let out = run_haar(&input, &output, &["faces.min_face_side=32"]);
    assert!(out.status.success());
    let rows = read_manifest(&output);
    let messi = row_for(&rows, "messi5.jpg");
    let found = boxes(messi);
    assert_eq!(found.len(), 1, "{messi}");
    assert!(found[0].iou(&MESSI_FACE) >= 0.9, "the face moved: {:?}", found[0]);
    assert_eq!(messi["status"], "ok");
    assert_eq!(messi["boxes"][0]["output"], 0);
    for name in ["baboon.jpg", "fruits.jpg", "noise.png", "flat.png"] {
        assert_eq!(row_for(&rows, name)["status"], "skipped", "{name}");
        assert_eq!(row_for(&rows, name)["reason"], "no face found", "{name}");
    }
    let packed = read_packed(&output).unwrap();
    assert_eq!((packed.len(), packed.height, packed.width), (1, 64, 64));
    // The crop is the face: skin-toned in its centre, not the green pitch around it.
    let center = &packed.image(0)[(32 * 64 + 32) * 3..][..3];
    assert!(center[0] > center[1] && center[0] > center[2], "face centre {center:?}");
}

#[test]
fn small_faces_are_counted_with_their_reason_not_cropped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(opencv_sample("messi5.jpg"), input.join("messi5.jpg")).unwrap();
    // The same photo at twice the size: its face (~76 px) passes the default 64 px bar.
    let big = imageops::resize(&messi(), 548 * 2, 342 * 2, imageops::FilterType::CatmullRom);
    write(&input.join("messi_x2.png"), &png_bytes(&big));
    let output = dir.path().join("out");
    assert!(run_haar(&input, &output, &[]).status.success());
    let rows = read_manifest(&output);
    let small = row_for(&rows, "messi5.jpg");
    assert_eq!(small["status"], "skipped");
    assert_eq!(small["boxes"][0]["kept"], false);
    assert_eq!(small["boxes"][0]["reason"], "side 38 px < min_face_side 64");
    let large = row_for(&rows, "messi_x2.png");
    assert_eq!(large["faces"], 1);
    let b = boxes(large)[0];
    let doubled = FaceBox { x: 452, y: 188, w: 76, h: 76, neighbours: 0 };
    assert!(b.iou(&doubled) >= 0.7, "{b:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stage_counts"]["rejected"]["smaller_than_min_face_side"], 1);
    assert_eq!(summary["stage_counts"]["kept"], 1);
}

#[test]
fn orientation_grayscale_and_16_bit_do_not_lose_the_face() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let photo = messi();
    // Stored rotated 90 degrees counter-clockwise, with EXIF orientation 6 saying "turn clockwise".
    let stored = imageops::rotate270(&photo);
    write(&input.join("rotated.jpg"), &with_exif_orientation(&jpeg_bytes(&stored, 95), 6));
    let gray = image::DynamicImage::ImageRgb8(photo.clone()).into_luma8();
    let mut gray_jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut gray_jpeg, 95).encode_image(&gray).unwrap();
    write(&input.join("gray.jpg"), &gray_jpeg);
    let deep = image::DynamicImage::ImageRgb8(photo).into_rgb16();
    write(&input.join("deep.png"), &png_bytes(&deep));
    let output = dir.path().join("out");
    assert!(run_haar(&input, &output, &["faces.min_face_side=32"]).status.success());
    let rows = read_manifest(&output);
    for name in ["rotated.jpg", "gray.jpg", "deep.png"] {
        let row = row_for(&rows, name);
        let found = boxes(row);
        assert!(found.iter().any(|b| b.iou(&MESSI_FACE) >= 0.8), "{name}: {row}");
    }
    assert_eq!(row_for(&rows, "rotated.jpg")["width"], 548, "upright before detection");
}

#[test]
fn bad_inputs_are_rows_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let photo = std::fs::read(opencv_sample("messi5.jpg")).unwrap();
    write(&input.join("messi5.jpg"), &photo);
    write(&input.join("truncated.jpg"), &photo[..photo.len() / 3]);
    write(&input.join("empty.jpg"), b"");
    write(&input.join("text.png"), b"hello");
    write(&input.join("huge.png"), &png_bomb(60_000, 60_000));
    let output = dir.path().join("out");
    let out = run_haar(&input, &output, &["faces.min_face_side=32"]);
    assert_eq!(out.status.code(), Some(3));
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "messi5.jpg")["status"], "ok");
    for (name, words) in
        [("truncated.jpg", "truncated"), ("empty.jpg", "empty"), ("text.png", "not an image"), ("huge.png", "exceeds")]
    {
        let row = row_for(&rows, name);
        assert_eq!(row["status"], "error", "{name}");
        assert!(row["reason"].as_str().unwrap().contains(words), "{name}: {row}");
    }
}

#[test]
fn png_crops_on_request_and_a_missing_cascade_stops_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(opencv_sample("messi5.jpg"), input.join("messi5.jpg")).unwrap();
    let output = dir.path().join("out");
    assert!(run_haar(&input, &output, &["faces.min_face_side=32", "faces.save_png=true", "faces.size=48"])
        .status
        .success());
    let png = image::open(output.join("crops/messi5.jpg.0.png")).unwrap();
    assert_eq!((png.width(), png.height()), (48, 48));
    let packed = read_packed(&output).unwrap();
    assert_eq!(png.into_rgb8().into_raw(), packed.image(0));

    let out = run_haar(&input, &dir.path().join("other"), &["faces.cascade=/nonexistent/cascade.xml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/cascade.xml") && stderr.lines().count() == 1, "{stderr}");
}

// YuNet, the default detector.

/// messi5.jpg's face as cv2 4.10's FaceDetectorYN finds it (tests/fixtures/yunet_cv2_boxes.json).
const MESSI_YUNET: FaceBox = FaceBox { x: 226, y: 93, w: 31, h: 40, neighbours: 0 };

fn json_f32s(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect()
}

#[test]
fn yunet_keeps_messis_face_with_its_score_and_landmarks_and_nothing_in_faceless_images() {
    let dir = tempfile::tempdir().unwrap();
    let input = one_face_and_four_faceless(dir.path());
    let output = dir.path().join("out");
    assert!(run_faces(&input, &output, &["faces.min_face_side=32"]).status.success());
    let rows = read_manifest(&output);
    let messi = row_for(&rows, "messi5.jpg");
    assert_eq!(messi["faces"], 1, "{messi}");
    let face = &messi["boxes"][0];
    let found = FaceBox {
        x: face["x"].as_i64().unwrap() as i32,
        y: face["y"].as_i64().unwrap() as i32,
        w: face["w"].as_i64().unwrap() as i32,
        h: face["h"].as_i64().unwrap() as i32,
        neighbours: 0,
    };
    assert!(found.iou(&MESSI_YUNET) >= 0.9, "{face}");
    assert!(face["score"].as_f64().unwrap() >= 0.85 && face.get("neighbours").is_none(), "{face}");
    let points = json_f32s(&face["landmarks"]);
    assert_eq!(points.len(), 10);
    for p in points.chunks(2) {
        let inside = p[0] >= found.x as f32 && p[0] <= (found.x + found.w) as f32;
        assert!(inside && p[1] >= found.y as f32 && p[1] <= (found.y + found.h) as f32, "{face}");
    }
    // Eyes above the nose, the nose above the mouth's corners.
    assert!(points[1] < points[5] && points[3] < points[5] && points[5] < points[7] && points[5] < points[9], "{face}");
    for name in ["baboon.jpg", "fruits.jpg", "noise.png", "flat.png"] {
        assert_eq!(row_for(&rows, name)["reason"], "no face found", "{name}");
    }
    let packed = read_packed(&output).unwrap();
    let center = &packed.image(0)[(32 * 64 + 32) * 3..][..3];
    assert!(center[0] > center[1] && center[0] > center[2], "face centre {center:?}");
}

#[test]
fn eyes_alignment_levels_the_eye_line_that_yunet_reports() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // messi5 at twice the size (its face ~70 px), tilted 10 degrees clockwise on screen (black
    // corners). YuNet's landmarks follow such turns only in part (docs/faces.md): the test checks
    // that the crop levels the eye line as reported, and that it is not the box crop.
    let big = imageops::resize(&messi(), 548 * 2, 342 * 2, imageops::FilterType::CatmullRom);
    let (sin, cos) = 10f32.to_radians().sin_cos();
    let (cx, cy) = (480.0f32, 226.0f32);
    let turned = RgbImage::from_fn(1096, 684, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = (cx + cos * dx + sin * dy, cy - sin * dx + cos * dy);
        if sx >= 0.0 && sy >= 0.0 && sx < 1096.0 && sy < 684.0 {
            *big.get_pixel(sx as u32, sy as u32)
        } else {
            Rgb([0, 0, 0])
        }
    });
    write(&input.join("turned.png"), &png_bytes(&turned));
    let eyes = dir.path().join("eyes");
    assert!(run_faces(&input, &eyes, &["faces.align=eyes"]).status.success());
    let row = &read_manifest(&eyes)[0];
    let kept: Vec<&serde_json::Value> = row["boxes"].as_array().unwrap().iter().filter(|b| b["kept"] == true).collect();
    assert_eq!(kept.len(), 1, "{row}");
    let p = json_f32s(&kept[0]["landmarks"]);
    let eye_line = (p[3] - p[1]).atan2(p[2] - p[0]).to_degrees() as f64;
    let angle = kept[0]["crop"]["angle_deg"].as_f64().unwrap();
    // The manifest rounds landmarks to 0.1 px: the eye line from them is good to ~0.5 degrees.
    assert!((angle - eye_line).abs() < 0.5, "angle {angle} vs eye line {eye_line}: {row}");
    let side = kept[0]["crop"]["side"].as_f64().unwrap();
    let box_h = kept[0]["h"].as_f64().unwrap();
    assert!((side / box_h - 1.0).abs() < 0.25, "the eyes square frames the face as the box does: {side} vs {box_h}");
    let boxed = dir.path().join("box");
    assert!(run_faces(&input, &boxed, &[]).status.success());
    let box_row = &read_manifest(&boxed)[0];
    assert_eq!(box_row["boxes"][0]["crop"].as_array().unwrap().len(), 3, "{box_row}");
    let (a, b) = (read_packed(&eyes).unwrap(), read_packed(&boxed).unwrap());
    assert_ne!(a.image(0), b.image(0), "the turned crop differs from the box's");
}

#[test]
fn yunet_bad_inputs_are_rows_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let photo = std::fs::read(opencv_sample("messi5.jpg")).unwrap();
    write(&input.join("messi5.jpg"), &photo);
    write(&input.join("truncated.jpg"), &photo[..photo.len() / 3]);
    write(&input.join("empty.jpg"), b"");
    write(&input.join("huge.png"), &png_bomb(60_000, 60_000));
    write(&input.join("tiny.png"), &png_bytes(&RgbImage::from_pixel(1, 1, Rgb([9, 9, 9]))));
    let output = dir.path().join("out");
    let out = run_faces(&input, &output, &["faces.min_face_side=32"]);
    assert_eq!(out.status.code(), Some(3));
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "messi5.jpg")["status"], "ok");
    // Thinner than any detector input worth looking at: skipped with the reason (issue 35, F2).
    let tiny = row_for(&rows, "tiny.png");
    assert_eq!(tiny["status"], "skipped");
    assert_eq!(tiny["reason"], "photo of 1x1 pixels is thinner than 16 px: no face is looked for");
    for name in ["truncated.jpg", "empty.jpg", "huge.png"] {
        let row = row_for(&rows, name);
        assert_eq!(row["status"], "error", "{name}");
        assert!(!row["reason"].as_str().unwrap().contains('\n'), "{name}: {row}");
    }
}

#[test]
fn a_missing_truncated_or_foreign_model_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(opencv_sample("messi5.jpg"), input.join("messi5.jpg")).unwrap();
    let model =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/face_detection_yunet_2023mar.onnx")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    write(&truncated, &model[..model.len() / 2]);
    let text = dir.path().join("notes.onnx");
    write(&text, b"not a network\n");
    let cases = [
        ("/nonexistent/yunet.onnx".to_string(), "", "No such file"),
        (truncated.display().to_string(), "", "not an ONNX model"),
        (truncated.display().to_string(), "checked", "sha256"),
        (text.display().to_string(), "", "not an ONNX model"),
    ];
    for (k, (path, check, words)) in cases.iter().enumerate() {
        let mut sets = vec![format!("faces.model={path}")];
        if check.is_empty() {
            sets.push("faces.model_sha256=".into());
        }
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let out = run_faces(&input, &dir.path().join(format!("out{k}")), &sets);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(path.as_str()) && stderr.contains(words), "{path}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn eval_boxes_scores_the_kept_boxes_against_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["messi5.jpg", "baboon.jpg"] {
        std::fs::copy(opencv_sample(name), input.join(name)).unwrap();
    }
    // messi5's face and a made-up face on baboon.jpg that nothing finds: recall 1/2.
    let gt = dir.path().join("gt.json");
    let truth = r#"{"images": [{"file": "messi5.jpg", "boxes": [[226, 93, 31, 40], [0, 0, 5, 5]], "invalid": [0, 0]},
        {"file": "baboon.jpg", "boxes": [[100, 100, 60, 60]], "invalid": [0]}]}"#;
    write(&gt, truth.as_bytes());
    let output = dir.path().join("out");
    let mut cmd = faces_bin();
    cmd.args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    cmd.args(["--set", "faces.min_face_side=32", "--eval-boxes", gt.to_str().unwrap()]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("precision") && stdout.contains("recall"), "{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("eval-boxes.json")).unwrap()).unwrap();
    let first = &record["table"][0];
    assert_eq!(
        (first["right"].as_u64(), first["wrong"].as_u64(), first["faces"].as_u64()),
        (Some(1), Some(0), Some(2)),
        "{record}"
    );
    assert_eq!(first["recall"], 0.5);
    assert_eq!(record["detector"], "yunet");
}

/// The Haar cascade's outputs as the stage wrote them before YuNet was added (commit 48d166d, the
/// same photos and settings): manifest.jsonl byte for byte, the packed crops by sha256.
#[test]
fn haar_outputs_are_byte_identical_to_the_stage_before_yunet() {
    use sha2::{Digest, Sha256};
    let cases = [
        (
            "default",
            &["graf3.png", "ml.png", "right05.jpg", "messi5.jpg"][..],
            &[][..],
            "3ced2124e7be4e7c0b18fef60e6c7bc970d5ebd3169b37a188ed7e83e7d44981",
        ),
        (
            "paper",
            &["basketball1.png", "stuff.jpg", "messi5.jpg"][..],
            &["faces.cascade=alt", "faces.min_neighbors=3", "faces.scale_factor=1.05", "faces.equalize=true"][..],
            "5403a9f6019dcc61d6d8a7fd4e897a6a831553678ba4bede71ae32b81e491d85",
        ),
    ];
    for (name, photos, sets, npy_sha256) in cases {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::create_dir_all(&input).unwrap();
        for photo in photos {
            std::fs::copy(opencv_sample(photo), input.join(photo)).unwrap();
        }
        let output = dir.path().join("out");
        assert!(run_haar(&input, &output, sets).status.success(), "{name}");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/haar_before_yunet/{name}.manifest.jsonl"));
        let manifest = std::fs::read_to_string(output.join("manifest.jsonl")).unwrap();
        assert_eq!(manifest, std::fs::read_to_string(fixture).unwrap(), "{name}: manifest changed");
        let npy = std::fs::read(output.join("images-00000.npy")).unwrap();
        let digest: String = Sha256::digest(&npy).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, npy_sha256, "{name}: crops changed");
    }
}
