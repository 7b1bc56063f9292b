//! The crop stage end to end, through its binary, on generated images and Debian's sample photos.

mod common;

use std::path::Path;

use common::*;
use dcgan_pipeline::data::npy;
use dcgan_pipeline::data::packed::read_packed;
use image::{Rgb, RgbImage};

/// A white landscape with a black square in its middle, and red bars at the far left and right
/// (outside the central square, so they must be cut away).
fn centered_square(width: u32, height: u32, side: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (cx, cy) = (width / 2, height / 2);
        if x < width / 10 || x >= width - width / 10 {
            Rgb([255, 0, 0])
        } else if x + side / 2 >= cx && x < cx + side / 2 && y + side / 2 >= cy && y < cy + side / 2 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    })
}

#[test]
fn a_centered_square_stays_centered_and_the_sides_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    // Landscape and portrait (rotated by swapping the roles), PNG so no JPEG noise interferes.
    write(&input.join("wide.png"), &png_bytes(&centered_square(600, 400, 200)));
    let tall = image::imageops::rotate90(&centered_square(640, 320, 160));
    write(&input.join("tall.png"), &png_bytes(&tall));
    let output = dir.path().join("out");
    crop_ok(&input, &output, &[]);
    let packed = read_packed(&output).unwrap();
    assert_eq!((packed.len(), packed.height, packed.width), (2, 32, 32));
    for i in 0..2 {
        let img = packed.image(i);
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        let mut red = 0;
        for y in 0..32 {
            for x in 0..32 {
                let p = &img[(y * 32 + x) * 3..][..3];
                if p[0] < 64 && p[1] < 64 {
                    sx += x as f64;
                    sy += y as f64;
                    n += 1.0;
                }
                if p[0] > 200 && p[1] < 60 {
                    red += 1;
                }
            }
        }
        // The square is half the shorter side: 16x16 pixels, centred at (15.5, 15.5).
        assert!((n - 256.0f64).abs() < 40.0, "image {i}: {n} dark pixels");
        assert!(
            (sx / n - 15.5).abs() < 0.6 && (sy / n - 15.5).abs() < 0.6,
            "image {i}: centroid ({}, {})",
            sx / n,
            sy / n
        );
        assert_eq!(red, 0, "image {i}: the side bars must be outside the crop");
    }
}

#[test]
fn packed_output_reads_back_with_shapes_labels_and_classes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("train");
    // ImageNet layout: classes are folders, numbered in sorted order whatever the walk order.
    for (class, count) in [("n02", 3), ("n01", 2)] {
        for i in 0..count {
            write(&input.join(class).join(format!("{i}.JPEG")), &jpeg_bytes(&textured(120, 90, i), 90));
        }
    }
    let output = dir.path().join("out");
    crop_ok(&input, &output, &["--set", "crop.size=16"]);
    let packed = read_packed(&output).unwrap();
    assert_eq!(packed.classes, vec!["n01", "n02"]);
    assert_eq!(packed.labels, vec![0, 0, 1, 1, 1]);
    assert_eq!((packed.height, packed.width, packed.images.len()), (16, 16, 5 * 16 * 16 * 3));
    let (shape, _) = npy::read_array::<u8>(&output.join("images-00000.npy")).unwrap();
    assert_eq!(shape, vec![5, 16, 16, 3]);
    let tensor = packed.to_tensor();
    assert_eq!(tensor.size(), vec![5, 16, 16, 3]);
    assert_eq!(tensor.kind(), tch::Kind::Uint8);
    let rows = read_manifest(&output);
    assert_eq!(row_for(&rows, "n02/2.JPEG")["index"], 4);
    assert_eq!(row_for(&rows, "n02/2.JPEG")["class"], "n02");

    // numpy itself must load what we wrote, memory-mapped, with the same numbers.
    let python = std::env::var("DCGAN_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let script = format!(
        "import numpy as np; a = np.load('{0}/images-00000.npy', mmap_mode='r'); l = np.load('{0}/labels.npy'); \
         print(a.shape, a.dtype, l.dtype, l.tolist(), int(a[4].sum()))",
        output.display()
    );
    let out =
        std::process::Command::new(&python).args(["-c", &script]).output().expect("python with numpy (make setup)");
    assert!(out.status.success(), "numpy could not load the output: {}", String::from_utf8_lossy(&out.stderr));
    let sum: u64 = packed.image(4).iter().map(|&v| v as u64).sum();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("(5, 16, 16, 3) uint8 int64 [0, 0, 1, 1, 1] {sum}")
    );
}

fn ten_images(input: &Path) {
    for i in 0..10u32 {
        let class = if i < 4 { "a" } else { "b" };
        write(&input.join(class).join(format!("img{i:02}.jpg")), &jpeg_bytes(&textured(100 + i * 7, 80, i), 85));
    }
}

