//! Hostile settings (docs/reliability.md): sizes too big for the machine, NaN and infinity, values
//! of the wrong type, an --output that is a file. Each is refused before any work with a one-line
//! error naming the key or the estimate, never a panic; a run whose training diverges stops at
//! the first non-finite loss and never writes a checkpoint of non-finite weights; cifar-eval
//! refuses a discriminator of non-finite weights and non-finite features.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{class_folders, png_bytes, run_crop, textured, write};
use dcgan_pipeline::config::Config;
use dcgan_pipeline::gan::trainer::{non_finite_parameter, Gan};
use dcgan_pipeline::gan::{Discriminator, Generator, Preset};
use tch::{nn, Device, Tensor};

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).output().expect("the binary runs");
    eprintln!("{bin} {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A refusal: exit status 1, one line on stderr holding every one of `needles`, no panic.
fn assert_refused(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    stderr
}

fn set_args<'a>(sets: &[&'a str]) -> Vec<&'a str> {
    sets.iter().flat_map(|s| ["--set", s]).collect()
}

const TRAIN: &str = env!("CARGO_BIN_EXE_train");
const CIFAR_EVAL: &str = env!("CARGO_BIN_EXE_cifar-eval");
const SAMPLE: &str = env!("CARGO_BIN_EXE_sample");

#[test]
fn sizes_too_big_for_the_machine_are_refused_with_the_estimate_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (missing, out) = (dir.path().join("no-such-input"), dir.path().join("out"));
    let io = ["-i", missing.to_str().unwrap(), "-o", out.to_str().unwrap()];
    // 100,000 wide: terabytes on any machine. The others against a 24 GiB limit, as on CI.
    for (bin, set, key) in [
        (TRAIN, "train.width=100000", "train.width = 100000"),
        (TRAIN, "train.width=3000", "train.width = 3000"),
        (TRAIN, "train.z_dim=100000000000", "train.z_dim = 100000000000"),
        (TRAIN, "train.batch=100000000", "train.batch = 100000000"),
        (CIFAR_EVAL, "cifar_eval.width=100000", "cifar_eval.width = 100000"),
        (CIFAR_EVAL, "cifar_eval.width=1000", "cifar_eval.width = 1000"),
        (env!("CARGO_BIN_EXE_dedupe"), "dedupe.ae_batch=1000000000000", "dedupe.ae_batch = 1000000000000"),
    ] {
        let limit = if set.ends_with("=100000") { "run.max_memory_gb=0" } else { "run.max_memory_gb=24" };
        let mut args = io.to_vec();
        args.extend(set_args(&[set, limit, "train.device=\"cpu\"", "cifar_eval.device=\"cpu\""]));
        assert_refused(&run(bin, &args), &[key, "needs about", "GiB by estimate", "parameters"]);
        assert!(!out.exists(), "{set}: refused before the output was made");
    }
    // The benchmark allocates the same model: refused the same way.
    let args = set_args(&["train.width=100000"]);
    let mut bench = vec!["--benchmark-steps", "1"];
    bench.extend(args);
    assert_refused(&run(TRAIN, &bench), &["train.width = 100000", "needs about"]);
}

#[test]
fn the_papers_settings_and_the_demo_fit_a_24_gib_machine() {
    for file in [None, Some(Path::new("configs/paper.toml"))] {
        let config = Config::load(file, &["run.max_memory_gb=24".into()]).unwrap();
        let t = &config.train;
        let train = dcgan_pipeline::gan::footprint::training_estimate(t.preset, t.z_dim(), t.width(), t.batch);
        assert!(train.bytes < 8.0 * dcgan_pipeline::memory::GIB, "{train:?}");
        dcgan_pipeline::gan::footprint::check_training(t, 24.0).unwrap();
        dcgan_pipeline::eval::footprint::check(&config.cifar_eval, 24.0).unwrap();
    }
}

