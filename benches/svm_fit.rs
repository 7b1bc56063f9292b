//! Fits the L2-SVM on saved cifar-eval features and prints one JSON line: accuracy, fit time,
//! passes, peak memory. Driven by benches/svm_vs_sklearn.py (the same rows for both sides).
//!
//!   cargo bench --bench svm_fit -- FEATURES_DIR TRAIN_ROWS TEST_ROWS C TOL
//!
//! FEATURES_DIR holds features-{train,test}.npy and labels-{train,test}.npy (cifar-eval with
//! cifar_eval.save_features=true). TRAIN_ROWS / TEST_ROWS: the first N rows (0 = all).

use std::path::Path;
use std::time::Instant;

use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::eval::{ClassificationMetrics, FeatureMatrix, FeatureRows, L2Svm, Subset};
use linfa::ParamGuard;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn labels(path: &Path) -> Vec<usize> {
    read_array::<i64>(path).unwrap_or_else(|e| panic!("{e}")).1.into_iter().map(|l| l as usize).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.len() != 5 {
        eprintln!("usage: svm_fit FEATURES_DIR TRAIN_ROWS TEST_ROWS C TOL");
        std::process::exit(2);
    }
    let dir = Path::new(&args[0]);
    let (n_train, n_test): (usize, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let (c, tol): (f64, f64) = (args[3].parse().unwrap(), args[4].parse().unwrap());
    let t = Instant::now();
    let mut train = FeatureMatrix::read_npy(&dir.join("features-train.npy")).unwrap_or_else(|e| panic!("{e}"));
    let mut test = FeatureMatrix::read_npy(&dir.join("features-test.npy")).unwrap_or_else(|e| panic!("{e}"));
    let (y_train, y_test) = (labels(&dir.join("labels-train.npy")), labels(&dir.join("labels-test.npy")));
    let n_train = if n_train == 0 { train.n_rows() } else { n_train.min(train.n_rows()) };
    let n_test = if n_test == 0 { test.n_rows() } else { n_test.min(test.n_rows()) };
    let train_idx: Vec<usize> = (0..n_train).collect();
    let test_idx: Vec<usize> = (0..n_test).collect();
    if n_train < train.n_rows() {
        train = train.select_rows(&train_idx);
    }
    if n_test < test.n_rows() {
        test = test.select_rows(&test_idx);
    }
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let stats = train.column_stats();
    train.standardize(&stats);
    test.standardize(&stats);
    let standardize_s = t.elapsed().as_secs_f64();
    let model = L2Svm::params().c(c).tol(tol).n_classes(10).check().unwrap().fit_rows(&train, &y_train[..n_train]).unwrap();
    let predicted = model.predict_rows(&Subset { rows: &test, indices: &(0..n_test).collect::<Vec<_>>() });
    let accuracy = ClassificationMetrics::new(&y_test[..n_test], &predicted, 10).accuracy;
    println!(
        "{}",
        serde_json::json!({
            "solver": "dcgan-pipeline", "train_rows": n_train, "test_rows": n_test, "features": train.n_cols(),
            "dtype": format!("{:?}", train.dtype()), "c": c, "tol": tol, "accuracy": accuracy,
            "fit_s": model.report.seconds, "passes": model.report.passes.iter().max(), "converged": model.report.converged.iter().all(|c| *c),
            "load_s": load_s, "standardize_s": standardize_s, "threads": rayon::current_num_threads(), "peak_rss_mib": peak_rss_mib(),
        })
    );
}
