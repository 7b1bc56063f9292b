//! Each output folder belongs to one stage and one input (docs/reliability.md, "Outputs"): a stage
//! refuses a folder another stage wrote, train refuses to resume on other data or settings (naming
//! what changed) and holds a lock; class folders are matched by name across splits; and the weak
//! messages of issue 35 (a report summary that names no stage, a dangling --output link, counts of
//! 0 for `sample`, a garbage `dedupe --model`, `digits folders` over another side, train's log
//! between two loss rows). Tiny CPU training: dcgan32, width 8, batch 4, a few steps.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{class_folders, png_bytes, run_crop, textured, write};
use dcgan_pipeline::data::cifar::Split;
use dcgan_pipeline::data::digits::{write_class_folders, DigitTiles, TILE};
use dcgan_pipeline::data::open_labeled;

const TRAIN: &str = env!("CARGO_BIN_EXE_train");
const SAMPLE: &str = env!("CARGO_BIN_EXE_sample");
const CIFAR_EVAL: &str = env!("CARGO_BIN_EXE_cifar-eval");
const CROP: &str = env!("CARGO_BIN_EXE_crop");
const REPORT: &str = env!("CARGO_BIN_EXE_report");
const DEDUPE: &str = env!("CARGO_BIN_EXE_dedupe");

const TINY: [&str; 10] = [
    "--set",
    "train.preset=\"dcgan32\"",
    "--set",
    "train.width=8",
    "--set",
    "train.batch=4",
    "--set",
    "train.device=\"cpu\"",
    "--set",
    "run.log_every_s=0",
];

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).output().expect("the binary runs");
    eprintln!("{bin} {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 1, no panic, the last line holding every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) -> String {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked at"), "{text}");
    let last = text.trim_end().lines().last().unwrap_or_default().to_owned();
    for needle in needles {
        assert!(last.contains(needle), "{needle:?} not in {last}");
    }
    last
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `n` generated 32x32 photos (seeds from `seed`), packed by crop into `dir`/`name`.
fn packed(dir: &Path, name: &str, n: u32, seed: u32) -> PathBuf {
    let photos = dir.join(format!("{name}-photos"));
    for i in 0..n {
        write(&photos.join(format!("{i:03}.png")), &png_bytes(&textured(32, 32, seed + i)));
    }
    let out = dir.join(name);
    assert!(run_crop(&["-i", s(&photos), "-o", s(&out)]).status.success());
    out
}

fn train(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["-i", s(input), "-o", s(output)];
    args.extend_from_slice(&TINY);
    for set in extra {
        args.extend_from_slice(&["--set", set]);
    }
    run(TRAIN, &args)
}

#[test]
fn a_stage_refuses_a_folder_another_stage_wrote_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let crops = packed(dir.path(), "crop", 8, 0);
    let trained = dir.path().join("train");
    assert!(train(&crops, &trained, &["train.max_steps=2"]).status.success());
    let (train_summary, crop_summary) =
        (std::fs::read(trained.join("summary.json")).unwrap(), std::fs::read(crops.join("summary.json")).unwrap());

    // The natural mistake: sample's pictures into the folder of the run they come from.
    let last = assert_refused(&run(SAMPLE, &["-g", s(&trained), "-o", s(&trained)]), &["written by train", "sample"]);
    assert!(last.contains(s(&trained)), "{last}");
    assert_refused(&run(SAMPLE, &["-g", s(&trained), "-o", s(&crops)]), &["written by crop", "not by sample"]);
    assert_refused(
        &run(CIFAR_EVAL, &["-i", s(&crops), "-o", s(&trained), "-d", "random"]),
        &["written by train", "not by cifar-eval"],
    );
    let photos = dir.path().join("crop-photos");
    assert_refused(&run(CROP, &["-i", s(&photos), "-o", s(&trained)]), &["written by train", "not by crop"]);
    // train into sample's folder, and a folder written before the mark (its summary.json tells).
    let pictures = dir.path().join("pictures");
    assert!(run(SAMPLE, &["-g", s(&trained), "-o", s(&pictures), "--samples", "4"]).status.success());
    assert_refused(&train(&crops, &pictures, &["train.max_steps=2"]), &["written by sample", "not by train"]);
    std::fs::remove_file(trained.join("stage.json")).unwrap();
    assert_refused(&run(SAMPLE, &["-g", s(&trained), "-o", s(&trained)]), &["written by train", "summary.json"]);

    assert_eq!(std::fs::read(trained.join("summary.json")).unwrap(), train_summary, "train's summary kept");
    assert_eq!(std::fs::read(crops.join("summary.json")).unwrap(), crop_summary, "crop's summary kept");
    assert!(!trained.join("samples.png").exists() && !crops.join("samples.png").exists());
}