/// A freshly initialised imagenet32 generator of width 8, written as train writes one.
fn generator_file(dir: &Path) -> PathBuf {
    let vars = nn::VarStore::new(Device::Cpu);
    let _g = Generator::new(&vars.root(), Preset::Imagenet32, 16, 8);
    let path = dir.join("g.safetensors");
    let named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
    Tensor::write_safetensors(&named, &path).unwrap();
    with_record(path)
}

/// The size and sha256 record train writes beside a model, so that the loader checks it quietly.
fn with_record(path: PathBuf) -> PathBuf {
    let record = dcgan_pipeline::integrity::FileRecord::of_file(&path).unwrap();
    dcgan_pipeline::integrity::write_model_record(&path, &record, serde_json::json!({})).unwrap();
    path
}

#[test]
fn sample_counts_too_big_are_refused_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let g = generator_file(dir.path());
    let out = dir.path().join("pictures");
    for (flags, named) in [
        (["--samples", "100000000"], "--samples 100000000"),
        (["--columns", "1000000000"], "--columns 1000000000"),
        (["--walk-rows", "100000000"], "--walk-rows 100000000"),
    ] {
        let mut args = vec!["-g", g.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(flags);
        assert_refused(&run(SAMPLE, &args), &[named, "needs about", "GiB by estimate"]);
        assert!(!out.exists(), "{named}: refused before the output was made");
    }
}

#[test]
fn nan_and_infinity_are_refused_at_load_under_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    let io = ["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let dedupe = env!("CARGO_BIN_EXE_dedupe");
    for (bin, set, key) in [
        (TRAIN, "train.lr=nan", "train.lr = NaN"),
        (TRAIN, "train.lr=inf", "train.lr = inf"),
        (TRAIN, "train.beta1=-inf", "train.beta1 = -inf"),
        (CIFAR_EVAL, "cifar_eval.tol=nan", "cifar_eval.tol = NaN"),
        (CIFAR_EVAL, "cifar_eval.c_grid=[0.001, inf]", "cifar_eval.c_grid[1] = inf"),
        (dedupe, "dedupe.ae_lr=nan", "dedupe.ae_lr = NaN"),
        (env!("CARGO_BIN_EXE_faces"), "faces.margin=inf", "faces.margin = inf"),
        (env!("CARGO_BIN_EXE_crop"), "run.log_every_s=nan", "run.log_every_s = NaN"),
    ] {
        let mut args = io.to_vec();
        args.extend(set_args(&[set]));
        assert_refused(&run(bin, &args), &[key, "not a finite number"]);
    }
}

#[test]
fn set_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    let io = ["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    for (bin, set) in [
        (env!("CARGO_BIN_EXE_crop"), "crop.size=abc"),
        (env!("CARGO_BIN_EXE_faces"), "faces.align=\"foo\""),
        (env!("CARGO_BIN_EXE_faces"), "faces.score_threshold=high"),
        (TRAIN, "train.preset=\"dcgan128\""),
        (TRAIN, "train.epochs=-1"),
        (CIFAR_EVAL, "cifar_eval.pooling=\"min\""),
        (env!("CARGO_BIN_EXE_dedupe"), "dedupe.search=\"fast\""),
    ] {
        let mut args = io.to_vec();
        args.extend(set_args(&[set]));
        assert_refused(&run(bin, &args), &[&format!("--set {set}: ")]);
    }
}

#[test]
fn run_settings_beyond_their_bounds_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&input).unwrap();
    let io = ["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    // run.batch is allocated up front (this one aborted in the allocator); every thread is spawned
    // at start (this many hung).
    for (set, key) in
        [("run.batch=1000000000000", "run.batch = 1000000000000"), ("run.threads=100000", "run.threads = 100000")]
    {
        for bin in [env!("CARGO_BIN_EXE_crop"), env!("CARGO_BIN_EXE_faces"), TRAIN] {
            let mut args = io.to_vec();
            args.extend(set_args(&[set]));
            assert_refused(&run(bin, &args), &[key]);
        }
    }
}

