//! What a stage hands to the next is checked against the sizes and sha256 its writer recorded: a
//! damaged or missing shard, a damaged checkpoint or model is named, never used; a damaged part
//! never costs the intact merged outputs; a full disk while merging names the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use dcgan_pipeline::config::Config;
use dcgan_pipeline::crop::CropStage;
use dcgan_pipeline::data::packed::read_packed;
use dcgan_pipeline::integrity::{verify_model, ModelCheck};
use tch::Tensor;

/// 24 textured 32x32 photos cropped into three parts of 8 (images-00000..00002.npy), in two classes.
fn cropped(dir: &Path) -> (PathBuf, PathBuf) {
    let input = dir.join("photos");
    for i in 0..24u32 {
        let class = if i % 2 == 0 { "a" } else { "b" };
        write(&input.join(class).join(format!("{i:03}.png")), &png_bytes(&textured(40, 32, i)));
    }
    let packed = dir.join("packed");
    let out = crop(&input, &packed, &[]);
    assert!(out.status.success(), "crop: {}", String::from_utf8_lossy(&out.stderr));
    (input, packed)
}

fn crop(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()];
    args.extend(["--set", "crop.size=32", "--set", "crop.part_size=8"]);
    args.extend(extra);
    run_crop(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The packed folder's files but those that hold timings.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    folder_bytes(dir, &["summary.json", "shard-"])
}

fn run_train(input: &Path, output: &Path, sets: &[&str], force: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    // Bitwise comparisons need MKL's reproducible mode (see tests/train_stage.rs).
    cmd.env("MKL_CBWR", "COMPATIBLE");
    cmd.args(["-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    let base = ["train.width=8", "train.batch=8", "train.device=cpu", "train.log_every=1", "train.epochs=2"];
    for s in base.iter().chain(sets) {
        cmd.args(["--set", s]);
    }
    if force {
        cmd.arg("--force");
    }
    let out = cmd.output().unwrap();
    eprintln!("{}", stderr(&out));
    out
}

/// Overwrites `bytes.len()` bytes in the middle of `path`, keeping its size.
fn alter_middle(path: &Path, bytes: &[u8]) {
    let mut content = std::fs::read(path).unwrap();
    let at = content.len() / 2;
    assert_ne!(&content[at..at + bytes.len()], bytes, "the alteration changes something");
    content[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, content).unwrap();
}

fn one_line(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
        .to_owned()
}

#[test]
fn bytes_altered_in_an_images_shard_are_named_by_train_and_a_crop_rerun_repairs_them() {
    let dir = tempfile::tempdir().unwrap();
    let (input, packed) = cropped(dir.path());
    let clean = outputs(&packed);
    alter_middle(&packed.join("images-00001.npy"), &[7, 7, 7, 7, 7, 7, 7, 7]);

    let out = run_train(&packed, &dir.path().join("run"), &["train.max_steps=1"], false);
    assert_eq!(out.status.code(), Some(1), "refused, not trained on");
    let line = one_line(&stderr(&out), "error");
    assert!(line.contains("images-00001.npy: damaged") && line.contains("re-run `crop --input"), "{line}");
    assert!(!dir.path().join("run/checkpoints").exists(), "no step was trained");

    let rerun = crop(&input, &packed, &[]);
    assert!(rerun.status.success());
    assert!(stderr(&rerun).contains("images-00001.npy: damaged"), "the re-run says what it redoes");
    assert_eq!(outputs(&packed), clean, "the re-run restores the clean run's bytes");
    read_packed(&packed).unwrap();
}

#[test]
fn a_deleted_images_shard_is_named_also_when_labels_are_deleted_too() {
    let dir = tempfile::tempdir().unwrap();
    let (input, packed) = cropped(dir.path());
    let clean = outputs(&packed);
    std::fs::remove_file(packed.join("images-00002.npy")).unwrap();

    let out = run_train(&packed, &dir.path().join("run"), &["train.max_steps=1"], false);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&stderr(&out), "error");
    assert!(line.contains("images-00002.npy: missing"), "the shard is blamed, not labels.npy: {line}");

    std::fs::remove_file(packed.join("labels.npy")).unwrap();
    let e = read_packed(&packed).unwrap_err().to_string();
    assert!(e.contains("images-00002.npy: missing") && e.contains("re-run `crop"), "never 16 of 24 images: {e}");
    let out = run_train(&packed, &dir.path().join("run"), &["train.max_steps=1"], false);
    assert_eq!(out.status.code(), Some(1), "not trained on two thirds of the set");

    assert!(crop(&input, &packed, &[]).status.success());
    assert_eq!(outputs(&packed), clean, "a plain re-run redoes the part and the merge");
    assert_eq!(read_packed(&packed).unwrap().len(), 24);
}

#[test]
fn a_shard_the_record_does_not_list_or_a_count_that_disagrees_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, packed) = cropped(dir.path());
    std::fs::copy(packed.join("images-00002.npy"), packed.join("images-00003.npy")).unwrap();
    let e = read_packed(&packed).unwrap_err().to_string();
    assert!(e.contains("images-00003.npy: not in the record"), "{e}");
    std::fs::remove_file(packed.join("images-00003.npy")).unwrap();
    let summary_path = packed.join("summary.json");
    let mut summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    summary["counts"]["output_rows"] = 30.into();
    std::fs::write(&summary_path, serde_json::to_vec(&summary).unwrap()).unwrap();
    let e = read_packed(&packed).unwrap_err().to_string();
    assert!(e.contains("summary.json: records 30 images, the shards hold 24"), "{e}");
}

