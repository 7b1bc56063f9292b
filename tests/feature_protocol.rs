//! The cifar-eval feature protocol's choices (issue 14): where a layer's features are taken, the
//! pooling, the normalisation, horizontal flips and the finer C grid.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use dcgan_pipeline::data::cifar::Split;
use dcgan_pipeline::data::{open_labeled, LabeledImages};
use dcgan_pipeline::eval::c_search::refined_c;
use dcgan_pipeline::eval::protocol::{validation_split, SplitFeatures};
use dcgan_pipeline::eval::{
    FeatureDtype, FeatureExtractor, FeatureMatrix, FeatureRows, FeatureSpec, L2Svm, Normalization,
};
use dcgan_pipeline::gan::{FeaturePoint, Pooling, Preset};
use linfa::ParamGuard;
use tch::Device;

const WIDTH: i64 = 8; // features: 16 x (8+8+16+16+32+32) = 1,792

fn extractor(images: &LabeledImages) -> FeatureExtractor {
    let mut e = FeatureExtractor::random(Preset::Imagenet32, WIDTH, 1, Device::Cpu);
    e.recompute_batch_norm(images, 0, 100, |_, _| {}).unwrap();
    e
}

fn values(m: &FeatureMatrix) -> Vec<f32> {
    let mut buf = vec![0.0; m.n_cols()];
    (0..m.n_rows()).flat_map(|i| m.row(i, &mut buf).to_vec()).collect()
}

fn spec(point: FeaturePoint, pooling: Pooling, flipped: bool) -> FeatureSpec {
    FeatureSpec { point, pooling, flipped }
}

#[test]
fn each_feature_point_is_its_own_tensor_and_the_default_is_the_papers() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), "train", 3, 5);
    let (images, _) = open_labeled(dir.path(), Split::Train, 32).unwrap();
    let e = extractor(&images);
    let specs =
        [FeaturePoint::Conv, FeaturePoint::BatchNorm, FeaturePoint::LeakyRelu].map(|p| spec(p, Pooling::Max, false));
    let m = e.extract_many(&images, &specs, 16, FeatureDtype::Float32, |_, _| {}).unwrap();
    let [conv, bn, lrelu] = [values(&m[0]), values(&m[1]), values(&m[2])];
    assert_eq!(
        lrelu,
        values(&e.extract(&images, 16, FeatureDtype::Float32, |_, _| {}).unwrap()),
        "extract() is the paper's protocol"
    );
    assert!(conv.iter().any(|v| *v < -0.01), "conv outputs are signed");
    assert_ne!(conv, lrelu);
    // Max pooling commutes with LeakyReLU (monotone): the post-LeakyReLU features are the
    // post-BatchNorm ones through LeakyReLU, which the BatchNorm ones are not already.
    let leaky = |v: f32| if v >= 0.0 { v } else { 0.2 * v };
    let through: Vec<f32> = bn.iter().map(|v| leaky(*v)).collect();
    assert!(through.iter().zip(&lrelu).all(|(a, b)| (a - b).abs() < 1e-4));
    assert!(bn.iter().zip(&lrelu).any(|(a, b)| (a - b).abs() > 1e-3), "BatchNorm outputs before the LeakyReLU differ");
    // The first layer has no BatchNorm: there the batchnorm point is the conv output.
    let first = 16 * WIDTH as usize;
    assert_eq!(conv[..first], bn[..first]);
    assert_ne!(conv[first..2 * first], bn[first..2 * first]);
}

#[test]
fn max_and_mean_pooling_adds_a_mean_block_where_a_map_is_larger_than_4x4() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), "train", 2, 9);
    let (images, _) = open_labeled(dir.path(), Split::Train, 32).unwrap();
    let e = extractor(&images);
    let layout = e.discriminator().feature_layout(Pooling::MaxMean);
    // 32x32, 16x16, 16x16, 8x8, 8x8: max + mean; the last map is 4x4: one copy.
    assert_eq!(layout, [256, 256, 512, 512, 1024, 512]);
    assert_eq!(e.discriminator().feature_layout(Pooling::Max).iter().sum::<usize>(), 1792);
    let m = e
        .extract_many(
            &images,
            &[
                spec(FeaturePoint::LeakyRelu, Pooling::Max, false),
                spec(FeaturePoint::LeakyRelu, Pooling::MaxMean, false),
            ],
            16,
            FeatureDtype::Float32,
            |_, _| {},
        )
        .unwrap();
    assert_eq!(m[1].n_cols(), 3072);
    let (max, both) = (values(&m[0]), values(&m[1]));
    let (mut b1, mut b2) = (vec![0.0; 1792], vec![0.0; 3072]);
    for i in 0..m[0].n_rows() {
        let (a, b) = (m[0].row(i, &mut b1).to_vec(), m[1].row(i, &mut b2).to_vec());
        // Layer 1: max block then mean block; the mean of a map is at most its max.
        assert_eq!(a[..128], b[..128]);
        assert!(b[128..256].iter().zip(&a[..128]).all(|(mean, mx)| mean <= mx));
        assert!(b[128..256] != a[..128]);
        // The 4x4 layer is copied once, as max pooling gives it.
        assert_eq!(a[1792 - 512..], b[3072 - 512..]);
    }
    assert!(max.len() < both.len());
}

