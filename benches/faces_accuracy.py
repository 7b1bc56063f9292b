#!/usr/bin/env python3
"""Face detection accuracy of the faces stage on PASCAL VOC photos with ground-truth face boxes.

Ground truth: ../shared/data/faces/dlib-voc/{training,testing}.xml (dlib's imglab format). A detection
matches a ground-truth box at IoU >= 0.5 (greedy, best IoU first). Settings are chosen on the training
images only; the testing images report them. Every detection counts (min_face_side = 0: this measures the
detector, not the resolution filter).

    python benches/faces_accuracy.py --voc ../shared/data/faces/dlib-voc --faces target/release/faces
"""
import argparse
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET


def read_truth(path):
    truth = {}
    for image in ET.parse(path).getroot().iter("image"):
        truth[image.get("file")] = [
            (int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height"))) for b in image.iter("box")
        ]
    return truth


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def match(truth, found, threshold):
    """Greedy one-to-one matching; returns true positives."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t, used_f, tp = set(), set(), 0
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            tp += 1
    return tp


def detect(binary, folder, settings):
    out = tempfile.mkdtemp(prefix="faces-acc-")
    cmd = [binary, "--input", folder, "--output", out, "--set", "faces.detector=haar", "--set", "faces.min_face_side=0"]
    for k, v in settings.items():
        cmd += ["--set", f"faces.{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"faces failed: {proc.stderr}")
    found = {}
    for line in open(os.path.join(out, "manifest.jsonl")):
        row = json.loads(line)
        found[row["source"]] = [(b["x"], b["y"], b["w"], b["h"]) for b in row.get("boxes", [])]
    shutil.rmtree(out)
    return found


def score(truth, found):
    tp = sum(match(t, found.get(f, []), 0.5) for f, t in truth.items())
    n_truth = sum(len(t) for t in truth.values())
    n_found = sum(len(found.get(f, [])) for f in truth)
    recall = tp / n_truth if n_truth else 0.0
    precision = tp / n_found if n_found else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return recall, precision, f1, tp, n_truth, n_found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voc", default="../shared/data/faces/dlib-voc")
    ap.add_argument("--faces", default="target/release/faces")
    args = ap.parse_args()
    train = read_truth(os.path.join(args.voc, "training.xml"))
    test = read_truth(os.path.join(args.voc, "testing.xml"))
    folder = tempfile.mkdtemp(prefix="voc-")
    for name in list(train) + list(test):
        os.symlink(os.path.abspath(os.path.join(args.voc, name)), os.path.join(folder, name))

    default = {"cascade": "frontalface_default", "min_neighbors": 5, "scale_factor": 1.1, "equalize": "true"}
    grid = [
        {"cascade": c, "min_neighbors": n, "scale_factor": s, "equalize": e}
        for c, n, s, e in itertools.product(
            ["frontalface_default", "alt", "alt2"], [3, 5], [1.05, 1.1], ["true", "false"]
        )
    ]
    results = []
    for settings in grid:
        found = detect(args.faces, folder, settings)
        results.append((settings, score(train, found), score(test, found)))
    shutil.rmtree(folder)

    print(f"{len(train)} training images ({sum(map(len, train.values()))} faces), "
          f"{len(test)} testing images ({sum(map(len, test.values()))} faces); IoU >= 0.5; min_size 30")
    print()
    print("| cascade | min_neighbors | scale_factor | equalize | train recall | train precision | test recall | test precision |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for s, tr, te in results:
        print(f"| {s['cascade']} | {s['min_neighbors']} | {s['scale_factor']} | {s['equalize']} | "
              f"{tr[0]:.2f} | {tr[1]:.2f} | {te[0]:.2f} | {te[1]:.2f} |")
    best = max(results, key=lambda r: (round(r[1][2], 4), r[1][1]))
    dflt = next(r for r in results if r[0] == default)
    print()
    for name, (s, tr, te) in [("default", dflt), ("recommended (best F1 on training.xml)", best)]:
        print(f"{name}: {s}")
        print(f"   train: recall {tr[0]:.2f} ({tr[3]}/{tr[4]}), precision {tr[1]:.2f} ({tr[3]}/{tr[5]})")
        print(f"   test:  recall {te[0]:.2f} ({te[3]}/{te[4]}), precision {te[1]:.2f} ({te[3]}/{te[5]})")


if __name__ == "__main__":
    main()