#[test]
fn an_interrupted_run_resumes_without_redoing_finished_parts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    ten_images(&input);
    let settings = ["--set", "crop.part_size=3"];
    let reference = dir.path().join("reference");
    crop_ok(&input, &reference, &settings);

    let output = dir.path().join("out");
    crop_ok(&input, &output, &settings);
    // The state a kill during part 2 leaves: parts 0, 1 and 3 done, part 2's files half-written
    // under temporary names, nothing merged.
    std::fs::remove_file(output.join("parts/manifest-00002.jsonl")).unwrap();
    std::fs::rename(output.join("images-00002.npy"), output.join(".images-00002.npy.999.partial")).unwrap();
    std::fs::remove_file(output.join("manifest.jsonl")).unwrap();
    let part0 = std::fs::metadata(output.join("images-00000.npy")).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    crop_ok(&input, &output, &settings);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("parts/shard-0-of-1.json")).unwrap()).unwrap();
    assert_eq!(report["parts_done_before"], 3);
    assert_eq!(report["parts_written"], 1);
    assert_eq!(report["records_processed"], 3);
    assert_eq!(std::fs::metadata(output.join("images-00000.npy")).unwrap().modified().unwrap(), part0);
    assert!(!output.join(".images-00002.npy.999.partial").exists(), "stale temporaries are cleared");
    let skip = ["summary.json", "shard-0-of-1.json"];
    assert_eq!(folder_bytes(&output, &skip), folder_bytes(&reference, &skip));

    // A finished run re-run does nothing but merge again.
    crop_ok(&input, &output, &settings);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("parts/shard-0-of-1.json")).unwrap()).unwrap();
    assert_eq!(report["records_processed"], 0);
    // --force redoes everything.
    crop_ok(&input, &output, &[settings[0], settings[1], "--force"]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("parts/shard-0-of-1.json")).unwrap()).unwrap();
    assert_eq!(report["records_processed"], 10);
}

#[test]
fn sharded_runs_then_merge_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    ten_images(&input);
    let whole = dir.path().join("whole");
    crop_ok(&input, &whole, &["--set", "crop.part_size=3"]);

    let sharded = dir.path().join("sharded");
    let out = sharded.to_str().unwrap();
    let inp = input.to_str().unwrap();
    for shard in ["1/3", "0/3"] {
        let run = run_crop(&["-i", inp, "-o", out, "--set", "crop.part_size=3", "--shard", shard]);
        assert!(run.status.success());
        assert!(!sharded.join("manifest.jsonl").exists(), "a shard alone does not merge");
    }
    // Merging before the last shard is done names what is missing.
    let early = run_crop(&["-o", out, "--merge"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("parts 2"), "{}", String::from_utf8_lossy(&early.stderr));
    assert!(run_crop(&["-i", inp, "-o", out, "--set", "crop.part_size=3", "--shard", "2/3"]).status.success());
    assert!(run_crop(&["-o", out, "--merge"]).status.success());
    let skip = ["summary.json", "shard-"];
    assert_eq!(folder_bytes(&sharded, &skip), folder_bytes(&whole, &skip));
}