/// An image that is its own mirror (left-right) but not upside-down symmetric.
fn mirror_symmetric(seed: u32) -> Vec<u8> {
    let img = textured(32, 32, seed);
    let mut out = vec![0u8; 32 * 32 * 3];
    for y in 0..32 {
        for x in 0..32 {
            let p = img.get_pixel(x.min(31 - x), y);
            out[((y * 32 + x) * 3) as usize..][..3].copy_from_slice(&p.0);
        }
    }
    out
}

#[test]
fn the_flipped_features_of_a_mirror_symmetric_image_are_its_own() {
    let (sym, asym) = (mirror_symmetric(3), textured(32, 32, 4).into_raw());
    let images = LabeledImages {
        height: 32,
        width: 32,
        images: [sym, asym].concat(),
        labels: vec![0, 1],
        classes: vec!["a".into(), "b".into()],
    };
    let e = FeatureExtractor::random(Preset::Imagenet32, WIDTH, 1, Device::Cpu);
    let specs = [spec(FeaturePoint::LeakyRelu, Pooling::Max, false), spec(FeaturePoint::LeakyRelu, Pooling::Max, true)];
    let m = e.extract_many(&images, &specs, 2, FeatureDtype::Float32, |_, _| {}).unwrap();
    let (mut b1, mut b2) = (vec![0.0; 1792], vec![0.0; 1792]);
    let differs = |i: usize, b1: &mut [f32], b2: &mut [f32]| {
        m[0].row(i, b1).iter().zip(m[1].row(i, b2)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    };
    assert!(differs(0, &mut b1, &mut b2) < 1e-5, "a left-right symmetric image is its own mirror");
    assert!(differs(1, &mut b1, &mut b2) > 1e-3, "an asymmetric image's mirror has other features");
}

#[test]
fn flip_averaged_scores_of_identical_mirrors_are_the_plain_ones_and_mirrors_are_fitted() {
    let dir = tempfile::tempdir().unwrap();
    class_folders(dir.path(), "train", 20, 11);
    let (images, _) = open_labeled(dir.path(), Split::Train, 32).unwrap();
    let e = extractor(&images);
    let specs = [spec(FeaturePoint::LeakyRelu, Pooling::Max, false), spec(FeaturePoint::LeakyRelu, Pooling::Max, true)];
    let mut m = e.extract_many(&images, &specs, 50, FeatureDtype::Float32, |_, _| {}).unwrap();
    let stats = Normalization::Standardize.fit(&m[0], &e.discriminator().feature_layout(Pooling::Max)).unwrap();
    m.iter_mut().for_each(|x| x.standardize(&stats));
    let labels: Vec<usize> = images.labels.iter().map(|&l| l as usize).collect();
    let (fit, val) = validation_split(&labels, 10, 100, 0);
    let fit_labels: Vec<usize> = fit.iter().map(|&i| labels[i]).collect();
    let params = L2Svm::params().c(0.01).n_classes(10).check().unwrap();
    let plain = SplitFeatures { x: &m[0], flipped: None };
    let same = SplitFeatures { x: &m[0], flipped: Some(&m[0]) };
    let model = plain.fit(&params, &fit, &fit_labels).unwrap();
    assert_eq!(
        plain.predict(&model, &val),
        same.predict(&model, &val),
        "averaging a score with itself changes nothing"
    );
    // With the mirrors as extra training rows the fit differs, and twice as many rows are read.
    let flipped = SplitFeatures { x: &m[0], flipped: Some(&m[1]) };
    let with_mirrors = flipped.fit(&params, &fit, &fit_labels).unwrap();
    assert_ne!(model.weights, with_mirrors.weights);
    let accuracy =
        |p: Vec<usize>| p.iter().zip(&val).filter(|(p, i)| **p == labels[**i]).count() as f64 / val.len() as f64;
    assert!(accuracy(flipped.predict(&with_mirrors, &val)) > 0.3, "well above chance");
}

#[test]
fn the_finer_c_grid_lies_between_the_best_and_its_neighbours() {
    let r = refined_c(&[1e-5, 1e-4, 1e-3], 1e-4, 1);
    assert_eq!(r.len(), 2);
    assert!((r[0] / 3.1623e-5 - 1.0).abs() < 1e-3 && (r[1] / 3.1623e-4 - 1.0).abs() < 1e-3, "{r:?}");
    let edge = refined_c(&[1e-4, 1e-5], 1e-5, 3);
    assert_eq!(edge.len(), 3, "one side at the grid's end: {edge:?}");
    assert!(edge.iter().all(|c| *c > 1e-5 && *c < 1e-4));
    assert!(refined_c(&[1e-5, 1e-4], 1e-5, 0).is_empty());
}

fn run_eval(input: &Path, output: &Path, sets: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cifar-eval"));
    cmd.arg("--input").arg(input).arg("--output").arg(output).arg("--discriminator").arg("random");
    let base = [
        "cifar_eval.width=8",
        "cifar_eval.device=\"cpu\"",
        "cifar_eval.batch=64",
        "cifar_eval.validation=100",
        "cifar_eval.per_class=5",
        "cifar_eval.draws=2",
        "cifar_eval.c_grid=[0.001,0.1]",
        "cifar_eval.batch_norm_images=0",
        "run.threads=2",
    ];
    for s in base.iter().chain(sets) {
        cmd.arg("--set").arg(s);
    }
    let run = cmd.output().unwrap();
    assert!(run.status.success(), "{sets:?}: {}", String::from_utf8_lossy(&run.stderr));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(output.join("metrics.json")).unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&run.stdout).contains("this run"));
    m
}

