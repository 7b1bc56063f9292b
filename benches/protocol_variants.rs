//! The feature protocol, choice by choice (issue 14), on a class-balanced subset of the CIFAR-10
//! training images: validation accuracy, time and peak memory of each row, as JSON lines.
//!
//!   cargo run --profile test-release --example protocol_variants -- \
//!       INPUT OUT DISCRIMINATOR(path|random) FIT_IMAGES VALIDATION_IMAGES BN_IMAGES [ROWS]
//!
//! The subset: the protocol's held-out test images are left unread (as `--snapshots` does); of the
//! rest, VALIDATION_IMAGES class-balanced images are the validation split and FIT_IMAGES are drawn
//! class-balanced from the remainder (seed 0). Features are extracted once per feature point and
//! pooling (one forward pass for all of them; a second, mirrored, for the flip rows) and cached in
//! OUT as .npy; every row reuses them. Each row tries the C grid (scaled by the features' mean
//! squared norm, so that unnormalised features get a comparable grid), widened at an edge when the
//! best C sits there. ROWS (comma-separated) picks rows: points (or conv: conv and leakyrelu
//! only), pooling, normalization, flips, finer_c, per_class (default all). PROTOCOL_GRID overrides
//! the C grid. Rows are appended to OUT/rows.jsonl as they finish.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dcgan_pipeline::config::Config;
use dcgan_pipeline::eval::c_search::refined_c;
use dcgan_pipeline::eval::protocol::{
    draw_per_class, load_splits, select_images, validation_split, SplitFeatures, TestSplit,
};
use dcgan_pipeline::eval::{
    ClassificationMetrics, FeatureDtype, FeatureExtractor, FeatureMatrix, FeatureRows, FeatureSpec, Normalization,
};
use dcgan_pipeline::gan::{FeaturePoint, Pooling};
use serde_json::json;

const BASE_GRID: [f64; 4] = [1e-5, 3e-5, 1e-4, 3e-4];

/// The C grid: `PROTOCOL_GRID` (comma-separated) or the half-decade grid 1e-5 ... 3e-4. The full
/// split was measured with 1e-5,3e-5,1e-4: 3e-4 never won on the subset and is the slowest fit.
fn base_grid() -> Vec<f64> {
    std::env::var("PROTOCOL_GRID").map_or_else(
        |_| BASE_GRID.to_vec(),
        |g| g.split(',').map(|c| c.trim().parse().expect("PROTOCOL_GRID: numbers")).collect(),
    )
}

/// Peak resident memory since the last reset (MiB), and a reset for the next row.
fn peak_rss_mib(reset: bool) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0);
    if reset {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    peak
}

struct Data {
    labels: Vec<usize>,
    fit: Vec<usize>,
    val: Vec<usize>,
}

struct Run {
    out: PathBuf,
    d_name: String,
    threads: usize,
    config: dcgan_pipeline::eval::CifarEvalConfig,
}

