//! Fits the L2-SVM on saved cifar-eval features and prints one JSON line: accuracy, fit time,
//! passes, peak memory. Driven by benches/svm_vs_sklearn.py (the same rows for both sides).
//!
//!   cargo bench --bench svm_fit -- FEATURES_DIR TRAIN_ROWS TEST_ROWS C TOL
//!
//! FEATURES_DIR holds features-{train,test}.npy and labels-{train,test}.npy (cifar-eval with
//! cifar_eval.save_features=true). TRAIN_ROWS / TEST_ROWS: N rows spread evenly over each file
//! (row j * total / N; the files are grouped by class), 0 = all.
//! TRAIN_ROWS = "all": the training and the test rows together (the full 50,000 of a held-out
//! run), for timing the largest fit; the accuracy printed is then on rows it was fitted on.

use std::path::Path;
use std::time::Instant;

use dcgan_pipeline::data::npy::read_array;
use dcgan_pipeline::eval::{ClassificationMetrics, FeatureMatrix, FeatureRows, L2Svm};
use linfa::traits::{Fit, Predict};
use linfa::{DatasetBase, ParamGuard};
use ndarray::{Array1, ArrayView1};

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
    let everything = args[1] == "all";
    let (n_train, n_test): (usize, usize) =
        (if everything { 0 } else { args[1].parse().unwrap() }, args[2].parse().unwrap());
    let (c, tol): (f64, f64) = (args[3].parse().unwrap(), args[4].parse().unwrap());
    let t = Instant::now();
    let mut train = FeatureMatrix::read_npy(&dir.join("features-train.npy")).unwrap_or_else(|e| panic!("{e}"));
    let mut test = FeatureMatrix::read_npy(&dir.join("features-test.npy")).unwrap_or_else(|e| panic!("{e}"));
    let (mut y_train, y_test) = (labels(&dir.join("labels-train.npy")), labels(&dir.join("labels-test.npy")));
    if everything {
        train.append(&test);
        y_train.extend_from_slice(&y_test);
    }
    let n_train = if n_train == 0 { train.n_rows() } else { n_train.min(train.n_rows()) };
    let n_test = if n_test == 0 { test.n_rows() } else { n_test.min(test.n_rows()) };
    // Spread over the whole file (rows are grouped by class), the same rows as the Python side.
    let spread = |n: usize, total: usize| (0..n).map(|j| j * total / n).collect::<Vec<usize>>();
    let train_idx = spread(n_train, train.n_rows());
    let test_idx = spread(n_test, test.n_rows());
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
    let y_train: Vec<usize> =
        if n_train < y_train.len() { train_idx.iter().map(|&i| y_train[i]).collect() } else { y_train };
    let y_test: Vec<usize> = test_idx.iter().map(|&i| y_test[i]).collect();
    // Through linfa's traits, as cifar-eval fits and predicts.
    let fit_set = DatasetBase::new(&train, ArrayView1::from(&y_train));
    let test_set = DatasetBase::new(&test, ArrayView1::from(&y_test));
    let model = L2Svm::params().c(c).tol(tol).n_classes(10).check().unwrap().fit(&fit_set).unwrap();
    let predicted: Array1<usize> = model.predict(&test_set);
    let accuracy = ClassificationMetrics::new(&y_test, &predicted.to_vec(), 10).accuracy;
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
