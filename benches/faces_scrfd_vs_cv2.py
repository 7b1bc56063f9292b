#!/usr/bin/env python3
"""SCRFD (user-supplied ONNX) in the faces stage against the same model in Python's cv2.

The model is not part of the project (its licence: docs/faces.md); pass --model where you have it
(`pip download --no-deps --no-binary :all: scrfd==0.3.0` holds models/scrfd.onnx). Without it the
bench says so and exits 0.

Peer: a Python process (opencv-python-headless 4.10, numpy) doing what the stage does: cv2.imread;
the photo scaled so that its longer side is 640 (INTER_AREA when shrinking, INTER_LINEAR when
growing, the other side rounded half up) into the top-left corner of a zero 640 x 640 image;
blobFromImage((x - 127.5) / 128, RGB); forward; per stride 8, 16, 32, two anchors a cell at the
cell's corner x stride; box = centre -/+ distances x stride; keypoints = centre + offsets x stride;
greedy NMS at IoU 0.4 on the float boxes; mapped back to the photo. OpenCV's own threads.
Ours: `faces` with faces.detector = "scrfd" on the same folder (whole process).

Prints photos/s and user CPU seconds of each, the ratio, and how many boxes agree within 1 px.
`--second-python` runs the same peer with another interpreter too (for example a venv with
`opencv-python-headless==4.6.0.66`, the OpenCV release the stage is bound to), so that both cv2
versions are compared in one run.

    .bench-venv-yunet/bin/python benches/faces_scrfd_vs_cv2.py --input ../shared/data/faces-wider-dev/images \\
        --model ../shared/data/models/scrfd_2.5g_bnkps_pypi_scrfd_0.3.0.onnx --faces target/release/faces \\
        --second-python /tmp/cv46/bin/python
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SIDE = 640


def scaled_size(width, height):
    longest = max(width, height)
    return (max(1, (2 * width * SIDE + longest) // (2 * longest)),
            max(1, (2 * height * SIDE + longest) // (2 * longest)))


def list_photos(folder):
    return sorted(os.path.join(r, f) for r, _, names in os.walk(folder) for f in names
                  if f.lower().endswith((".jpg", ".jpeg", ".png")))


def greedy_nms(boxes, scores, iou_threshold):
    import numpy as np
    order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(boxes), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        x1 = np.maximum(boxes[i, 0], boxes[:, 0])
        y1 = np.maximum(boxes[i, 1], boxes[:, 1])
        x2 = np.minimum(boxes[i, 2], boxes[:, 2])
        y2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / np.maximum(area[i] + area - inter, 1e-12)
        suppressed |= iou > iou_threshold
    return keep


def detect(cv2, np, net, img, threshold, nms):
    height, width = img.shape[:2]
    nw, nh = scaled_size(width, height)
    interp = cv2.INTER_AREA if nw < width else cv2.INTER_LINEAR
    small = img if (nw, nh) == (width, height) else cv2.resize(img, (nw, nh), interpolation=interp)
    canvas = np.zeros((SIDE, SIDE, 3), np.uint8)
    canvas[:nh, :nw] = small
    blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (SIDE, SIDE), (127.5, 127.5, 127.5), swapRB=True)
    net.setInput(blob)
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    outs = dict(zip(names, net.forward(names)))
    boxes, scores, points = [], [], []
    for s in (8, 16, 32):
        cells = SIDE // s
        score = outs[f"score_{s}"].reshape(-1)
        bbox = outs[f"bbox_{s}"].reshape(-1, 4) * s
        kps = outs[f"kps_{s}"].reshape(-1, 10) * s
        idx = np.nonzero(score >= threshold)[0]
        cell = idx // 2
        cx = (cell % cells).astype(np.float32) * s
        cy = (cell // cells).astype(np.float32) * s
        b = bbox[idx]
        boxes.append(np.stack([cx - b[:, 0], cy - b[:, 1], cx + b[:, 2], cy + b[:, 3]], 1))
        scores.append(score[idx])
        k = kps[idx]
        points.append(np.concatenate([np.stack([cx + k[:, 2 * j], cy + k[:, 2 * j + 1]], 1) for j in range(5)], 1))
    boxes = np.concatenate(boxes)
    scores = np.concatenate(scores)
    points = np.concatenate(points)
    keep = greedy_nms(boxes, scores, nms) if len(boxes) else []
    sx, sy = width / nw, height / nh
    return [[float(boxes[i, 0] * sx), float(boxes[i, 1] * sy), float((boxes[i, 2] - boxes[i, 0]) * sx),
             float((boxes[i, 3] - boxes[i, 1]) * sy), float(scores[i])] for i in keep]


def worker(folder, model, threshold, nms, out_json):
    import cv2
    import numpy as np
    net = cv2.dnn.readNetFromONNX(model)
    found = {}
    for path in list_photos(folder):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            continue
        found[os.path.relpath(path, folder)] = detect(cv2, np, net, img, threshold, nms)
    with open(out_json, "w") as f:
        json.dump({"found": found, "cv2": cv2.__version__, "threads": cv2.getNumThreads()}, f)


def children_user_s():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def run_cv2(python, folder, model, threshold, nms):
    out = tempfile.mktemp(suffix=".json")
    start, cpu = time.perf_counter(), children_user_s()
    subprocess.run([python, __file__, "--worker", "--input", folder, "--model", model,
                    "--threshold", str(threshold), "--nms", str(nms), "--out", out], check=True)
    elapsed, cpu = time.perf_counter() - start, children_user_s() - cpu
    with open(out) as f:
        result = json.load(f)
    os.remove(out)
    return elapsed, cpu, result


def run_ours(binary, folder, model, threshold, nms):
    out = tempfile.mkdtemp(prefix="faces-scrfd-bench-")
    cmd = [binary, "--input", folder, "--output", out, "--set", "faces.detector=scrfd",
           "--set", f"faces.model={model}", "--set", "faces.model_sha256=",
           "--set", f"faces.score_threshold={threshold}", "--set", f"faces.nms_threshold={nms}",
           "--set", "faces.second_look=false", "--set", "faces.min_face_side=0"]
    start, cpu = time.perf_counter(), children_user_s()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, children_user_s() - cpu
    if proc.returncode not in (0, 3):
        sys.exit(f"faces failed ({proc.returncode}): {proc.stderr.strip()}")
    found = {}
    with open(os.path.join(out, "manifest.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            found[row["source"]] = [[b["x"], b["y"], b["w"], b["h"], b.get("score", 0)]
                                    for b in row.get("boxes", [])]
    subprocess.run(["rm", "-rf", out], check=True)
    return elapsed, cpu, found


def agreement(ours, theirs):
    """Boxes of cv2 that have a box of ours with every side within 1 px (ours are whole pixels)."""
    same = total = 0
    for photo, boxes in theirs.items():
        mine = ours.get(photo, [])
        for b in boxes:
            total += 1
            if any(all(abs(m[k] - round(b[k])) <= 1 for k in range(4)) for m in mine):
                same += 1
    return same, total, sum(len(v) for v in ours.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--faces", default="target/release/faces")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--nms", type=float, default=0.4)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--second-python", help="another Python with cv2 (another version) for a second peer")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.worker:
        worker(args.input, args.model, args.threshold, args.nms, args.out)
        return
    if not os.path.exists(args.model):
        print(f"{args.model}: not present; SCRFD is user-supplied (docs/faces.md), nothing to compare")
        return
    photos = len(list_photos(args.input))
    pythons = [sys.executable] + ([args.second_python] if args.second_python else [])
    best = {}  # route -> (wall s, user CPU s) of its fastest run
    results = {}
    for _ in range(args.runs):
        for python in pythons:
            t, cpu, results[python] = run_cv2(python, args.input, args.model, args.threshold, args.nms)
            best[python] = min(best.get(python, (t, cpu)), (t, cpu))
        t, cpu, ours = run_ours(args.faces, args.input, args.model, args.threshold, args.nms)
        best["faces"] = min(best.get("faces", (t, cpu)), (t, cpu))
    t_ours, cpu_ours = best["faces"]
    print(f"{photos} photos, SCRFD score >= {args.threshold}, NMS {args.nms}")
    for python in pythons:
        result, (t, cpu) = results[python], best[python]
        same, total, n_ours = agreement(ours, result["found"])
        print(f"cv2 {result['cv2']:8s} ({result['threads']} threads) {photos / t:7.2f} photos/s ({t:.1f} s, "
              f"{cpu:.1f} s user); faces {t / t_ours:.2f}x it; boxes: cv2 {total}, faces {n_ours}, "
              f"the same within 1 px: {same}")
    print(f"faces {photos / t_ours:7.2f} photos/s ({t_ours:.1f} s, {cpu_ours:.1f} s user)")


if __name__ == "__main__":
    main()
