"""Our L2-SVM against scikit-learn's LinearSVC (LIBLINEAR, squared hinge) on the same features.

Both sides fit one-vs-rest, squared hinge, L2 penalty, the same C and stopping tolerance, an
intercept (LinearSVC's intercept_scaling=1 is LIBLINEAR's -B 1, what we fit too), on TRAIN rows
spread over the saved training features (standardised with their own statistics) and score TEST
rows spread over the saved test features. LinearSVC copies X to float64 and then to LIBLINEAR's
sparse nodes (24 bytes a value in all), so TRAIN is bounded by memory: 10,000 x 28,672 is ~7 GB.

    .bench-venv/bin/python benches/svm_vs_sklearn.py FEATURES_DIR [--train 10000] [--test 5000] [--c 0.0001] [--tol 0.1]

FEATURES_DIR: a cifar-eval output run with cifar_eval.save_features=true. Also prints our fit on
all rows, training and test together (time and peak memory), unless --no-full.
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def ours(features, train, test, c, tol):
    cmd = ["cargo", "bench", "-q", "--bench", "svm_fit", "--", features, str(train), str(test), str(c), str(tol)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def sklearn_fit(features, train, test, c, tol):
    from sklearn.svm import LinearSVC

    xa = np.load(f"{features}/features-train.npy", mmap_mode="r")
    xta = np.load(f"{features}/features-test.npy", mmap_mode="r")
    # Rows spread over each file (grouped by class), as benches/svm_fit.rs picks them.
    rows = np.arange(train) * len(xa) // train
    trows = np.arange(test) * len(xta) // test
    x = xa[rows].astype(np.float32)
    y = np.load(f"{features}/labels-train.npy")[rows]
    xt = xta[trows].astype(np.float32)
    yt = np.load(f"{features}/labels-test.npy")[trows]
    mean, std = x.mean(0), x.std(0)
    std[std <= 1e-6 * (1 + np.abs(mean))] = np.inf  # constant columns -> 0, as ours
    x = (x - mean) / std
    xt = (xt - mean) / std
    model = LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual=True, tol=tol, max_iter=1000, intercept_scaling=1.0)
    start = time.perf_counter()
    model.fit(x, y)
    fit_s = time.perf_counter() - start
    accuracy = float((model.predict(xt) == yt).mean())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"solver": "sklearn LinearSVC", "accuracy": accuracy, "fit_s": fit_s, "iterations": int(np.max(model.n_iter_)), "peak_rss_mib": peak}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features")
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--c", type=float, default=0.0001)
    p.add_argument("--tol", type=float, default=0.1)
    p.add_argument("--no-full", action="store_true")
    a = p.parse_args()
    import sklearn

    print(f"features {a.features}: first {a.train} training rows, first {a.test} test rows, C={a.c}, tol={a.tol}", flush=True)
    mine = ours(a.features, a.train, a.test, a.c, a.tol)
    print(f"  dcgan-pipeline L2-SVM ({mine['dtype']} features, {mine['threads']} threads): accuracy {100 * mine['accuracy']:.2f}%, "
          f"fit {mine['fit_s']:.1f} s, {mine['passes']} passes, peak {mine['peak_rss_mib']:.0f} MiB", flush=True)
    theirs = sklearn_fit(a.features, a.train, a.test, a.c, a.tol)
    print(f"  sklearn {sklearn.__version__} LinearSVC: accuracy {100 * theirs['accuracy']:.2f}%, fit {theirs['fit_s']:.1f} s, "
          f"{theirs['iterations']} iterations, peak {theirs['peak_rss_mib']:.0f} MiB", flush=True)
    print(f"  speed-up {theirs['fit_s'] / mine['fit_s']:.2f}x, accuracy difference {100 * (mine['accuracy'] - theirs['accuracy']):+.2f} points", flush=True)
    if not a.no_full:
        full = ours(a.features, "all", 0, a.c, a.tol)
        print(f"  full fit: {full['train_rows']} x {full['features']} {full['dtype']}: fit {full['fit_s']:.1f} s "
              f"({full['passes']} passes), "
              f"peak {full['peak_rss_mib']:.0f} MiB for the whole process", flush=True)


if __name__ == "__main__":
    sys.exit(main())
