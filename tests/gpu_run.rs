//! The GPU lease (gpu-runs/imagenet_run.sh, docs/gpu.md) proven on the CPU: the carry made by
//! gpu-runs/prepare_carry.sh as for the device (this build's `train`, stripped and xz-compressed,
//! and half of a stand-in for Tiny ImageNet's tarball in its layout), checked against the budget with
//! the real data's and the real state's sizes; then two leases run from the carry alone with a tiny
//! configuration, the second resuming what the first brought back and what was committed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

/// What one lease brings back, and nothing else.
const BROUGHT_BACK: [&str; 7] = [
    "imagenet32-d.safetensors",
    "imagenet32-d.safetensors.json",
    "imagenet32-g.safetensors",
    "imagenet32-g.safetensors.json",
    "log.txt",
    "run.json",
    "run.tar",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("DCGAN_PYTHON").unwrap_or_else(|_| repo().join(".venv/bin/python").display().to_string())
}

/// Tiny ImageNet's layout: tiny-imagenet-32/train/<wnid>/<wnid>_<i>.JPEG (32x32 photos) beside
/// words.txt, as a gzip-compressed tar.
fn stand_in_tarball(path: &Path, classes: u32, per_class: u32) {
    let words = ("tiny-imagenet-32/words.txt".to_string(), b"n00000000\tnot an image\n".to_vec());
    let photos = (0..classes).flat_map(|c| {
        let wnid = format!("n0{c:07}");
        (0..per_class).map(move |i| {
            let jpeg = common::jpeg_bytes(&common::textured(32, 32, c * 1000 + i), 90);
            (format!("tiny-imagenet-32/train/{wnid}/{wnid}_{i}.JPEG"), jpeg)
        })
    });
    common::write_tar_gz(path, std::iter::once(words).chain(photos));
}