#[test]
fn settings_or_input_that_changed_are_refused_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    ten_images(&input);
    let output = dir.path().join("out");
    crop_ok(&input, &output, &["--set", "crop.part_size=4"]);
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());

    let other = run_crop(&["-i", i, "-o", o, "--set", "crop.part_size=4", "--set", "crop.size=24"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("different settings"));

    // A file inserted in the middle of the sorted order shifts every later part.
    write(&input.join("a/img00b.jpg"), &jpeg_bytes(&textured(64, 64, 99), 85));
    std::fs::remove_file(output.join("parts/manifest-00002.jsonl")).unwrap();
    let changed = run_crop(&["-i", i, "-o", o, "--set", "crop.part_size=4"]);
    assert_eq!(changed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&changed.stderr).contains("no longer lists"),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );

    // A folder with files of ours that we did not write is not taken over.
    let foreign = dir.path().join("foreign");
    write(&foreign.join("labels.npy"), b"someone else's");
    let refused = run_crop(&["-i", i, "-o", foreign.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(std::fs::read(foreign.join("labels.npy")).unwrap(), b"someone else's");
}

#[test]
fn every_kind_of_bad_input_is_one_manifest_row_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let good = jpeg_bytes(&textured(200, 150, 1), 90);
    write(&input.join("good.jpg"), &good);
    write(&input.join("truncated.jpg"), &good[..good.len() / 2]);
    write(&input.join("empty.jpg"), b"");
    write(&input.join("notes.jpg"), b"this is a text file with an image extension");
    let png = png_bytes(&textured(60, 60, 2));
    write(&input.join("truncated.png"), &png[..png.len() / 2]);
    // A decompression bomb: a valid PNG header announcing 100000 x 100000 pixels.
    write(&input.join("bomb.png"), &png_bomb(100_000, 100_000));
    write(&input.join("big.jpg"), &jpeg_bytes(&textured(800, 800, 3), 100));
    // Content, not name: a PNG without extension is found and decoded; a stray text file is not an input.
    write(&input.join("no_extension"), &png);
    write(&input.join("README.txt"), b"not an image");

    let output = dir.path().join("out");
    let out = run_crop(&[
        "-i",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--set",
        "crop.max_file_bytes=60000",
    ]);
    assert_eq!(out.status.code(), Some(3), "some inputs failed: exit status 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}: truncated", input.join("truncated.jpg").display())), "{stderr}");
    let rows = read_manifest(&output);
    assert_eq!(rows.len(), 8, "README.txt is not an input");
    let reason = |s: &str| row_for(&rows, s)["reason"].as_str().unwrap_or_default().to_owned();
    assert_eq!(row_for(&rows, "good.jpg")["status"], "ok");
    assert_eq!(row_for(&rows, "no_extension")["status"], "ok");
    assert_eq!(row_for(&rows, "no_extension")["format"], "PNG");
    assert!(reason("truncated.jpg").starts_with("truncated"), "{}", reason("truncated.jpg"));
    assert!(
        reason("truncated.png").starts_with("truncated") || reason("truncated.png").contains("corrupt"),
        "{}",
        reason("truncated.png")
    );
    assert_eq!(reason("empty.jpg"), "empty file");
    assert!(reason("notes.jpg").contains("not an image"));
    assert!(reason("bomb.png").contains("exceeds the limit"), "{}", reason("bomb.png"));
    assert!(reason("big.jpg").contains("bytes exceeds the limit"), "{}", reason("big.jpg"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["counts"]["error"], 6);
    assert_eq!(summary["counts"]["ok"], 2);
    let packed = read_packed(&output).unwrap();
    assert_eq!(packed.len(), 2, "only good inputs become rows");
}

fn mean_rgb(img: &[u8]) -> [f64; 3] {
    let mut sum = [0.0; 3];
    for p in img.chunks(3) {
        for c in 0..3 {
            sum[c] += p[c] as f64;
        }
    }
    sum.map(|s| s / (img.len() / 3) as f64)
}