#[test]
fn a_dangling_output_link_is_named_with_where_it_points() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("out");
    std::os::unix::fs::symlink(dir.path().join("gone/away"), &link).unwrap();
    let photos = dir.path().join("photos");
    write(&photos.join("a.png"), &png_bytes(&textured(40, 40, 1)));
    for out in [
        run(CROP, &["-i", s(&photos), "-o", s(&link)]),
        run(TRAIN, &["-i", s(&photos), "-o", s(&link)]),
        run(CIFAR_EVAL, &["-i", s(&photos), "-o", s(&link), "-d", "random"]),
    ] {
        assert_refused(&out, &["--output", s(&link), "symbolic link", "gone/away", "does not exist"]);
    }
    assert!(!dir.path().join("gone").exists(), "nothing created where it points");
}

#[test]
fn train_refuses_to_resume_on_other_data_naming_the_file_and_force_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (packed(dir.path(), "a", 8, 0), packed(dir.path(), "b", 8, 100));
    let t = dir.path().join("t");
    assert!(train(&a, &t, &["train.max_steps=2"]).status.success());
    let config = std::fs::read(t.join("config.toml")).unwrap();
    let last = assert_refused(
        &train(&b, &t, &["train.max_steps=4"]),
        &["trained on other data", "images-00000.npy changed", "--force"],
    );
    assert!(last.contains(s(&a)) && last.contains(s(&b)), "both inputs named: {last}");
    assert_eq!(std::fs::read(t.join("config.toml")).unwrap(), config, "a refused run changes nothing");
    // The same data again resumes; --force starts over on the other.
    let resumed = train(&a, &t, &["train.max_steps=3"]);
    assert!(resumed.status.success() && stderr(&resumed).contains("resuming from"), "{}", stderr(&resumed));
    let forced = run(
        TRAIN,
        &[&["-i", s(&b), "-o", s(&t), "--force"][..], &TINY[..], &["--set", "train.max_steps=2"][..]].concat(),
    );
    assert!(forced.status.success() && !stderr(&forced).contains("resuming"), "{}", stderr(&forced));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(t.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["report"]["start_step"], 0);

    // Another learning rate: the key is named, with both values.
    assert_refused(
        &train(&b, &t, &["train.max_steps=4", "train.lr=0.001"]),
        &["other settings", "train.lr 0.0002 (this run: 0.001)", "--force"],
    );
}

#[test]
fn two_train_runs_into_one_output_do_not_both_run() {
    let dir = tempfile::tempdir().unwrap();
    let crops = packed(dir.path(), "crop", 8, 0);
    let t = dir.path().join("t");
    let mut first = Command::new(TRAIN)
        .args([&["-i", s(&crops), "-o", s(&t)][..], &TINY[..], &["--set", "train.epochs=1000000"][..]].concat())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Its first checkpoint: it is training (and catches signals) by then.
    while !t.join("checkpoints/latest").exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.join("stage.lock").exists(), "the first run holds its lock");
    let second = train(&crops, &t, &["train.max_steps=2"]);
    let alive = first.try_wait().unwrap().is_none();
    Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    let status = first.wait().unwrap();
    assert!(alive, "the first run was still training");
    assert_refused(&second, &["stage.lock", "is held by another run", "train", &format!("pid {}", first.id())]);
    assert_eq!(status.code(), Some(75), "the first ends on its signal with a checkpoint");
    assert!(!t.join("stage.lock").exists(), "released at its end");
}

/// The "step N (epoch E): loss D .. G .., D(x) .. D(G(z)) .." line of each checkpoint: N -> the text after it.
fn checkpoint_lines(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|l| l.strip_prefix("train: step "))
        .filter_map(|rest| {
            let (step, tail) = rest.split_once(' ')?;
            let losses = tail.split_once("): ")?.1.rsplit_once(", ")?.0.to_owned();
            Some((step.parse().ok()?, losses))
        })
        .collect()
}

#[test]
fn a_checkpoint_between_loss_rows_logs_its_own_steps_losses() {
    let dir = tempfile::tempdir().unwrap();
    let crops = packed(dir.path(), "crop", 48, 0);
    let t = dir.path().join("t");
    let out =
        train(&crops, &t, &["train.epochs=5", "train.max_steps=13", "train.checkpoint_every=1", "train.log_every=10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = checkpoint_lines(&stderr(&out));
    assert_eq!(lines.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>(), "{lines:?}");
    for pair in lines.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "steps {} and {} print the same losses", pair[0].0, pair[1].0);
    }
    // Step 10's line is its row of losses.csv.
    let csv = std::fs::read_to_string(t.join("losses.csv")).unwrap();
    let row: Vec<f64> =
        csv.lines().find(|l| l.starts_with("10,")).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    assert!(lines[9].1.contains(&format!("loss D {:.3} G {:.3}", row[2], row[3])), "{:?} against {row:?}", lines[9]);
}

