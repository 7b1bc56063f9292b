//! Does G copy its training set? The data-copying test (C_T, src/neighbours/copying.rs) on
//! OpenCV's digits sheet (Debian's opencv-doc): a "generator" that replays training images
//! (slightly noised) must be flagged, one that replays held-out images and a random G must not;
//! `sample --copy-test` writes its files and the report shows them; `train` logs the distance of
//! its fixed z's images to the training set every epoch.

use std::path::{Path, PathBuf};
use std::process::Command;

use dcgan_pipeline::data::cifar::Split;
use dcgan_pipeline::data::digits::{read_sheet, write_class_folders, DIGITS_SHEET};
use dcgan_pipeline::gan::copying::{to_pixels, write_copy_test_for, CopyTestSpec};
use dcgan_pipeline::gan::sample::{seeded_z, TrainedGenerator};
use dcgan_pipeline::gan::{Generator, Preset, Prior};
use dcgan_pipeline::neighbours::copying::mann_whitney;
use dcgan_pipeline::neighbours::{copy_test, nearest, CopyTest, CopyTestSettings, Images, PixelRows};
use dcgan_pipeline::rng::SplitMix;
use tch::{nn, Device, Tensor};

const SIDE: u32 = 32;
const DIMS: usize = (SIDE * SIDE * 3) as usize;

/// The digits' training split and, of the test split, two halves: the held-out images the test
/// uses, and the ones the held-out "generator" replays.
fn digits() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tiles = read_sheet(Path::new(DIGITS_SHEET)).expect("opencv-doc's digits.png (apt install opencv-doc)");
    let train = tiles.split(Split::Train, SIDE).images;
    let test = tiles.split(Split::Test, SIDE).images;
    let (mut held, mut other) = (Vec::new(), Vec::new());
    for (i, image) in test.chunks_exact(DIMS).enumerate() {
        let half = if i % 2 == 0 { &mut held } else { &mut other };
        half.extend_from_slice(image);
    }
    (train, held, other)
}

/// `count` images drawn from `source` (with replacement), each value moved by up to +-`noise`.
fn replay(source: &[u8], count: usize, noise: i32, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix::new(seed);
    let n = source.len() / DIMS;
    let mut out = Vec::with_capacity(count * DIMS);
    for _ in 0..count {
        let i = (rng.next() % n as u64) as usize;
        for &v in &source[i * DIMS..(i + 1) * DIMS] {
            let delta = (rng.next() % (2 * noise as u64 + 1)) as i32 - noise;
            out.push((v as i32 + delta).clamp(0, 255) as u8);
        }
    }
    out
}

fn settings() -> CopyTestSettings {
    CopyTestSettings { cells: 10, min_per_cell: 20, ..CopyTestSettings::default() }
}

fn run(train: &[u8], held: &[u8], samples: &[u8]) -> CopyTest {
    copy_test(
        Images { pixels: train, side: SIDE },
        Images { pixels: held, side: SIDE },
        Images { pixels: samples, side: SIDE },
        &settings(),
    )
    .unwrap()
}

/// A freshly initialised dcgan32 generator (width 8) saved as train saves one.
fn random_generator(dir: &Path) -> PathBuf {
    tch::manual_seed(5);
    let vars = nn::VarStore::new(Device::Cpu);
    let _g = Generator::new(&vars.root(), Preset::Dcgan32, 16, 8);
    let path = dir.join("g.safetensors");
    let named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
    Tensor::write_safetensors(&named, &path).unwrap();
    path
}

#[test]
fn replaying_training_images_is_flagged_and_replaying_held_out_images_or_a_random_g_is_not() {
    let (train, held, other) = digits();
    let copier = run(&train, &held, &replay(&train, 1000, 3, 1));
    let c = copier.c_t.unwrap();
    assert!(c < -5.0, "the training replayer: C_T = {c}");
    assert!(copier.verdict.contains("DATA-COPYING"), "{}", copier.verdict);
    assert!(copier.near_duplicate_share > 0.9, "near duplicates {}", copier.near_duplicate_share);
    assert!(copier.cells_used >= 5, "{} cells used", copier.cells_used);

    let honest = run(&train, &held, &replay(&other, 1000, 3, 2));
    let h = honest.c_t.unwrap();
    assert!(h > -2.0, "the held-out replayer: C_T = {h}");
    assert!(!honest.verdict.contains("COPYING"), "{}", honest.verdict);
    assert!(honest.near_duplicate_share < 0.5, "near duplicates {}", honest.near_duplicate_share);

    let dir = tempfile::tempdir().unwrap();
    let g = TrainedGenerator::load(&random_generator(dir.path())).unwrap();
    let samples = to_pixels(&g.generate(&seeded_z(Prior::Uniform, 1000, 16, 3))).unwrap();
    let random = run(&train, &held, &samples);
    // A random G's samples sit far from every digit; some cells may then hold too few of them.
    if let Some(r) = random.c_t {
        assert!(r > -2.0, "a random G: C_T = {r}");
    }
    assert!(random.generated.median > honest.generated.median, "a random G's samples are far from the digits");
    eprintln!("C_T: training replayer {c:.2}, held-out replayer {h:.2}, random G {:?}", random.c_t);
}