#[test]
fn cifar_eval_takes_every_protocol_key_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    class_folders(&data, "train", 30, 0);
    class_folders(&data, "test", 5, 100_000);
    let m = run_eval(&data, &dir.path().join("default"), &[]);
    assert_eq!(
        m["protocol"],
        serde_json::json!({"feature_point": "leakyrelu", "pooling": "max", "normalization": "standardize", "flips": false})
    );
    assert_eq!(m["feature_count"], 1792);
    let m = run_eval(
        &data,
        &dir.path().join("variant"),
        &[
            "cifar_eval.feature_point=\"conv\"",
            "cifar_eval.pooling=\"max+mean\"",
            "cifar_eval.normalization=\"per_layer\"",
            "cifar_eval.flips=true",
            "cifar_eval.c_refine=1",
            "cifar_eval.save_features=true",
        ],
    );
    assert_eq!(
        m["protocol"],
        serde_json::json!({"feature_point": "conv", "pooling": "max+mean", "normalization": "per_layer", "flips": true})
    );
    assert_eq!(m["feature_count"], 3072);
    assert_eq!(m["grid"].as_array().unwrap().len(), 3, "two grid values and one between the best and its neighbour");
    // The mirrored images' features are saved beside the others, row for row, and differ from them.
    for (split, images) in [("train", &m["train_images"]), ("test", &m["test_images"])] {
        let read = |name: String| FeatureMatrix::read_npy(&dir.path().join("variant").join(name)).unwrap();
        let (plain, flipped) = (read(format!("features-{split}.npy")), read(format!("features-{split}-flipped.npy")));
        assert_eq!((flipped.n_rows() as u64, flipped.n_cols()), (images.as_u64().unwrap(), 3072), "{split}");
        assert_eq!((plain.n_rows(), plain.n_cols()), (flipped.n_rows(), flipped.n_cols()), "{split}");
        let (mut a, mut b) = (vec![0f32; 3072], vec![0f32; 3072]);
        assert_ne!(
            plain.row(0, &mut a),
            flipped.row(0, &mut b),
            "{split}: a mirrored image's features equal the image's"
        );
    }
    assert!(m["test"]["accuracy"].as_f64().unwrap() > 0.3);
    // A value the key does not know is refused, naming the values it takes.
    let run = Command::new(env!("CARGO_BIN_EXE_cifar-eval"))
        .args(["--print-config", "--set", "cifar_eval.feature_point=\"relu\""])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("relu") && err.contains("leakyrelu"), "{err}");
}