#[test]
fn a_packed_folder_written_before_records_still_loads_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (_, packed) = cropped(dir.path());
    let summary_path = packed.join("summary.json");
    let mut summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let files = summary.as_object_mut().unwrap().remove("files").expect("the merge records the files");
    for name in ["images-00000.npy", "images-00001.npy", "images-00002.npy", "labels.npy", "classes.jsonl"] {
        assert_eq!(files[name]["sha256"], dcgan_pipeline::fsutil::sha256_file(&packed.join(name)).unwrap(), "{name}");
        assert_eq!(files[name]["bytes"], std::fs::metadata(packed.join(name)).unwrap().len(), "{name}");
    }
    std::fs::write(&summary_path, serde_json::to_vec(&summary).unwrap()).unwrap();
    assert_eq!(read_packed(&packed).unwrap().len(), 24);
    let out = run_train(&packed, &dir.path().join("run"), &["train.max_steps=1"], false);
    assert!(out.status.success());
    assert!(one_line(&stderr(&out), "note:").contains("read unverified"));
}

#[test]
fn garbage_in_a_part_manifest_keeps_the_merged_outputs_and_a_rerun_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (input, packed) = cropped(dir.path());
    let clean = outputs(&packed);
    let merged = |d: &Path| -> Vec<Vec<u8>> {
        ["manifest.jsonl", "labels.npy", "classes.jsonl", "summary.json"]
            .iter()
            .map(|n| std::fs::read(d.join(n)).unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect()
    };
    let before = merged(&packed);
    std::fs::write(packed.join("parts/manifest-00000.jsonl"), b"{garbage\n\x00\xff").unwrap();

    let out =
        run_crop(&["-o", packed.to_str().unwrap(), "--merge", "--set", "crop.size=32", "--set", "crop.part_size=8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&stderr(&out), "error").contains("parts/manifest-00000.jsonl"), "the file is named");
    assert_eq!(merged(&packed), before, "nothing intact is deleted or changed by a failed merge");

    let rerun = crop(&input, &packed, &[]);
    assert!(rerun.status.success(), "the damaged part is redone");
    assert_eq!(outputs(&packed), clean);
}

#[test]
fn a_full_disk_while_the_merged_manifest_is_written_names_the_file_and_keeps_the_outputs() {
    // The kernel's "No space left on device" without mounting anything: the merge's temporary for
    // manifest.jsonl (its name is known: .manifest.jsonl.PID.partial) is made a link to /dev/full.
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, packed) = cropped(dir.path());
    let before = outputs(&packed);
    let summary_before = std::fs::read(packed.join("summary.json")).unwrap();
    let temporary = packed.join(format!(".manifest.jsonl.{}.partial", std::process::id()));
    std::os::unix::fs::symlink("/dev/full", &temporary).unwrap();
    let config = Config::load(None, &["crop.size=32".into(), "crop.part_size=8".into()]).unwrap();
    let e = dcgan_pipeline::stage::merge(&CropStage::new(config.crop), &packed).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains(&format!("{}: cannot write", packed.join("manifest.jsonl").display())), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    let _ = std::fs::remove_file(&temporary);
    assert_eq!(outputs(&packed), before, "labels.npy and classes.jsonl were staged, not renamed into place");
    assert_eq!(std::fs::read(packed.join("summary.json")).unwrap(), summary_before);
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (weights(a), weights(b));
    assert!(!a.is_empty() && a.len() == b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs");
    }
}

/// Overwrites the last `n` bytes of a safetensors file (inside its last tensor's data).
fn alter_tail(path: &Path, bytes: &[u8]) {
    let mut content = std::fs::read(path).unwrap();
    let at = content.len() - bytes.len();
    content[at..].copy_from_slice(bytes);
    std::fs::write(path, content).unwrap();
}

#[test]
fn a_checkpoint_with_altered_floats_is_passed_over_for_the_previous_intact_one_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, packed) = cropped(dir.path());
    // 24 images, batch 8: 3 steps per epoch, 6 in all.
    let whole = dir.path().join("whole");
    assert!(run_train(&packed, &whole, &[], false).status.success());
    let split = dir.path().join("split");
    let first = run_train(
        &packed,
        &split,
        &["train.max_steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=5"],
        false,
    );
    assert!(first.status.success());
    // Valid-looking floats (0.25) over the end of G's weights: the file still loads.
    let damaged = split.join("checkpoints/step-00000004/g.safetensors");
    alter_tail(&damaged, &0.25f32.to_le_bytes().repeat(4));
    assert!(Tensor::read_safetensors(&damaged).is_ok(), "the damage is not visible to the loader");

    let resumed = run_train(&packed, &split, &[], false);
    assert!(resumed.status.success());
    let text = stderr(&resumed);
    let warning = one_line(&text, "not resumed from");
    assert!(warning.contains(&format!("{}: damaged", damaged.display())), "{warning}");
    let line = one_line(&text, "resuming from");
    assert!(line.contains("previous intact checkpoint") && line.contains("step-00000003"), "{line}");
    assert_same_weights(&whole.join("discriminator.safetensors"), &split.join("discriminator.safetensors"));
    assert_same_weights(&whole.join("generator.safetensors"), &split.join("generator.safetensors"));
}

