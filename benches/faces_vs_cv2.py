#!/usr/bin/env python3
"""The faces stage against the usual Python route, cv2 with the same cascade and parameters.

Peer: for each photo, cv2.imread, cvtColor to grey, (equalizeHist if the config says so),
CascadeClassifier.detectMultiScale2 with the same scale factor, min neighbours and sizes; OpenCV's own
threads as they come (cv2 parallelises each detection over its cores). Use a venv with
opencv-python-headless==4.6.0.66 and numpy<2 (`make bench-faces` makes .bench-venv): the same OpenCV
release as Debian 12's, and the last cv2 with CascadeClassifier (cv2 5.0 dropped it).

Prints images/s of both on the same folder in one run, the ratio, and box agreement (IoU >= 0.9).

    .bench-venv/bin/python benches/faces_vs_cv2.py --input ../shared/data/faces --faces target/release/faces
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time

import cv2

SETTINGS = {"cascade": "frontalface_default", "scale_factor": 1.1, "min_neighbors": 5, "min_size": 30, "equalize": False}
CASCADE_DIR = "/usr/share/opencv4/haarcascades"


def cv2_detect(files, s):
    cascade = cv2.CascadeClassifier(os.path.join(CASCADE_DIR, f"haarcascade_{s['cascade']}.xml"))
    found = {}
    start = time.perf_counter()
    for f in files:
        img = cv2.imread(f, cv2.IMREAD_COLOR)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if s["equalize"]:
            gray = cv2.equalizeHist(gray)
        boxes, _ = cascade.detectMultiScale2(gray, s["scale_factor"], s["min_neighbors"], 0, (s["min_size"], s["min_size"]))
        found[f] = [tuple(int(v) for v in b) for b in boxes]
    return time.perf_counter() - start, found


def ours(binary, folder, s, runs):
    best, found = None, None
    for _ in range(runs):
        out = tempfile.mkdtemp(prefix="faces-bench-")
        cmd = [binary, "--input", folder, "--output", out, "--set", "faces.detector=haar",
               "--set", f"faces.cascade={s['cascade']}", "--set", f"faces.scale_factor={s['scale_factor']}",
               "--set", f"faces.min_neighbors={s['min_neighbors']}", "--set", f"faces.min_size={s['min_size']}",
               "--set", f"faces.equalize={str(s['equalize']).lower()}"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode not in (0, 3):
            raise SystemExit(f"faces failed: {proc.stderr}")
        if best is None or elapsed < best:
            best = elapsed
            found = {}
            for line in open(os.path.join(out, "manifest.jsonl")):
                row = json.loads(line)
                found[os.path.join(folder, row["source"])] = [(b["x"], b["y"], b["w"], b["h"]) for b in row.get("boxes", [])]
        shutil.rmtree(out)
    return best, found


def iou(a, b):
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/faces")
    ap.add_argument("--faces", default="target/release/faces")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    folder = os.path.abspath(args.input)
    files = sorted(os.path.join(r, f) for r, _, names in os.walk(folder) for f in names
                   if f.lower().endswith((".jpg", ".jpeg", ".png")))
    for f in files:
        open(f, "rb").read()
    t_cv2, cv2_found = min((cv2_detect(files, SETTINGS) for _ in range(args.runs)), key=lambda r: r[0])
    t_ours, our_found = ours(args.faces, folder, SETTINGS, args.runs)

    agree = n_cv2 = n_ours = 0
    disagreements = []
    for f in files:
        a, b = cv2_found.get(f, []), our_found.get(f, [])
        n_cv2 += len(a)
        n_ours += len(b)
        used = set()
        for box in a:
            j = next((j for j, o in enumerate(b) if j not in used and iou(box, o) >= 0.9), None)
            if j is not None:
                used.add(j)
                agree += 1
        if len(used) != len(a) or len(used) != len(b):
            disagreements.append((os.path.relpath(f, folder), len(a), len(b), len(used)))

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}; cv2 {cv2.__version__} ({cv2.getNumThreads()} threads)")
    print(f"folder: {args.input} ({len(files)} photos); settings {SETTINGS}; best of {args.runs} runs each")
    print()
    print("| route | images/s | faces is x faster |")
    print("|---|---:|---:|")
    print(f"| cv2 (imread, cvtColor, detectMultiScale2) | {len(files) / t_cv2:.2f} | {t_cv2 / t_ours:.2f} |")
    print(f"| faces (whole process, all cores) | {len(files) / t_ours:.2f} | 1.00 |")
    print()
    print(f"boxes: cv2 {n_cv2}, faces {n_ours}, the same at IoU >= 0.9: {agree} "
          f"({agree / max(n_cv2, 1):.1%} of cv2's, {agree / max(n_ours, 1):.1%} of ours)")
    for name, a, b, m in disagreements:
        print(f"   differs: {name}: cv2 {a} boxes, faces {b}, matched {m}")


if __name__ == "__main__":
    main()
