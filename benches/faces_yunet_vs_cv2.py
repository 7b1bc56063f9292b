#!/usr/bin/env python3
"""The faces stage (YuNet through cv::dnn) against Python's cv2 FaceDetectorYN, whole processes.

Peer: a Python process that imports cv2 (opencv-python-headless 4.10 from PyPI), creates
FaceDetectorYN with the same model file, score and NMS thresholds, and for each photo: cv2.imread,
cv2.resize with INTER_AREA to the same detection size (longer side at most --max-side, the stage's
rounding), setInputSize, detect, boxes mapped back to the photo. OpenCV's own threads as they come
(each detection spread over the cores). Ours: `faces` on the same folder (photos spread over the
cores, decode, detect, crop, write), with the stage's defaults besides --max-side and --threshold.

Both timed as whole processes (start-up, model load, reading), best of --runs, taken in turns.
Prints photos/s, the ratio, and box agreement (IoU >= 0.9).

    .bench-venv-yunet/bin/python benches/faces_yunet_vs_cv2.py --input ../shared/data/faces-wider-dev/images
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "face_detection_yunet_2023mar.onnx")


def shrunk_size(width, height, max_side):
    longest = max(width, height)
    if max_side == 0 or longest <= max_side:
        return width, height
    return (max(1, (2 * width * max_side + longest) // (2 * longest)),
            max(1, (2 * height * max_side + longest) // (2 * longest)))


def list_photos(folder):
    return sorted(os.path.join(r, f) for r, _, names in os.walk(folder) for f in names
                  if f.lower().endswith((".jpg", ".jpeg", ".png")))


def worker(folder, max_side, threshold, out_json):
    """The peer's whole job; runs in its own process."""
    import cv2
    detector = cv2.FaceDetectorYN.create(MODEL, "", (320, 320), threshold, 0.3, 5000)
    found = {}
    for path in list_photos(folder):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            continue
        height, width = img.shape[:2]
        new_w, new_h = shrunk_size(width, height, max_side)
        small = img if (new_w, new_h) == (width, height) else cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
        detector.setInputSize((new_w, new_h))
        _, faces = detector.detect(small)
        sx, sy = width / new_w, height / new_h
        found[os.path.relpath(path, folder)] = [
            [float(f[0]) * sx, float(f[1]) * sy, float(f[2]) * sx, float(f[3]) * sy] for f in ([] if faces is None else faces)]
    with open(out_json, "w") as f:
        json.dump({"found": found, "cv2": cv2.__version__, "threads": cv2.getNumThreads()}, f)


def run_cv2(folder, max_side, threshold):
    out = tempfile.mktemp(suffix=".json")
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--worker", "--input", folder, "--max-side", str(max_side),
                    "--threshold", str(threshold), "--out", out], check=True)
    elapsed = time.perf_counter() - start
    with open(out) as f:
        result = json.load(f)
    os.remove(out)
    return elapsed, result


def run_ours(binary, folder, max_side, threshold):
    out = tempfile.mkdtemp(prefix="faces-yunet-bench-")
    cmd = [binary, "--input", folder, "--output", out, "--set", "faces.detector=yunet",
           "--set", f"faces.detect_max_side={max_side}", "--set", f"faces.score_threshold={threshold}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise SystemExit(f"faces failed: {proc.stderr}")
    found = {}
    for line in open(os.path.join(out, "manifest.jsonl")):
        row = json.loads(line)
        found[row["source"]] = [[b["x"], b["y"], b["w"], b["h"]] for b in row.get("boxes", [])]
    shutil.rmtree(out)
    return elapsed, found


def iou(a, b):
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def agreement(theirs, ours):
    same = n_theirs = n_ours = 0
    for name, boxes in theirs.items():
        mine = ours.get(name, [])
        n_theirs += len(boxes)
        n_ours += len(mine)
        used = set()
        for box in boxes:
            j = next((j for j, o in enumerate(mine) if j not in used and iou(box, o) >= 0.9), None)
            if j is not None:
                used.add(j)
                same += 1
    return same, n_theirs, n_ours


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/faces-wider-dev/images")
    ap.add_argument("--faces", default="target/release/faces")
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = os.path.abspath(args.input)
    if args.worker:
        return worker(folder, args.max_side, args.threshold, args.out)
    photos = list_photos(folder)
    for p in photos:  # both start from a warm page cache
        open(p, "rb").read()
    t_cv2 = t_ours = float("inf")
    for _ in range(args.runs):
        elapsed, result = run_cv2(folder, args.max_side, args.threshold)
        if elapsed < t_cv2:
            t_cv2, cv2_result = elapsed, result
        elapsed, found = run_ours(args.faces, folder, args.max_side, args.threshold)
        if elapsed < t_ours:
            t_ours, our_found = elapsed, found
    same, n_theirs, n_ours = agreement(cv2_result["found"], our_found)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, load {load:.2f} at the end; "
          f"cv2 {cv2_result['cv2']} ({cv2_result['threads']} threads)")
    print(f"folder: {args.input} ({len(photos)} photos); max side {args.max_side}, score >= {args.threshold}; "
          f"best of {args.runs} runs each, whole processes")
    print()
    print("| route | photos/s | faces is x faster |")
    print("|---|---:|---:|")
    print(f"| cv2 FaceDetectorYN (imread, resize, detect; its own threads) | {len(photos) / t_cv2:.2f} | {t_cv2 / t_ours:.2f} |")
    print(f"| faces, YuNet through cv::dnn (whole stage, photos over the cores) | {len(photos) / t_ours:.2f} | 1.00 |")
    print()
    print(f"boxes: cv2 {n_theirs}, faces {n_ours}, the same at IoU >= 0.9: {same}")


if __name__ == "__main__":
    main()