#[test]
fn a_checkpoint_of_0xff_bytes_without_an_earlier_one_stops_the_run_and_force_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (_, packed) = cropped(dir.path());
    let run = dir.path().join("run");
    assert!(run_train(&packed, &run, &["train.max_steps=2", "train.checkpoint_every=2"], false).status.success());
    let damaged = run.join("checkpoints/step-00000002/d.safetensors");
    alter_tail(&damaged, &[0xFF; 64]);

    let out = run_train(&packed, &run, &[], false);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&stderr(&out), "error");
    assert!(line.contains(&format!("{}: damaged", damaged.display())), "{line}");
    assert!(line.contains("no earlier intact checkpoint") && line.contains("--force"), "{line}");
    assert!(!line.contains("loss is not finite"), "never trained on: {line}");

    let whole = dir.path().join("whole");
    assert!(run_train(&packed, &whole, &[], false).status.success());
    assert!(run_train(&packed, &run, &[], true).status.success());
    assert_same_weights(&whole.join("discriminator.safetensors"), &run.join("discriminator.safetensors"));
}

#[test]
fn a_published_model_is_checked_against_its_record_and_old_records_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let (_, packed) = cropped(dir.path());
    let run = dir.path().join("run");
    assert!(run_train(&packed, &run, &["train.max_steps=1"], false).status.success());
    let generator = run.join("generator.safetensors");
    assert_eq!(verify_model(&generator).unwrap(), ModelCheck::Verified, "train records what it publishes");
    let sample = |out: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_sample"))
            .args(["-g", generator.to_str().unwrap(), "-o", dir.path().join(out).to_str().unwrap()])
            .args(["--samples", "4", "--walk-rows", "1", "--walk-steps", "2"])
            .output()
            .unwrap();
        eprintln!("{}", stderr(&out));
        out
    };
    assert!(sample("fine").status.success());
    alter_tail(&generator, &0.5f32.to_le_bytes());
    let out = sample("altered");
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&stderr(&out), "error").contains(&format!("{}: damaged", generator.display())));

    // The committed D's record (written before sizes were recorded) holds its sha256: it verifies.
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagenet32-d.safetensors");
    assert_eq!(verify_model(&committed).unwrap(), ModelCheck::Verified);
}