#[test]
fn another_split_is_matched_to_the_training_classes_by_name_and_a_missing_class_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cifar");
    class_folders(&root, "train", 5, 0);
    class_folders(&root, "test", 2, 1000);
    let (test, _) = open_labeled(&root, Split::Test, 32).unwrap();
    assert_eq!(test.classes[0], "airplane");
    std::fs::remove_dir_all(root.join("test/airplane")).unwrap();
    let e = open_labeled(&root, Split::Test, 32).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("test/airplane is missing") && e.contains("by class name"), "{e}");
    // Through cifar-eval: refused, never a score of shifted labels.
    let out = dir.path().join("eval");
    let sets = [
        "cifar_eval.preset=\"dcgan32\"",
        "cifar_eval.width=8",
        "cifar_eval.device=\"cpu\"",
        "cifar_eval.validation=10",
        "cifar_eval.per_class=1",
        "cifar_eval.draws=1",
    ];
    let mut args = vec!["-i", s(&root), "-o", s(&out), "-d", "random"];
    args.extend(sets.iter().flat_map(|set| ["--set", set]));
    assert_refused(&run(CIFAR_EVAL, &args), &["test/airplane is missing"]);
    assert!(!out.join("confusion.csv").exists());
    // A test class the training split lacks.
    std::fs::rename(root.join("test/bird"), root.join("test/zebra")).unwrap();
    class_folders(&root, "test", 2, 1000);
    let e = format!("{:#}", open_labeled(&root, Split::Test, 32).unwrap_err());
    assert!(e.contains("test/zebra is not a training class"), "{e}");

    // digits folders read the same way: a digit missing from test/ is named.
    let digits = dir.path().join("digits");
    // Tiles 4, 9, 14, ... are test tiles: labels (i / 5) % 10 give every digit to both splits.
    let tiles =
        DigitTiles { tiles: vec![200; 100 * (TILE * TILE) as usize], labels: (0..100).map(|i| (i / 5) % 10).collect() };
    write_class_folders(&tiles, &digits, 32).unwrap();
    assert!(open_labeled(&digits, Split::Test, 32).is_ok());
    std::fs::remove_dir_all(digits.join("test/9")).unwrap();
    let e = format!("{:#}", open_labeled(&digits, Split::Test, 32).unwrap_err());
    assert!(e.contains("test/9 is missing"), "{e}");
}

#[test]
fn digits_folders_over_a_folder_of_another_side_is_refused_naming_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = DigitTiles { tiles: vec![90; 10 * (TILE * TILE) as usize], labels: (0..10).collect() };
    assert_eq!(write_class_folders(&tiles, dir.path(), 32).unwrap(), 10);
    assert_eq!(write_class_folders(&tiles, dir.path(), 32).unwrap(), 0, "kept");
    let e = write_class_folders(&tiles, dir.path(), 64).unwrap_err().to_string();
    assert!(e.contains("0000.png is 32x32") && e.contains("--side 64"), "{e}");
    let kept = image::image_dimensions(dir.path().join("train/0/0000.png")).unwrap();
    assert_eq!(kept, (32, 32));
}

#[test]
fn a_summary_that_names_no_stage_is_a_warning_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    for (name, text) in [("number", r#"{"stage": 42}"#), ("array", "[1, 2]"), ("empty", "{}")] {
        write(&run_dir.join(name).join("summary.json"), text.as_bytes());
    }
    let out = run(REPORT, &["--run", s(&run_dir)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stderr(&out);
    for (name, why) in [("number", "\"stage\" is 42"), ("array", "a JSON array"), ("empty", "no \"stage\"")] {
        let line =
            text.lines().find(|l| l.contains(&format!("{name}/summary.json"))).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("warning") && line.contains(why), "{line}");
    }
    let page = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(page.contains("number/summary.json") && page.contains("name no stage"));
}

#[test]
fn sample_refuses_counts_it_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let crops = packed(dir.path(), "crop", 8, 0);
    let t = dir.path().join("t");
    assert!(train(&crops, &t, &["train.max_steps=1"]).status.success());
    for (flag, value, least) in
        [("--samples", "0", "1"), ("--columns", "0", "1"), ("--walk-rows", "0", "1"), ("--walk-steps", "1", "2")]
    {
        let out = dir.path().join(format!("p{flag}"));
        assert_refused(
            &run(SAMPLE, &["-g", s(&t), "-o", s(&out), flag, value]),
            &[&format!("{flag} {value}: must be at least {least}")],
        );
        assert!(!out.exists(), "refused before the output is made");
    }
}

#[test]
fn a_garbage_dedupe_model_is_refused_before_the_crop_pass() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    for i in 0..3 {
        write(&photos.join(format!("{i}.png")), &png_bytes(&textured(40, 40, i)));
    }
    let model = dir.path().join("model.safetensors");
    std::fs::write(&model, b"not a model at all").unwrap();
    let out = dir.path().join("d");
    assert_refused(&run(DEDUPE, &["-i", s(&photos), "-o", s(&out), "--model", s(&model)]), &["--model", s(&model)]);
    assert!(!out.join("crops").exists(), "no crop pass");
}