impl Run {
    fn emit(&self, row: serde_json::Value) {
        println!("{row}");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out.join("rows.jsonl"))
            .expect("rows.jsonl");
        writeln!(f, "{row}").expect("write rows.jsonl");
    }

    /// Fits on `fit` for every C of `grid`, scored on `val`; widens the grid at an edge (twice at
    /// most) when the best C is there. Returns (best C, best accuracy, [(C, accuracy, fit s)]).
    fn grid(
        &self,
        f: &SplitFeatures,
        data: &Data,
        fit: &[usize],
        grid: &[f64],
        widen: bool,
    ) -> (f64, f64, Vec<(f64, f64, f64)>) {
        let fit_labels: Vec<usize> = fit.iter().map(|&i| data.labels[i]).collect();
        let val_labels: Vec<usize> = data.val.iter().map(|&i| data.labels[i]).collect();
        let mut tried: Vec<(f64, f64, f64)> = Vec::new();
        let mut todo: Vec<f64> = grid.to_vec();
        let mut widened = 0;
        loop {
            for c in todo.drain(..) {
                let t = Instant::now();
                let model = f.fit(&self.config.svm(c, self.threads).unwrap(), fit, &fit_labels).unwrap();
                let acc = ClassificationMetrics::new(&val_labels, &f.predict(&model, &data.val), 10).accuracy;
                eprintln!("  C {c:.3e}: {:.2}% ({:.1} s)", 100.0 * acc, t.elapsed().as_secs_f64());
                tried.push((c, acc, t.elapsed().as_secs_f64()));
            }
            tried.sort_by(|a, b| a.0.total_cmp(&b.0));
            let best = tried.iter().enumerate().fold(0, |b, (i, t)| if t.1 > tried[b].1 { i } else { b });
            if !widen || widened == 2 || tried.len() < 2 {
                break;
            }
            let step = tried[1].0 / tried[0].0;
            if best == 0 {
                todo.push(tried[0].0 / step);
            } else if best == tried.len() - 1 {
                todo.push(tried[best].0 * step);
            } else {
                break;
            }
            widened += 1;
        }
        let best = tried.iter().fold(tried[0], |b, t| if t.1 > b.1 { *t } else { b });
        (best.0, best.1, tried)
    }

    /// A row an earlier run of the same OUT already measured: (best C, accuracy). A rerun resumes
    /// after the last finished row (each row of the full split costs 10-25 minutes on 2 cores).
    fn done(&self, label: &str) -> Option<(f64, f64)> {
        let text = std::fs::read_to_string(self.out.join("rows.jsonl")).ok()?;
        text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|r| {
            (r["d"] == self.d_name.as_str() && r["row"] == label)
                .then(|| (r["best_c"].as_f64(), r["validation_accuracy"].as_f64()))
                .and_then(|(c, a)| Some((c?, a?)))
        })
    }

    /// One row: a normalisation of `x` (and its mirror), the C grid, time and memory.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        label: &str,
        spec: serde_json::Value,
        load: impl FnOnce() -> (FeatureMatrix, Option<FeatureMatrix>),
        layout: &[usize],
        norm: Normalization,
        data: &Data,
        widen: bool,
    ) -> (f64, f64) {
        if let Some(done) = self.done(label) {
            eprintln!("{} {label}: measured before, {:.2}% at C {:.1e}", self.d_name, 100.0 * done.1, done.0);
            return done;
        }
        let (mut x, mut xf) = load();
        eprintln!("{} {label}", self.d_name);
        peak_rss_mib(true);
        let t = Instant::now();
        // Statistics of the fitting images only: the validation images stay unseen.
        if let Some(stats) = norm.fit(&x.select_rows(&data.fit), layout) {
            x.standardize(&stats);
            if let Some(m) = xf.as_mut() {
                m.standardize(&stats);
            }
        }
        let f = SplitFeatures { x: &x, flipped: xf.as_ref() };
        let mean_sq: f64 = {
            let mut buf = vec![0f32; x.n_cols()];
            data.fit.iter().map(|&i| x.row(i, &mut buf).iter().map(|v| (*v as f64).powi(2)).sum::<f64>()).sum::<f64>()
                / data.fit.len() as f64
        };
        // C times the squared row norm is what the solver sees: keep it at the standardised scale.
        let scale = x.n_cols() as f64 / mean_sq.max(1e-12);
        let grid: Vec<f64> = base_grid().iter().map(|c| c * scale).collect();
        let (c, acc, tried) = self.grid(&f, data, &data.fit, &grid, widen);
        self.emit(json!({
            "d": self.d_name, "row": label, "protocol": spec, "normalization": norm, "features": x.n_cols(),
            "fit_images": data.fit.len() * if xf.is_some() { 2 } else { 1 }, "validation_images": data.val.len(),
            "best_c": c, "validation_accuracy": acc, "grid": tried, "c_scale": scale,
            "seconds": t.elapsed().as_secs_f64(), "peak_rss_mib": peak_rss_mib(false),
        }));
        (c, acc)
    }
}

fn cached(out: &Path, name: &str) -> Option<FeatureMatrix> {
    FeatureMatrix::read_npy(&out.join(format!("{name}.npy"))).ok()
}

