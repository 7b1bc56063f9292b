//! The faces stage on Debian's real sample photo (messi5.jpg: one frontal face, 38 px, found today
//! at x=226 y=94) and on generated images.

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

#[test]
fn finds_the_face_in_messi5_and_none_in_faceless_images() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["messi5.jpg", "baboon.jpg", "fruits.jpg"] {
        std::fs::copy(opencv_sample(name), input.join(name)).unwrap();
    }
    write(&input.join("noise.png"), &png_bytes(&textured(300, 200, 7)));
    write(&input.join("flat.png"), &png_bytes(&RgbImage::from_pixel(200, 200, Rgb([120, 120, 120]))));
    let output = dir.path().join("out");
    let out = run_faces(&input, &output, &["faces.min_face_side=32"]);
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
    assert!(run_faces(&input, &output, &[]).status.success());
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
    assert!(run_faces(&input, &output, &["faces.min_face_side=32"]).status.success());
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
    let out = run_faces(&input, &output, &["faces.min_face_side=32"]);
    assert_eq!(out.status.code(), Some(3));
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "messi5.jpg")["status"], "ok");
    for (name, words) in [("truncated.jpg", "truncated"), ("empty.jpg", "empty"), ("text.png", "not an image"), ("huge.png", "exceeds")] {
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
    assert!(run_faces(&input, &output, &["faces.min_face_side=32", "faces.save_png=true", "faces.size=48"]).status.success());
    let png = image::open(output.join("crops/messi5.jpg.0.png")).unwrap();
    assert_eq!((png.width(), png.height()), (48, 48));
    let packed = read_packed(&output).unwrap();
    assert_eq!(png.into_rgb8().into_raw(), packed.image(0));

    let out = run_faces(&input, &dir.path().join("other"), &["faces.cascade=/nonexistent/cascade.xml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/cascade.xml") && stderr.lines().count() == 1, "{stderr}");
}