#[test]
fn what_real_folders_hold_decodes_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    // Grayscale JPEG.
    let gray = image::GrayImage::from_fn(64, 48, |x, _| image::Luma([(x * 4) as u8]));
    let mut gray_jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut gray_jpeg, 95).encode_image(&gray).unwrap();
    write(&input.join("a_gray.jpg"), &gray_jpeg);
    // CMYK JPEG of a pure red image (C=0, M=255, Y=255, K=0).
    let mut cmyk = Vec::new();
    let red_cmyk: Vec<u8> = [0u8, 255, 255, 0].repeat(64 * 64);
    jpeg_encoder::Encoder::new(&mut cmyk, 95).encode(&red_cmyk, 64, 64, jpeg_encoder::ColorType::Cmyk).unwrap();
    write(&input.join("b_cmyk.jpg"), &cmyk);
    // 16-bit PNG, mid grey.
    let deep = image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(50, 50, Rgb([32896, 32896, 32896]));
    write(&input.join("c_16bit.png"), &png_bytes(&deep));
    // Fully transparent PNG whose colour channels are black: composited over white.
    let clear = image::RgbaImage::from_pixel(40, 40, image::Rgba([0, 0, 0, 0]));
    write(&input.join("d_alpha.png"), &png_bytes(&clear));
    // Tiny: smaller than the crop, upscaled and flagged.
    write(&input.join("e_tiny.png"), &png_bytes(&RgbImage::from_pixel(8, 5, Rgb([10, 200, 10]))));
    // EXIF orientation 6 (rotate 90 degrees clockwise to display): stored with a red left half,
    // displayed with a red top half.
    let stored = RgbImage::from_fn(80, 40, |x, _| if x < 40 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    write(&input.join("f_rotated.jpg"), &with_exif_orientation(&jpeg_bytes(&stored, 95), 6));

    let output = dir.path().join("out");
    crop_ok(&input, &output, &[]);
    let packed = read_packed(&output).unwrap();
    let rows = read_manifest(&output);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");

    let g = packed.image(0);
    assert!(g.chunks(3).all(|p| p[0].abs_diff(p[1]) <= 2 && p[1].abs_diff(p[2]) <= 2), "grayscale stays grey");
    let [r, gg, b] = mean_rgb(packed.image(1));
    assert!(r > 200.0 && gg < 60.0 && b < 60.0, "CMYK red decodes red, got {r:.0} {gg:.0} {b:.0}");
    let [r, _, _] = mean_rgb(packed.image(2));
    assert!((r - 128.0).abs() < 2.0, "16-bit mid grey -> 128, got {r}");
    assert!(packed.image(3).iter().all(|&v| v == 255), "transparent -> white");
    assert_eq!(row_for(&rows, "e_tiny.png")["upscaled"], true);
    assert!(row_for(&rows, "a_gray.jpg").get("upscaled").is_none());
    let [r, _, b] = mean_rgb(packed.image(4));
    assert!(r < 30.0 && b < 30.0, "tiny green stays green");
    let rotated = packed.image(5);
    assert_eq!(row_for(&rows, "f_rotated.jpg")["orientation"], 6);
    assert_eq!(
        (row_for(&rows, "f_rotated.jpg")["width"].as_u64(), row_for(&rows, "f_rotated.jpg")["height"].as_u64()),
        (Some(40), Some(80))
    );
    let top = mean_rgb(&rotated[..32 * 8 * 3]);
    let bottom = mean_rgb(&rotated[32 * 24 * 3..]);
    assert!(top[0] > 200.0 && top[2] < 60.0, "top is red after rotation: {top:?}");
    assert!(bottom[2] > 200.0 && bottom[0] < 60.0, "bottom is blue after rotation: {bottom:?}");
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

#[test]
fn dct_scaled_decoding_matches_full_decoding_on_real_photos() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for name in [
        "messi5.jpg",
        "baboon.jpg",
        "fruits.jpg",
        "building.jpg",
        "starry_night.jpg",
        "aero1.jpg",
        "butterfly.jpg",
        "orange.jpg",
    ] {
        std::fs::create_dir_all(&input).unwrap();
        std::fs::copy(opencv_sample(name), input.join(name)).unwrap();
    }
    let fast = dir.path().join("fast");
    let full = dir.path().join("full");
    crop_ok(&input, &fast, &[]);
    crop_ok(&input, &full, &["--set", "crop.dct_scaling=false"]);
    let rows = read_manifest(&fast);
    assert!(rows.iter().any(|r| r["dct_scale"].as_u64().unwrap_or(1) >= 4), "big photos use DCT scaling");
    let (a, b) = (read_packed(&fast).unwrap(), read_packed(&full).unwrap());
    assert_eq!(a.len(), 8);
    let psnrs: Vec<f64> = (0..a.len()).map(|i| psnr(a.image(i), b.image(i))).collect();
    let mean = psnrs.iter().sum::<f64>() / psnrs.len() as f64;
    // The bar is a mean of 36 dB. Single photos with strong periodic detail near the
    // crop's Nyquist frequency (building.jpg's windows, butterfly.jpg's dots) fall to ~22 dB at a
    // 1/8 DCT scale: Pillow's own reduce(8) + BICUBIC gives the same figure, so it is the box
    // prefilter of DCT scaling, not a bug. Measured here: mean 40.3 dB, min 21.6 dB.
    assert!(mean >= 36.0, "mean PSNR {mean:.1} dB between DCT-scaled and full decoding: {psnrs:.1?}");
    assert!(psnrs.iter().all(|&p| p >= 20.0), "a crop far from the full decode: {psnrs:.1?}");
}

#[test]
fn bad_command_lines_get_one_clear_line() {
    // Inputs and outputs inside the test's own folder: nothing machine-wide is read or written.
    let dir = tempfile::tempdir().unwrap();
    let (input, never) = (dir.path().join("photos"), dir.path().join("never"));
    std::fs::create_dir(&input).unwrap();
    let (input_arg, never_arg) = (input.to_str().unwrap(), never.to_str().unwrap());
    let missing_input = dir.path().join("missing-photos");
    let missing = run_crop(&["-i", missing_input.to_str().unwrap(), "-o", never_arg]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("missing-photos") && stderr.contains("no such file"), "{stderr}");
    let shard = run_crop(&["-i", input_arg, "-o", never_arg, "--shard", "3/3"]);
    assert_eq!(shard.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&shard.stderr).contains("INDEX/COUNT"));
    let key = run_crop(&["-i", input_arg, "-o", never_arg, "--set", "crop.colour=1"]);
    assert_eq!(key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&key.stderr).contains("crop.colour"));
    // None of the refused command lines created its output folder.
    assert!(!never.exists());
    let printed = crop_bin().arg("--print-config").output().unwrap();
    assert!(String::from_utf8_lossy(&printed.stdout).contains("size = 32"));
}
