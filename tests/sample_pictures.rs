//! Pictures from a trained generator: the `sample` binary on a generator that `train` wrote
//! (float32) and exported (float16), the latent walk's endpoints, float16 against float32.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use common::*;
use dcgan_pipeline::gan::sample::{latent_walk, seeded_z, TrainedGenerator};
use dcgan_pipeline::gan::Prior;
use tch::Kind;

/// MKL picks kernels by buffer alignment unless told not to, which changes the last bits of
/// products; the bitwise comparisons here need its reproducible mode, set before any tensor op.
fn reproducible() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var("MKL_CBWR", "COMPATIBLE"));
}

/// A generator trained 2 steps by the train binary (so the names are the ones train saves),
/// and its float16 export: (train output folder, float16 file).
fn trained(dir: &Path) -> (PathBuf, PathBuf) {
    let photos = dir.join("photos");
    for i in 0..16u32 {
        write(&photos.join(format!("p{i:02}.png")), &png_bytes(&textured(36 + i, 40, i)));
    }
    let crops = dir.join("crop");
    assert!(run_crop(&["--input", photos.to_str().unwrap(), "--output", crops.to_str().unwrap()]).status.success());
    let run = dir.join("train");
    let train = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--input", crops.to_str().unwrap(), "--output", run.to_str().unwrap()])
        .args([
            "--set",
            "train.width=8",
            "--set",
            "train.batch=8",
            "--set",
            "train.max_steps=2",
            "--set",
            "train.device=\"cpu\"",
        ])
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", String::from_utf8_lossy(&train.stderr));
    let g16 = dir.join("models/g16.safetensors");
    let export = Command::new(env!("CARGO_BIN_EXE_train"))
        .arg("--output")
        .arg(&run)
        .arg("--input")
        .arg(&crops)
        .arg("--export-generator")
        .arg(&g16)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    (run, g16)
}

fn sample(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_sample")).args(args).output().expect("sample runs");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// `sample` of `generator` into `output`: 12 samples in 4 columns and a walk of 3 rows x 5 steps.
fn twelve_samples_and_a_walk(generator: &Path, output: &Path) -> std::process::Output {
    let (g, o) = (generator.to_str().unwrap(), output.to_str().unwrap());
    sample(&["-g", g, "-o", o, "--samples", "12", "--columns", "4", "--walk-rows", "3", "--walk-steps", "5"])
}

#[test]
fn the_walk_ends_on_the_generators_images_of_its_points_and_float16_stays_close() {
    reproducible();
    let dir = tempfile::tempdir().unwrap();
    let (run, g16_path) = trained(dir.path());
    let g32 = TrainedGenerator::load(&run).unwrap();
    assert_eq!((g32.z_dim(), g32.width, g32.stored_kind), (256, 8, Kind::Float));

    // The walk: row r runs from G(p_r) to G(p_r+1), exactly.
    let points = seeded_z(Prior::Uniform, 4, g32.z_dim(), 11);
    let steps = 6;
    let walk = g32.generate(&latent_walk(&points, steps));
    let ends = g32.generate(&points);
    assert_eq!(walk.size(), [3 * steps, 3, 32, 32]);
    for r in 0..3 {
        assert!(walk.get(r * steps).equal(&ends.get(r)), "row {r} starts at G(p{r})");
        assert!(walk.get(r * steps + steps - 1).equal(&ends.get(r + 1)), "row {r} ends at G(p{})", r + 1);
        // ... and goes somewhere in between: the middle is neither end.
        assert!(!walk.get(r * steps + 2).equal(&ends.get(r)));
    }

    // The float16 export: the same pictures within float16's rounding of the weights (about 5e-4
    // relative), not the same bits.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(g16_path.with_extension("safetensors.json")).unwrap()).unwrap();
    assert_eq!(
        (record["network"].as_str(), record["dtype"].as_str(), record["step"].as_u64()),
        (Some("generator"), Some("float16"), Some(2))
    );
    let g16 = TrainedGenerator::load(&g16_path).unwrap();
    assert_eq!(g16.stored_kind, Kind::Half);
    let z = seeded_z(Prior::Uniform, 16, 256, 3);
    let (a, b) = (g32.generate(&z), g16.generate(&z));
    let max_diff = f64::try_from((&a - &b).abs().max()).unwrap();
    let scale = f64::try_from(a.abs().max()).unwrap();
    assert!(max_diff > 0.0, "float16 weights gave bit-identical images: the export did not round");
    assert!(max_diff < 5e-3 * scale.max(0.1), "float16 moved the images by {max_diff} (scale {scale})");
}

#[test]
fn sample_writes_a_grid_a_walk_and_what_they_came_from() {
    reproducible();
    let dir = tempfile::tempdir().unwrap();
    let (run, g16) = trained(dir.path());
    let out32 = dir.path().join("pictures32");
    let out = twelve_samples_and_a_walk(&run, &out32);
    assert!(out.status.success());
    // 32x32 images shown at twice their size with a 2-pixel gap: 4 x 3 and 5 x 3 tiles.
    let grid = image::open(out32.join("samples.png")).unwrap().to_rgb8();
    assert_eq!(grid.dimensions(), (4 * 66 + 2, 3 * 66 + 2));
    let walk = image::open(out32.join("walk.png")).unwrap().to_rgb8();
    assert_eq!(walk.dimensions(), (5 * 66 + 2, 3 * 66 + 2));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out32.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stage"], "sample");
    assert_eq!(
        (summary["stored_dtype"].as_str(), summary["preset"].as_str(), summary["width"].as_i64()),
        (Some("float32"), Some("imagenet32"), Some(8))
    );
    assert!(summary["generator"].as_str().unwrap().ends_with("generator.safetensors"));

    // The same seed, the same pictures; the float16 file gives nearly the same ones.
    let again = dir.path().join("again");
    assert!(twelve_samples_and_a_walk(&run, &again).status.success());
    assert_eq!(std::fs::read(again.join("samples.png")).unwrap(), std::fs::read(out32.join("samples.png")).unwrap());
    let out16 = dir.path().join("pictures16");
    assert!(twelve_samples_and_a_walk(&g16, &out16).status.success());
    let grid16 = image::open(out16.join("samples.png")).unwrap().to_rgb8();
    let worst = grid.as_raw().iter().zip(grid16.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(worst <= 2, "float16 changed a pixel by {worst} of 255");
    let summary16: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out16.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary16["stored_dtype"], "float16");
    assert_eq!(summary16["generator_record"]["network"], "generator", "the export's record travels along");

    // Not a generator: a clear error naming the file, exit status 1.
    let d = run.join("discriminator.safetensors");
    let out = sample(&["-g", d.to_str().unwrap(), "-o", dir.path().join("bad").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("discriminator.safetensors") && stderr.contains("not a generator"), "{stderr}");
}