// A benchmark script: each row of its table in turn, in the order the table prints them.
#[allow(clippy::too_many_lines)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: protocol_variants INPUT OUT DISCRIMINATOR FIT_IMAGES VALIDATION_IMAGES BN_IMAGES [ROWS]");
        std::process::exit(2);
    }
    let (input, out) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let (fit_n, val_n, bn_n): (usize, usize, usize) =
        (args[3].parse().unwrap(), args[4].parse().unwrap(), args[5].parse().unwrap());
    let rows: Vec<String> = args.get(6).map_or_else(
        || ["points", "pooling", "normalization", "flips", "finer_c", "per_class"].map(String::from).to_vec(),
        |r| r.split(',').map(String::from).collect(),
    );
    let mut config = Config::load(Some(Path::new("configs/paper.toml")), &[]).expect("configs/paper.toml").cifar_eval;
    config.discriminator = args[2].clone();
    config.device = "cpu".into();
    let d_name = if config.discriminator == "random" { "random".to_owned() } else { "committed".to_owned() };
    let threads = rayon::current_num_threads();
    let out = out.join(&d_name);
    std::fs::create_dir_all(&out).unwrap();
    let run = Run { out: out.clone(), d_name, threads, config: config.clone() };

    // The subset, drawn once (seed 0): the held-out test images are never read.
    let t = Instant::now();
    let splits = load_splits(&config, &input, TestSplit::LeaveUntouched).unwrap();
    let all_labels: Vec<usize> = splits.train.labels.iter().map(|&l| l as usize).collect();
    let (rest, val) = validation_split(&all_labels, 10, val_n, config.seed);
    let fit = draw_per_class(&all_labels, &rest, 10, fit_n / 10, config.seed, 0);
    let chosen: Vec<usize> = fit.iter().chain(&val).copied().collect();
    let images = select_images(&splits.train, &chosen);
    drop(splits);
    let data = Data {
        labels: images.labels.iter().map(|&l| l as usize).collect(),
        fit: (0..fit.len()).collect(),
        val: (fit.len()..chosen.len()).collect(),
    };
    eprintln!(
        "subset: {} fitting + {} validation images ({:.0} s)",
        data.fit.len(),
        data.val.len(),
        t.elapsed().as_secs_f64()
    );

    let mut extractor = if config.discriminator == "random" {
        FeatureExtractor::random(config.preset, config.width(), config.seed as i64, tch::Device::Cpu)
    } else {
        FeatureExtractor::load(Path::new(&config.discriminator), config.preset, config.width(), tch::Device::Cpu)
            .unwrap()
    };
    // Population statistics over fitting images only.
    let fit_images = select_images(&images, &data.fit);
    let max_layout = extractor.discriminator().feature_layout(Pooling::Max);
    let mean_layout = extractor.discriminator().feature_layout(Pooling::MaxMean);
    let want = |r: &str| rows.iter().any(|x| x == r);
    // "points" measures all three feature points, "conv" only conv beside the default (at full size
    // batchnorm equals conv under max pooling and standardisation: see docs/cifar-eval.md).
    let points: Vec<FeaturePoint> = if want("points") {
        vec![FeaturePoint::Conv, FeaturePoint::BatchNorm, FeaturePoint::LeakyRelu]
    } else if want("conv") {
        vec![FeaturePoint::Conv, FeaturePoint::LeakyRelu]
    } else {
        vec![FeaturePoint::LeakyRelu]
    };
    let name = |p: FeaturePoint, pool: Pooling, flipped: bool| {
        format!("{p}-{pool}{}", if flipped { "-flipped" } else { "" }).replace('+', "")
    };
    let specs: Vec<FeatureSpec> = points
        .iter()
        .map(|&point| FeatureSpec { point, pooling: Pooling::Max, flipped: false })
        .chain(want("pooling").then_some(FeatureSpec {
            point: FeaturePoint::LeakyRelu,
            pooling: Pooling::MaxMean,
            flipped: false,
        }))
        .collect();
    let mut bn_done = false;
    let mut recompute = |extractor: &mut FeatureExtractor| {
        if !bn_done {
            let t = Instant::now();
            extractor.recompute_batch_norm(&fit_images, bn_n, config.batch, |_, _| {}).unwrap();
            eprintln!("BatchNorm statistics on {bn_n} images: {:.0} s", t.elapsed().as_secs_f64());
            bn_done = true;
        }
    };
    // Features stay on disk between rows and are loaded per row: at 45,000 images one matrix is
    // 2.6 GB, and holding every variant at once would not fit beside the fits.
    let missing: Vec<FeatureSpec> = specs
        .iter()
        .filter(|s| !out.join(format!("{}.npy", name(s.point, s.pooling, false))).exists())
        .copied()
        .collect();
    if !missing.is_empty() {
        recompute(&mut extractor);
        peak_rss_mib(true);
        let t = Instant::now();
        let matrices =
            extractor.extract_many(&images, &missing, config.batch, FeatureDtype::Float16, |_, _| {}).unwrap();
        let secs = t.elapsed().as_secs_f64();
        for (s, m) in missing.iter().zip(&matrices) {
            m.write_npy(&out.join(format!("{}.npy", name(s.point, s.pooling, false)))).unwrap();
        }
        run.emit(json!({"d": run.d_name, "row": "extract", "specs": missing.len(), "images": images.len(), "seconds": secs, "peak_rss_mib": peak_rss_mib(false)}));
    }
    let load =
        |p: FeaturePoint, pool: Pooling, flipped: bool| cached(&out, &name(p, pool, flipped)).expect("cached features");

    // Feature point, standardised.
    let mut best_point = (FeaturePoint::LeakyRelu, 0.0, 0.0);
    for &p in &points {
        let (c, acc) = run.row(
            &format!("point={p}"),
            json!({"feature_point": p, "pooling": "max"}),
            || (load(p, Pooling::Max, false), None),
            &max_layout,
            Normalization::Standardize,
            &data,
            true,
        );
        if acc > best_point.2 {
            best_point = (p, c, acc);
        }
    }
    if want("pooling") {
        run.row(
            "pooling=max+mean",
            json!({"feature_point": "leakyrelu", "pooling": "max+mean"}),
            || (load(FeaturePoint::LeakyRelu, Pooling::MaxMean, false), None),
            &mean_layout,
            Normalization::Standardize,
            &data,
            true,
        );
    }
    if want("normalization") {
        for p in [FeaturePoint::LeakyRelu, best_point.0] {
            for norm in [Normalization::None, Normalization::PerLayer] {
                run.row(
                    &format!("point={p} normalization={norm}"),
                    json!({"feature_point": p, "pooling": "max"}),
                    || (load(p, Pooling::Max, false), None),
                    &max_layout,
                    norm,
                    &data,
                    true,
                );
            }
            if best_point.0 == FeaturePoint::LeakyRelu {
                break;
            }
        }
    }
    if want("flips") {
        let p = best_point.0;
        let flipped_name = name(p, Pooling::Max, true);
        let label = format!("point={p} flips (not the paper's)");
        if run.done(&label).is_none() && cached(&out, &flipped_name).is_none() {
            recompute(&mut extractor);
            peak_rss_mib(true);
            let t = Instant::now();
            let spec = FeatureSpec { point: p, pooling: Pooling::Max, flipped: true };
            let m = extractor
                .extract_many(&images, &[spec], config.batch, FeatureDtype::Float16, |_, _| {})
                .unwrap()
                .remove(0);
            m.write_npy(&out.join(format!("{flipped_name}.npy"))).unwrap();
            run.emit(json!({"d": run.d_name, "row": "extract flipped", "images": images.len(), "seconds": t.elapsed().as_secs_f64(), "peak_rss_mib": peak_rss_mib(false)}));
        }
        run.row(
            &label,
            json!({"feature_point": p, "pooling": "max", "flips": true}),
            || (load(p, Pooling::Max, false), Some(load(p, Pooling::Max, true))),
            &max_layout,
            Normalization::Standardize,
            &data,
            true,
        );
    }
    // The finer C grid and the 400-per-class column, at the best point, standardised.
    let (p, c) = (best_point.0, best_point.1);
    let mut x = load(p, Pooling::Max, false);
    let stats = Normalization::Standardize.fit(&x.select_rows(&data.fit), &max_layout).unwrap();
    x.standardize(&stats);
    let f = SplitFeatures { x: &x, flipped: None };
    if want("finer_c") {
        eprintln!("{} finer C around {c:.1e}", run.d_name);
        peak_rss_mib(true);
        let t = Instant::now();
        let grid: Vec<f64> = [c].into_iter().chain(refined_c(&[c / 3.1623, c, c * 3.1623], c, 2)).collect();
        let (best_c, acc, tried) = run.grid(&f, &data, &data.fit, &grid, false);
        run.emit(json!({"d": run.d_name, "row": format!("point={p} finer C"), "best_c": best_c, "validation_accuracy": acc, "grid": tried, "seconds": t.elapsed().as_secs_f64(), "peak_rss_mib": peak_rss_mib(false)}));
    }
    if want("per_class") {
        // As the protocol: C chosen on the validation split with the first draw, then 10 draws.
        eprintln!("{} 400 per class", run.d_name);
        let t = Instant::now();
        let first = draw_per_class(&data.labels, &data.fit, 10, 400, config.seed, 0);
        let (c400, _, _) = run.grid(&f, &data, &first, &base_grid(), true);
        let val_labels: Vec<usize> = data.val.iter().map(|&i| data.labels[i]).collect();
        let accs: Vec<f64> = (0..config.draws as u64)
            .map(|draw| {
                let picked = draw_per_class(&data.labels, &data.fit, 10, 400, config.seed, draw);
                let labels: Vec<usize> = picked.iter().map(|&i| data.labels[i]).collect();
                let model = f.fit(&config.svm(c400, threads).unwrap(), &picked, &labels).unwrap();
                ClassificationMetrics::new(&val_labels, &f.predict(&model, &data.val), 10).accuracy
            })
            .collect();
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (accs.len() as f64 - 1.0).max(1.0)).sqrt();
        run.emit(json!({"d": run.d_name, "row": format!("point={p} 400 per class"), "c": c400, "accuracies": accs, "mean": mean, "std": std, "seconds": t.elapsed().as_secs_f64()}));
    }
}
