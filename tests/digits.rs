//! OpenCV's digits sheet as Debian's opencv-doc installs it: the reader, its split, the class
//! folders, and the digits demo's checks (the histogram check on real and random "generators",
//! the few-label table's rule, the report's section).

mod common;

use std::path::Path;
use std::process::Command;

use dcgan_pipeline::data::cifar::Split;
use dcgan_pipeline::data::digits::{read_sheet, DIGITS_SHEET};
use dcgan_pipeline::data::{open_labeled, split_exists};
use dcgan_pipeline::eval::digits::{
    beats, generator_samples, to_labeled, DigitsEvalConfig, FeatureRow, FewLabel, HistogramCheck, PixelClassifier,
};
use dcgan_pipeline::gan::sample::TrainedGenerator;
use dcgan_pipeline::gan::{Generator, Preset};
use tch::{nn, Device, Tensor};

fn sheet() -> &'static Path {
    let path = Path::new(DIGITS_SHEET);
    assert!(path.exists(), "{DIGITS_SHEET} is missing: install Debian's opencv-doc (make setup)");
    path
}

#[test]
fn the_installed_sheet_is_5000_labelled_digits_with_a_fixed_split_that_train_and_cifar_eval_read() {
    let tiles = read_sheet(sheet()).unwrap();
    assert_eq!(tiles.len(), 5000);
    for d in 0..10 {
        assert_eq!(tiles.labels.iter().filter(|&&l| l == d).count(), 500, "digit {d}");
    }
    // Digits are light strokes on black: every tile has ink and a dark border.
    for i in (0..5000).step_by(97) {
        let t = tiles.tile(i);
        assert!(t.pixels().any(|p| p[0] > 128), "tile {i} is empty");
        assert!(t.get_pixel(0, 0)[0] < 64, "tile {i}'s corner is not background");
    }
    let (train, rejected) = open_labeled(sheet(), Split::Train, 32).unwrap();
    let (test, _) = open_labeled(sheet(), Split::Test, 32).unwrap();
    assert!(rejected.is_empty());
    assert_eq!((train.len(), test.len(), train.width, train.height), (4000, 1000, 32, 32));
    for d in 0..10 {
        assert_eq!(test.labels.iter().filter(|&&l| l == d).count(), 100);
    }
    assert!(split_exists(sheet(), Split::Test) && split_exists(sheet(), Split::Train));
    // Grey copied to RGB.
    assert!(train.images.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    // The labels belong to the tiles: a linear classifier on pixels learns them (misaligned
    // labels would give about 10%).
    let classifier = PixelClassifier::fit(&train, &test, &DigitsEvalConfig::default()).unwrap();
    assert!(classifier.test_accuracy > 0.85, "pixel SVM: {:.3} on the test digits", classifier.test_accuracy);
}

#[test]
fn the_class_folders_read_back_as_the_sheet_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(["folders", "--input", DIGITS_SHEET, "--output", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(dir.path().join("test/7")).unwrap().count(), 100);
    let (direct, _) = open_labeled(sheet(), Split::Train, 32).unwrap();
    let (folders, rejected) = open_labeled(dir.path(), Split::Train, 32).unwrap();
    assert!(rejected.is_empty());
    assert_eq!(folders.classes, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    // Same images and labels (the folders list each class's files in sheet order).
    assert_eq!(folders.labels, direct.labels);
    assert!(folders.images == direct.images, "the PNGs hold other pixels than the direct read");
    // A wrong file is named.
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"no png").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_digits"))
        .args(["folders", "--input", bad.to_str().unwrap(), "--output", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bad.png"));
}

fn random_generator(dir: &Path) -> TrainedGenerator {
    tch::manual_seed(5);
    let vars = nn::VarStore::new(Device::Cpu);
    let _g = Generator::new(&vars.root(), Preset::Dcgan32, 100, 16);
    let path = dir.join("g.safetensors");
    let named: Vec<(String, Tensor)> = vars.variables().into_iter().collect();
    Tensor::write_safetensors(&named, &path).unwrap();
    TrainedGenerator::load(&path).unwrap()
}

#[test]
fn the_histogram_check_passes_real_digits_and_fails_a_random_or_collapsed_generator() {
    let config = DigitsEvalConfig::default();
    let (train, _) = open_labeled(sheet(), Split::Train, 32).unwrap();
    let (test, _) = open_labeled(sheet(), Split::Test, 32).unwrap();
    let classifier = PixelClassifier::fit(&train, &test, &config).unwrap();
    // The real test digits, as if a generator had drawn them.
    let real = HistogramCheck::new(&classifier.predict(&test), 3.0, &classifier);
    assert!(real.passed, "{}", real.describe());
    // An untrained generator.
    let dir = tempfile::tempdir().unwrap();
    let g = random_generator(dir.path());
    let samples = generator_samples(&g, 1000, 1);
    let random = HistogramCheck::new(&classifier.predict(&to_labeled(&samples)), 3.0, &classifier);
    assert!(!random.passed, "a random G passed: {}", random.describe());
    // A collapsed one: one real digit, 1,000 times.
    let one: Vec<usize> = vec![classifier.predict(&test)[0]; 1000];
    let collapsed = HistogramCheck::new(&one, 3.0, &classifier);
    assert!(!collapsed.passed && collapsed.missing.len() == 9, "{}", collapsed.describe());
}

fn row(name: &str, all: f64, means: &[f64]) -> FeatureRow {
    FeatureRow {
        name: name.into(),
        source: name.into(),
        preset: Some(Preset::Dcgan32),
        width: Some(32),
        features: 10,
        few: means
            .iter()
            .map(|&m| FewLabel { per_class: 10, c: 1.0, accuracies: vec![m], mean: m, std: 0.0 })
            .collect(),
        all_labels_c: 1.0,
        all_labels_accuracy: all,
        seconds: 0.0,
    }
}

#[test]
fn a_trained_d_must_beat_the_random_one_on_the_mean_over_the_columns() {
    let random = row("random", 0.90, &[0.60, 0.80, 0.85]);
    assert!(beats(&row("d", 0.95, &[0.70, 0.85, 0.90]), &random));
    // Behind in one column, ahead over all (the 1,500-step demo D against its random D).
    assert!(beats(&row("d", 0.976, &[0.842, 0.923, 0.950]), &row("random", 0.970, &[0.807, 0.929, 0.948])));
    assert!(!beats(&row("d", 0.90, &[0.50, 0.80, 0.85]), &random), "worse with 10 labels, equal elsewhere");
    assert!(!beats(&row("d", 0.80, &[0.60, 0.80, 0.85]), &random), "worse with all labels");
    assert!(!beats(&random, &random));
}
