"""NumPy brute force for the copy test's nearest neighbours (benches/copy_test.rs wrote OUT).

Reads the packed set's images (the first N - HELD_OUT are the training images, as the Rust bench
used them) and OUT/samples.npy, finds every sample's nearest training image by
||a||^2 + ||b||^2 - 2ab in float32 blocks (NumPy's matmul, its BLAS on every core), times it (wall and
CPU), and compares with OUT/nearest.npy: same index, or (where not) the same exact distance (a tie).

python benches/copy_test_reference.py PACKED_DIR OUT HELD_OUT
"""

import glob
import json
import os
import resource
import sys
import time

import numpy as np


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def exact_ssd(a, b):
    d = a.astype(np.int64) - b.astype(np.int64)
    return (d * d).reshape(len(a), -1).sum(axis=1)


def main():
    packed, out, held_out = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shards = sorted(glob.glob(os.path.join(packed, "images*.npy")))
    images = np.concatenate([np.load(s) for s in shards])
    training = images[: len(images) - held_out].reshape(len(images) - held_out, -1)
    samples = np.load(os.path.join(out, "samples.npy")).reshape(-1, training.shape[1])
    ours = np.load(os.path.join(out, "nearest.npy"))

    wall, cpu = time.time(), cpu_seconds()
    q = samples.astype(np.float32)
    best = np.full(len(q), np.inf, dtype=np.float32)
    arg = np.zeros(len(q), dtype=np.int64)
    q_norm = (q * q).sum(axis=1)
    for start in range(0, len(training), 4096):
        block = training[start : start + 4096].astype(np.float32)
        d = q_norm[:, None] + (block * block).sum(axis=1)[None, :] - 2.0 * (q @ block.T)
        i = d.argmin(axis=1)
        v = d[np.arange(len(q)), i]
        better = v < best
        best[better], arg[better] = v[better], i[better] + start
    ref_wall, ref_cpu = time.time() - wall, cpu_seconds() - cpu

    same = arg == ours
    differ = np.flatnonzero(~same)
    ties = 0
    if len(differ):
        ties = int((exact_ssd(samples[differ], training[arg[differ]]) == exact_ssd(samples[differ], training[ours[differ]])).sum())
    ours_better = 0
    if len(differ):
        ours_better = int((exact_ssd(samples[differ], training[ours[differ]]) < exact_ssd(samples[differ], training[arg[differ]])).sum())
    rust = json.load(open(os.path.join(out, "rust.json")))
    result = {
        "numpy": np.__version__,
        "numpy_wall_s": ref_wall,
        "numpy_cpu_s": ref_cpu,
        "numpy_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "same_index": int(same.sum()),
        "different_index_same_distance": ties,
        "different_index_ours_nearer": ours_better,
        "samples": len(q),
        "rust_nearest_wall_s": rust["nearest_wall_s"],
        "rust_nearest_cpu_s": rust["nearest_cpu_s"],
        "wall_ratio_numpy_over_rust": ref_wall / rust["nearest_wall_s"],
        "cpu_ratio_numpy_over_rust": ref_cpu / rust["nearest_cpu_s"],
    }
    json.dump(result, open(os.path.join(out, "numpy.json"), "w"), indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
