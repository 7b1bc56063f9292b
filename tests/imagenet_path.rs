//! The paper's path end to end on a small generated ImageNet-style tree in a .tar.gz (the layout of
//! Tiny ImageNet's archive): crop -> packed 32x32 set -> train (imagenet32, tiny) -> the exported D
//! and its record -> cifar-eval. CPU only, tiny settings.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// `root/train/<wnid>/<wnid>_N.JPEG` photos of assorted sizes, plus the non-image wnids.txt, as
/// a gzip-compressed tar.
fn imagenet_tarball(path: &Path, classes: u32, per_class: u32) {
    let wnids: Vec<String> = (0..classes).map(|c| format!("n0{c:07}")).collect();
    let list = ("tiny/wnids.txt".to_string(), wnids.join("\n").into_bytes());
    let photos = wnids.iter().enumerate().flat_map(|(c, wnid)| {
        (0..per_class).map(move |i| {
            let seed = c as u32 * 1000 + i;
            // Some larger than 32x32 and not square, so that crop resizes and cuts.
            let (w, h) = if i % 3 == 0 { (48, 40) } else { (32, 32) };
            (format!("tiny/train/{wnid}/{wnid}_{i}.JPEG"), jpeg_bytes(&textured(w, h, seed), 90))
        })
    });
    write_tar_gz(path, std::iter::once(list).chain(photos));
}

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
#[allow(clippy::too_many_lines, reason = "a test kept as written: issue 41 moves code, tests pass unchanged")]
fn a_tarball_of_photos_goes_through_crop_train_and_cifar_eval() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("tiny-imagenet.tar.gz");
    imagenet_tarball(&tarball, 3, 16);
    let s = |p: &Path| p.to_str().unwrap().to_owned();

    // crop: 48 photos -> one packed 32x32 set with 3 classes (wnids.txt is not an image).
    let packed = dir.path().join("imagenet32");
    let out = run(env!("CARGO_BIN_EXE_crop"), &["-i", &s(&tarball), "-o", &s(&packed)]);
    assert!(out.status.success());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(packed.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["counts"]["ok"].as_u64(), summary["outputs"]["num_classes"].as_u64()), (Some(48), Some(3)));

    // train straight from the packed set.
    let run_dir = dir.path().join("train");
    let sets = ["train.width=8", "train.batch=8", "train.epochs=2", "train.device=cpu"];
    let mut args = vec!["-i".to_owned(), s(&packed), "-o".to_owned(), s(&run_dir)];
    for set in sets {
        args.extend(["--set".to_owned(), set.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(env!("CARGO_BIN_EXE_train"), &args);
    assert!(out.status.success());
    let train_summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(train_summary["report"]["images"], 48);
    assert_eq!(train_summary["report"]["end_step"], 12, "48 images, batch 8, 2 epochs");

    // The published D and G name their data without being told (no --input): the packed set and
    // what crop made it from.
    let d16 = dir.path().join("models/d.safetensors");
    let g16 = dir.path().join("models/g.safetensors");
    let out = run(
        env!("CARGO_BIN_EXE_train"),
        &["-o", &s(&run_dir), "--export-discriminator", &s(&d16), "--export-generator", &s(&g16)],
    );
    assert!(out.status.success());
    for (file, network) in [(&d16, "discriminator"), (&g16, "generator")] {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.with_extension("safetensors.json")).unwrap()).unwrap();
        assert_eq!(record["network"], network);
        assert_eq!((record["step"].as_u64(), record["dtype"].as_str()), (Some(12), Some("float16")));
        let data = record["data"].as_str().unwrap();
        assert!(
            data.contains("imagenet32")
                && data.contains("48 images")
                && data.contains("crop of")
                && data.contains("tiny-imagenet.tar.gz"),
            "{data}"
        );
        assert_eq!(record["data_source"]["made_by"]["ok"], 48);
        assert_eq!(record["sha256"].as_str().unwrap(), dcgan_pipeline::fsutil::sha256_file(file).unwrap());
    }

    // cifar-eval scores the exported D.
    let cifar = dir.path().join("cifar");
    class_folders(&cifar, "train", 12, 0);
    class_folders(&cifar, "test", 3, 100_000);
    let eval = dir.path().join("eval");
    let out = run(
        env!("CARGO_BIN_EXE_cifar-eval"),
        &[
            "-i",
            &s(&cifar),
            "-o",
            &s(&eval),
            "-d",
            &s(&d16),
            "--set",
            "cifar_eval.width=8",
            "--set",
            "cifar_eval.device=cpu",
            "--set",
            "cifar_eval.validation=40",
            "--set",
            "cifar_eval.per_class=2",
            "--set",
            "cifar_eval.draws=1",
            "--set",
            "cifar_eval.c_grid=[0.01]",
            "--set",
            "cifar_eval.batch_norm_images=0",
            "--set",
            "run.threads=2",
        ],
    );
    assert!(out.status.success());
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        (metrics["test_images"].as_u64(), metrics["discriminator_sha256"].as_str()),
        (Some(30), record_sha(&d16).as_deref())
    );
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.2, "chance is 0.1: {}", metrics["test"]["accuracy"]);
}

fn record_sha(file: &Path) -> Option<String> {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file.with_extension("safetensors.json")).ok()?).ok()?;
    record["sha256"].as_str().map(str::to_owned)
}