#[test]
fn an_output_that_is_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let input = dir.path().join("no-such-input");
    let io = ["-i", input.to_str().unwrap(), "-o", file.to_str().unwrap()];
    let named = format!("--output {}: cannot create", file.display());
    assert_refused(&run(TRAIN, &io), &[&named]);
    assert_refused(&run(CIFAR_EVAL, &io), &[&named]);
    let g = generator_file(dir.path());
    assert_refused(&run(SAMPLE, &["-g", g.to_str().unwrap(), "-o", file.to_str().unwrap()]), &[file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder", "left as it was");
}

/// A packed set of `n` generated 32x32 images (crop's output).
fn packed_set(dir: &Path, n: u32) -> PathBuf {
    let photos = dir.join("photos");
    for i in 0..n {
        write(&photos.join(format!("{i:03}.png")), &png_bytes(&textured(32, 32, i)));
    }
    let packed = dir.join("packed");
    assert!(run_crop(&["-i", photos.to_str().unwrap(), "-o", packed.to_str().unwrap()]).status.success());
    packed
}

#[test]
fn training_stops_at_the_first_non_finite_loss_and_writes_no_checkpoint_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let packed = packed_set(dir.path(), 16);
    // A finite but absurd learning rate: D's first update throws its weights to 1e30, and G's
    // loss of that same step, through the new D, overflows. Caught at step 1's checkpoint,
    // before it is written; without checkpoints between, at the end of epoch 1 (step 2), which
    // still names step 1 (the first step is noted on the device every step).
    for (run_name, checkpoint_every) in
        [("every-step", "train.checkpoint_every=1"), ("epochs", "train.checkpoint_every=0")]
    {
        let out = dir.path().join(run_name);
        let sets = [
            "train.width=8",
            "train.batch=8",
            "train.device=\"cpu\"",
            "train.lr=1e30",
            "train.epochs=4",
            "train.log_every=3",
            checkpoint_every,
        ];
        let mut args = vec!["-i", packed.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(set_args(&sets));
        let result = run(TRAIN, &args);
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert_eq!(result.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked at"), "{stderr}");
        let error = stderr.lines().find(|l| l.starts_with("train: error: ")).expect("an error line");
        assert!(error.contains("step 1: loss_g is not finite (train.lr = 1e30); training stopped"), "{error}");
        assert!(error.ends_with("the last good checkpoint is kept (none yet)"), "{error}");
        let written = std::fs::read_dir(out.join("checkpoints")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, 0, "{run_name}: no checkpoint of the diverged weights");
        assert!(!out.join("generator.safetensors").exists() && !out.join("summary.json").exists());
    }
}

#[test]
fn a_non_finite_parameter_is_named_by_network_and_tensor() {
    let config = Config::load(None, &["train.width=4".into(), "train.device=\"cpu\"".into()]).unwrap();
    let gan = Gan::new(&config.train, Device::Cpu);
    assert_eq!(non_finite_parameter(&gan).unwrap(), None);
    let var = gan.d_vars.variables()["c3.bn.running_var"].shallow_clone();
    let _ = tch::no_grad(|| var.get(1).fill_(f64::INFINITY));
    assert_eq!(non_finite_parameter(&gan).unwrap().as_deref(), Some("D's c3.bn.running_var"));
}

/// A random imagenet32 D of width 8 with `edit` applied to its tensors, as a checkpoint file.
fn edited_discriminator(dir: &Path, name: &str, edit: impl Fn(&str, Tensor) -> Tensor) -> PathBuf {
    tch::manual_seed(5);
    let vars = nn::VarStore::new(Device::Cpu);
    let _d = Discriminator::new(&vars.root(), Preset::Imagenet32, 8);
    let named: Vec<(String, Tensor)> = vars.variables().into_iter().map(|(k, t)| (k.clone(), edit(&k, t))).collect();
    let path = dir.join(name);
    Tensor::write_safetensors(&named, &path).unwrap();
    with_record(path)
}

#[test]
fn cifar_eval_refuses_non_finite_weights_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    class_folders(&data, "train", 10, 0);
    class_folders(&data, "test", 2, 100_000);
    let nan = edited_discriminator(dir.path(), "nan.safetensors", |k, t| {
        if k == "c4.conv.weight" {
            t.full_like(f64::NAN)
        } else {
            t
        }
    });
    let huge =
        edited_discriminator(dir.path(), "huge.safetensors", |k, t| if k == "c1.conv.weight" { t * 1e6 } else { t });
    let eval = |d: &Path, sets: &[&str]| {
        let out = dir.path().join("out");
        let mut args = vec!["-i", data.to_str().unwrap(), "-o", out.to_str().unwrap(), "-d", d.to_str().unwrap()];
        let base = ["cifar_eval.width=8", "cifar_eval.device=\"cpu\"", "cifar_eval.validation=20"];
        args.extend(set_args(&base));
        args.extend(set_args(sets));
        run(CIFAR_EVAL, &args)
    };
    let nan_file = nan.display().to_string();
    assert_refused(&eval(&nan, &[]), &[&nan_file, "c4.conv.weight", "NaN or infinity"]);
    // Features of 1e6 do not fit float16 (it would store infinity); in float32 they do, but a
    // first layer of 3e38 weights overflows float32 itself.
    let huge_file = huge.display().to_string();
    assert_refused(
        &eval(&huge, &["cifar_eval.batch_norm=\"checkpoint\""]),
        &[&huge_file, "feature", "beyond float16", "features_dtype"],
    );
    let inf =
        edited_discriminator(
            dir.path(),
            "inf.safetensors",
            |k, t| {
                if k == "c1.conv.weight" {
                    t.full_like(3e38)
                } else {
                    t
                }
            },
        );
    let inf_file = inf.display().to_string();
    assert_refused(
        &eval(&inf, &["cifar_eval.batch_norm=\"checkpoint\"", "cifar_eval.features_dtype=\"float32\""]),
        &[&inf_file, "feature", "no SVM is fitted"],
    );
}

#[test]
fn cifar_eval_protocol_settings_at_their_extremes_end_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    class_folders(&data, "train", 6, 0);
    class_folders(&data, "test", 2, 100_000);
    const HUGE: &str = "9223372036854775807";
    for set in [
        format!("cifar_eval.validation={HUGE}"),
        format!("cifar_eval.per_class={HUGE}"),
        format!("cifar_eval.holdout_test={HUGE}"),
        format!("cifar_eval.batch_norm_images={HUGE}"),
        format!("cifar_eval.limit_train_per_class={HUGE}"),
        "cifar_eval.validation=0".into(),
        "cifar_eval.draws=0".into(),
    ] {
        let out = dir.path().join("out");
        let mut args = vec!["-i", data.to_str().unwrap(), "-o", out.to_str().unwrap(), "-d", "random"];
        let base =
            ["cifar_eval.width=8", "cifar_eval.device=\"cpu\"", "cifar_eval.validation=20", "cifar_eval.per_class=2"];
        args.extend(set_args(&base));
        args.extend(set_args(&[set.as_str()]));
        let result = run(CIFAR_EVAL, &args);
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(!stderr.contains("panicked at"), "{set}: {stderr}");
        match result.status.code() {
            Some(0) => {}
            Some(1) => {
                let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("cifar-eval: error: ")).collect();
                assert_eq!(errors.len(), 1, "{set}: one error line: {stderr}");
            }
            other => panic!("{set}: exit {other:?}: {stderr}"),
        }
    }
    // The solver's parameters are refused at load, by key, before any image is read.
    for (set, key) in [
        ("cifar_eval.tol=-1", "cifar_eval.tol = -1"),
        ("cifar_eval.max_passes=0", "cifar_eval.max_passes = 0"),
        ("cifar_eval.bias=-1", "cifar_eval.bias = -1"),
    ] {
        let args = ["-i", "no-such-input", "-o", "no-such-output", "--set", set];
        assert_refused(&run(CIFAR_EVAL, &args), &[key]);
    }
    // A limit beyond the data takes it all: not counted as 1.8e19 images.
    let limit = format!("cifar_eval.limit_train_per_class={HUGE}");
    let config = Config::load(None, &[limit]).unwrap();
    dcgan_pipeline::eval::footprint::check(&config.cifar_eval, 24.0).unwrap();
}