fn bash(script: &str, envs: &[(&str, &Path)], args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(repo().join(script))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_os_str())))
        .env("PYTHON", python())
        .output()
        .expect("bash runs");
    eprintln!("{script}:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// prepare_carry.sh with this build's `train` (the binaries the test suite built), as for the
/// device; returns its report.
fn prepare(carry: &Path, state: &Path, data: &Path) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_train")).parent().unwrap();
    // The test-release profile is not link-time optimised, and only LTO drops train's NEEDED entry
    // for libopencv_core (no OpenCV function is called: tests/train_stage.rs checks that). The
    // release build that the device gets is prepared without this allowance.
    let allow = if bin_dir.ends_with("release") { "" } else { "libopencv_core" };
    let out = bash(
        "gpu-runs/prepare_carry.sh",
        &[("CARRY", carry), ("STATE", state), ("DATA", data), ("ALLOW_NEEDED", Path::new(allow))],
        &[bin_dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "prepare_carry.sh failed: the carry would not be ready or would not fit");
    let mut names: Vec<String> =
        std::fs::read_dir(carry).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        ["imagenet-shard.tar.gz", "imagenet-shard.tar.gz.json", "train.xz"],
        "the carry holds what the run reads, nothing else"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The total prepare_carry.sh counted, in MiB: the line "with the run state at its full size ...".
fn counted_mib(report: &str) -> f64 {
    let line = report.lines().find(|l| l.starts_with("with the run state at its full size")).expect("the budget line");
    let before = line.split(" MiB of ").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn run_lease(carry: &Path, state: &Path, out: &Path, max_steps: u64) -> Output {
    let extra = format!("--set train.width=8 --set train.batch=32 --set train.max_steps={max_steps}");
    let out = Command::new("bash")
        .arg(repo().join("gpu-runs/imagenet_run.sh"))
        .env("CARRY", carry)
        .env("STATE", state)
        .env("OUT", out)
        .env("DEVICE", "cpu")
        .env("TRAIN_MINUTES", "5")
        .env("MOMENT_WARMUP", "2")
        .env("DEADLINE_S", "600")
        .env("TRAIN_EXTRA", extra)
        .env("PYTHON", python())
        .output()
        .expect("bash runs");
    eprintln!("imagenet_run.sh:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// What came back fits the device tool's limits and holds the log, D and G with their records
/// (the totals over all leases included), run.json and run.tar; returns run.json.
fn check_brought_back(out: &Path, leases: u64, step: u64) -> Value {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        assert!(entry.file_type().unwrap().is_file(), "{}: only plain files come back", entry.path().display());
        assert!(entry.metadata().unwrap().len() < 16 * MIB, "{}: over 16 MiB", entry.path().display());
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    assert!(names.len() <= 8, "{names:?}");
    assert_eq!(names, BROUGHT_BACK);
    assert!(std::fs::read_to_string(out.join("log.txt")).unwrap().contains("== done"));
    for (file, network) in [("imagenet32-d.safetensors", "discriminator"), ("imagenet32-g.safetensors", "generator")] {
        let record = read_json(&out.join(format!("{file}.json")));
        let bytes = std::fs::read(out.join(file)).unwrap();
        assert_eq!(record["sha256"].as_str().unwrap(), format!("{:x}", Sha256::digest(&bytes)));
        assert_eq!((record["network"].as_str(), record["dtype"].as_str()), (Some(network), Some("float16")));
        assert_eq!(record["step"], step);
        assert_eq!(record["run"]["leases"], leases);
        assert_eq!(record["run"]["images_seen"], step * 32);
    }
    let tar = Command::new("tar").arg("-tf").arg(out.join("run.tar")).output().unwrap();
    let listing = String::from_utf8_lossy(&tar.stdout);
    for wanted in ["./losses.csv", "./losses.png", "./summary.json", "./config.toml", "./samples/"] {
        assert!(listing.lines().any(|l| l.starts_with(wanted)), "run.tar lacks {wanted}:\n{listing}");
    }
    read_json(&out.join("run.json"))
}

#[test]
fn two_gpu_leases_run_on_the_cpu_from_the_carry_and_the_second_resumes_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // 4 classes x 64 photos: each half 128, 4 steps an epoch at batch 32.
    stand_in_tarball(&data.join("tiny-imagenet-32-train.tar.gz"), 4, 64);
    // Where a session commits the run's state (models/imagenet-run in the repository).
    let state = tmp.path().join("imagenet-run");
    let carry = tmp.path().join("carry");

    let report = prepare(&carry, &state, &data);
    assert!(report.contains("shard 0 of 2 (lease 1)"), "{report}");
    let counted = counted_mib(&report);
    assert!(counted > 40.0 && counted <= 60.0, "counted {counted} MiB: the real data and state must be counted");
    let out1 = tmp.path().join("out1");
    assert!(run_lease(&carry, &state, &out1, 6).status.success(), "lease 1 failed");
    let run1 = check_brought_back(&out1, 1, 6);
    assert_eq!(run1["leases"][0]["shard"], "0 of 2");
    assert_eq!(
        (&run1["leases"][0]["start_step"], &run1["leases"][0]["images"]),
        (&Value::from(0), &Value::from(6 * 32))
    );

    // The session commits what came back.
    let commit = Command::new(python())
        .arg(repo().join("gpu-runs/lease.py"))
        .args(["commit"])
        .arg(&out1)
        .arg(&state)
        .output()
        .unwrap();
    assert!(commit.status.success(), "{}", String::from_utf8_lossy(&commit.stderr));

    // The old carry holds the half lease 1 trained on: refused before anything runs.
    let stale = run_lease(&carry, &state, &tmp.path().join("stale"), 12);
    assert!(!stale.status.success());
    let log = std::fs::read_to_string(tmp.path().join("stale/log.txt")).unwrap();
    assert!(log.contains("this lease trains on shard 1"), "{log}");

    let report = prepare(&carry, &state, &data);
    assert!(report.contains("shard 1 of 2 (lease 2)"), "{report}");
    let out2 = tmp.path().join("out2");
    let lease2 = run_lease(&carry, &state, &out2, 12);
    assert!(lease2.status.success(), "lease 2 failed");
    let log = std::fs::read_to_string(out2.join("log.txt")).unwrap();
    assert!(log.contains("resuming") && log.contains("(step 6)"), "{log}");
    assert!(log.contains("no optimiser state; Adam's moments restart from zero, re-estimated over 2 steps"), "{log}");
    let run2 = check_brought_back(&out2, 2, 12);
    assert_eq!(run2["leases"][0], run1["leases"][0], "lease 1's row is kept as committed");
    let second = &run2["leases"][1];
    assert_eq!(
        (second["shard"].as_str(), &second["start_step"], &second["end_step"]),
        (Some("1 of 2"), &Value::from(6), &Value::from(12))
    );
    // 12 steps of 32 over the stand-in's 256 photos.
    assert_eq!(run2["total"]["images_seen"], 12 * 32);
    assert_eq!(run2["total"]["epochs"], 1.5);
    assert_eq!(run2["checkpoint"]["step"], 12);
}