#[test]
fn the_neighbours_are_those_of_brute_force_and_u_is_the_pair_count() {
    let (train, held, _) = digits();
    let reference = &train[..700 * DIMS];
    let queries = &held[..40 * DIMS];
    let found =
        nearest(PixelRows::new("r", reference, DIMS).unwrap(), PixelRows::new("q", queries, DIMS).unwrap(), 2).unwrap();
    for (i, q) in queries.chunks_exact(DIMS).enumerate() {
        let mut all: Vec<(u64, u32)> = reference
            .chunks_exact(DIMS)
            .enumerate()
            .map(|(j, r)| (q.iter().zip(r).map(|(&a, &b)| ((a as i64 - b as i64).pow(2)) as u64).sum(), j as u32))
            .collect();
        all.sort_unstable();
        assert_eq!((found.ssd[2 * i], found.index[2 * i]), all[0], "query {i}");
        assert_eq!((found.ssd[2 * i + 1], found.index[2 * i + 1]), all[1], "query {i}, second");
    }
    // U counts the pairs where the first set's value is the larger (ties half).
    let (a, b) = ([0.3, 0.1, 0.7], [0.2, 0.7]);
    let pairs: f64 = a
        .iter()
        .flat_map(|x| {
            b.iter().map(move |y| {
                if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    assert_eq!(mann_whitney(&a, &b).unwrap().0, pairs);
}

fn sample(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sample")).args(args).output().unwrap()
}

#[test]
fn sample_writes_the_copy_test_and_the_report_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = random_generator(dir.path());
    let out = dir.path().join("run/samples");
    let common = ["--generator", g.to_str().unwrap(), "--output", out.to_str().unwrap(), "--samples", "4"];
    let refused = sample(&[&common[..], &["--copy-test"]].concat());
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--training") && err.lines().count() == 1, "{err}");
    assert!(!out.exists(), "nothing written before the refusal");

    let args = ["--copy-test", "--training", DIGITS_SHEET, "--copy-samples", "300", "--cells", "5"];
    let done = sample(&[&common[..], &args[..]].concat());
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("C_T = "));
    let test_dir = out.join("copy-test");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(test_dir.join("copy_test.json")).unwrap()).unwrap();
    assert_eq!(v["images"]["training_images"], 4000);
    assert_eq!(v["images"]["held_out_images"], 1000, "the sheet's test tiles");
    assert_eq!(v["result"]["generated"]["count"], 300);
    assert_eq!(v["result"]["cells"].as_array().unwrap().len(), 5);
    let csv = std::fs::read_to_string(test_dir.join("neighbours.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301);
    assert_eq!(std::fs::read_to_string(test_dir.join("cells.csv")).unwrap().lines().count(), 6);
    // Four pairs a row, four rows, 32x32 shown twice their size with a 2-pixel gap.
    let closest = image::open(test_dir.join("closest.png")).unwrap();
    assert_eq!((closest.width(), closest.height()), (8 * 66 + 2, 4 * 66 + 2));
    assert!(test_dir.join("distances.png").is_file());

    let page = dcgan_pipeline::report::render(&dir.path().join("run"), "t");
    assert!(page.contains("Does G copy its training set?") && page.contains("C_T (below -3: copying)"), "no section");
}

#[test]
fn a_one_split_input_holds_out_its_tail_unless_training_used_it() {
    let dir = tempfile::tempdir().unwrap();
    let folders = dir.path().join("digits");
    write_class_folders(&read_sheet(Path::new(DIGITS_SHEET)).unwrap(), &folders, SIDE).unwrap();
    std::fs::remove_dir_all(folders.join("test")).unwrap();
    let run = dir.path().join("train");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::rename(random_generator(dir.path()), run.join("generator.safetensors")).unwrap();
    let spec = CopyTestSpec {
        training: folders.clone(),
        held_out: None,
        held_out_share: 0.25,
        samples: 200,
        seed: 1,
        prior: Prior::Uniform,
        settings: CopyTestSettings { cells: 4, ..CopyTestSettings::default() },
    };
    let v = write_copy_test_for(&run, &dir.path().join("out"), &spec).unwrap();
    assert_eq!(
        (v["images"]["training_images"].as_u64(), v["images"]["held_out_images"].as_u64()),
        (Some(3000), Some(1000))
    );
    // A train run that used all 4,000 images: the tail was trained on and cannot be held out.
    std::fs::write(run.join("summary.json"), br#"{"report": {"images": 4000}}"#).unwrap();
    let e = format!("{:#}", write_copy_test_for(&run, &dir.path().join("out2"), &spec).unwrap_err());
    assert!(e.contains("limit_images=3000") && e.contains("digits"), "{e}");
}

#[test]
fn train_logs_the_distance_to_the_training_set_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("train");
    let done = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--input", DIGITS_SHEET, "--output", out.to_str().unwrap()])
        .args(["--set", "train.preset=\"dcgan32\"", "--set", "train.width=8", "--set", "train.batch=64"])
        .args(["--set", "train.epochs=5", "--set", "train.max_steps=70", "--set", "train.device=\"cpu\""])
        .output()
        .unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let csv = std::fs::read_to_string(out.join("nn_distance.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    // 4,000 digits in batches of 64: 62 steps an epoch, then the run's last step.
    assert_eq!(rows.iter().map(|r| r[0] as u64).collect::<Vec<_>>(), vec![62, 70], "{csv}");
    for r in &rows {
        assert!(r[2] > 0.0 && r[2] < 1.0 && r[3] > 0.0 && r[3] < 1.0, "{csv}");
    }
    assert!(out.join("nn_distance.png").is_file());
}
