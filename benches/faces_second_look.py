#!/usr/bin/env python3
"""Second-look ideas for YuNet's kept boxes, measured on a labelled dev set (issue 36).

Runs cv2's FaceDetectorYN (the same model and decoding as the faces stage, which agrees with it
within 0.5 px) on each photo as the stage does (longer side 640, INTER_AREA), then for every box of
side >= 64 px computes what each second look would see:

- landmark geometry in the box's frame (eye distance / box width, where the eyes, nose and mouth
  sit, nose between the eyes, eye-line roll);
- YuNet again on the box's neighbourhood (context x the box side), scaled so that the box side is
  `face` px, on the crop and on its mirror: the best score of a face there overlapping the box
  (IoU >= 0.5), 0 when none; and the time it took.

Features are cached (--features); then each rule is scored on the tune half (even positions of the
sorted file names), the check half (odd) and all, as docs/faces.md's rule says. Scoring is the
stage's `--eval-boxes`: IoU >= 0.5, ignore regions for invalid or < 64 px faces.

    .bench-venv-yunet/bin/python benches/faces_second_look.py --dev ../shared/data/faces-wider-dev
"""
import argparse
import json
import math
import os
import time

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "face_detection_yunet_2023mar.onnx")
MIN_SIDE = 64


def shrunk_size(width, height, max_side):
    longest = max(width, height)
    if max_side == 0 or longest <= max_side:
        return width, height
    return (max(1, (2 * width * max_side + longest) // (2 * longest)),
            max(1, (2 * height * max_side + longest) // (2 * longest)))


def iou(a, b):
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def geometry(box, lm):
    """Landmarks in the box's frame: x as a fraction of w, y of h."""
    x, y, w, h = box
    pts = [((px - x) / w, (py - y) / h) for px, py in lm]
    (rex, rey), (lex, ley), (nx, ny), (rmx, rmy), (lmx, lmy) = pts
    eye_dx, eye_dy = lm[1][0] - lm[0][0], lm[1][1] - lm[0][1]
    eye_dist = math.hypot(eye_dx, eye_dy)
    eye_mid = ((lm[0][0] + lm[1][0]) / 2, (lm[0][1] + lm[1][1]) / 2)
    mouth_mid = ((lm[3][0] + lm[4][0]) / 2, (lm[3][1] + lm[4][1]) / 2)
    eye_mouth = math.hypot(mouth_mid[0] - eye_mid[0], mouth_mid[1] - eye_mid[1])
    nose_t = ((lm[2][0] - lm[0][0]) * eye_dx + (lm[2][1] - lm[0][1]) * eye_dy) / max(eye_dist ** 2, 1e-6)
    return {
        "eye_w": eye_dist / w,
        "eyemouth_h": eye_mouth / h,
        "mouth_eye": math.hypot(lm[4][0] - lm[3][0], lm[4][1] - lm[3][1]) / max(eye_dist, 1e-6),
        "em_ed": eye_mouth / max(eye_dist, 1e-6),
        "nose_t": nose_t,
        "roll": math.degrees(math.atan2(eye_dy, eye_dx)),
        "eyes_y": (rey + ley) / 2,
        "mouth_y": (rmy + lmy) / 2,
        "nose_y": ny,
        "nose_between_y": ((ny > (rey + ley) / 2) and (ny < (rmy + lmy) / 2)),
    }


def relook(cv2, np, det, img, box, face, context):
    """Best score of a face overlapping `box` on its neighbourhood scaled so the box side is `face`."""
    x, y, w, h = box
    side = math.sqrt(w * h)
    scale = face / side
    cx, cy = x + w / 2, y + h / 2
    out = int(round(context * face))
    # Affine map photo -> crop: scale about the box centre to the crop centre.
    m = np.array([[scale, 0, out / 2 - cx * scale], [0, scale, out / 2 - cy * scale]], dtype=np.float64)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if scale < 1:
        # INTER_AREA through resize of the region, then place; simpler: warpAffine with linear on a
        # pre-shrunk photo.
        small = cv2.resize(img, (max(1, int(round(img.shape[1] * scale))), max(1, int(round(img.shape[0] * scale)))),
                           interpolation=cv2.INTER_AREA)
        sx = small.shape[1] / img.shape[1]
        m = np.array([[1, 0, out / 2 - cx * sx], [0, 1, out / 2 - cy * sx]], dtype=np.float64)
        crop = cv2.warpAffine(small, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    else:
        crop = cv2.warpAffine(img, m, (out, out), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    target = [out / 2 - w * scale / 2, out / 2 - h * scale / 2, w * scale, h * scale]
    scores = []
    for im in (crop, crop[:, ::-1].copy()):
        det.setInputSize((out, out))
        _, faces = det.detect(im)
        best = 0.0
        for f in ([] if faces is None else faces):
            b = [float(f[0]), float(f[1]), float(f[2]), float(f[3])]
            if im is not crop:
                b[0] = out - b[0] - b[2]
            if iou(b, target) >= 0.5:
                best = max(best, float(f[14]))
        scores.append(best)
    return scores


def collect(dev, variants, threshold):
    import cv2
    import numpy as np
    cv2.setNumThreads(1)
    gt = json.load(open(os.path.join(dev, "gt.json")))
    det = cv2.FaceDetectorYN.create(MODEL, "", (320, 320), threshold, 0.3, 5000)
    det2 = cv2.FaceDetectorYN.create(MODEL, "", (320, 320), 0.3, 0.3, 5000)
    photos = {}
    t_detect = 0.0
    t_look = {v: 0.0 for v in variants}
    for image in gt["images"]:
        path = os.path.join(dev, "images", image["file"])
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        height, width = img.shape[:2]
        t0 = time.process_time()
        nw, nh = shrunk_size(width, height, 640)
        small = img if (nw, nh) == (width, height) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        det.setInputSize((nw, nh))
        _, faces = det.detect(small)
        t_detect += time.process_time() - t0
        sx, sy = width / nw, height / nh
        boxes = []
        for f in ([] if faces is None else faces):
            b = [float(f[0]) * sx, float(f[1]) * sy, float(f[2]) * sx, float(f[3]) * sy]
            bi = [round(v) for v in b]
            if math.floor(math.sqrt(max(bi[2], 0) * max(bi[3], 0))) < MIN_SIDE:
                continue
            lm = [(float(f[4 + 2 * k]) * sx, float(f[5 + 2 * k]) * sy) for k in range(5)]
            entry = {"box": bi, "score": float(f[14]), "geo": geometry(b, lm), "look": {}}
            for v in variants:
                face, context = v
                t0 = time.process_time()
                entry["look"][f"{face}x{context}"] = relook(cv2, np, det2, img, b, face, context)
                t_look[v] += time.process_time() - t0
            boxes.append(entry)
        photos[image["file"]] = {"boxes": boxes, "size": [width, height]}
    return {"photos": photos, "t_detect": t_detect, "t_look": {f"{a}x{b}": t for (a, b), t in t_look.items()}}


def truth_of(image):
    faces, ignore = [], []
    inv = image.get("invalid", [])
    for k, b in enumerate(image["boxes"]):
        bad = k < len(inv) and inv[k] != 0
        if bad or math.sqrt(max(b[2] * b[3], 0)) < MIN_SIDE:
            ignore.append(b)
        else:
            faces.append(b)
    return faces, ignore


def score(gt, photos, keep, files):
    right = wrong = ignored = nfaces = 0
    wrong_list = []
    for image in gt["images"]:
        if image["file"] not in files:
            continue
        faces, ignore = truth_of(image)
        nfaces += len(faces)
        boxes = sorted((b for b in photos[image["file"]]["boxes"] if keep(b)), key=lambda b: -b["score"])
        matched = [False] * len(faces)
        for b in boxes:
            best, bi = 0.0, -1
            for i, g in enumerate(faces):
                if not matched[i]:
                    o = iou(b["box"], g)
                    if o > best:
                        best, bi = o, i
            if best >= 0.5:
                matched[bi] = True
                right += 1
            elif any(iou(b["box"], g) >= 0.5 for g in ignore):
                ignored += 1
            else:
                wrong += 1
                wrong_list.append((image["file"], b))
    p = right / (right + wrong) if right + wrong else 1.0
    return {"right": right, "wrong": wrong, "ignored": ignored, "faces": nfaces, "precision": p,
            "recall": right / nfaces if nfaces else 0.0, "wrong_list": wrong_list}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", required=True)
    ap.add_argument("--features", default="out/second-look-features.json")
    args = ap.parse_args()
    variants = [(112, 2.0), (80, 2.0), (64, 2.0), (64, 1.5), (48, 2.0)]
    if os.path.exists(args.features):
        data = json.load(open(args.features))
    else:
        data = collect(args.dev, variants, 0.5)
        os.makedirs(os.path.dirname(args.features) or ".", exist_ok=True)
        json.dump(data, open(args.features, "w"))
    gt = json.load(open(os.path.join(args.dev, "gt.json")))
    files = sorted(i["file"] for i in gt["images"])
    halves = {"tune": set(files[0::2]), "check": set(files[1::2]), "all": set(files)}
    print("detect cpu s", round(data["t_detect"], 2), {k: round(v, 2) for k, v in data["t_look"].items()})
    import itertools
    rows = []

    def run(name, keep):
        r = {h: score(gt, data["photos"], keep, fs) for h, fs in halves.items()}
        rows.append((name, r))

    for t in (0.5, 0.55, 0.6):
        run(f"score>={t}", lambda b, t=t: b["score"] >= t)
    for t, v, r, both in itertools.product((0.5, 0.55, 0.6), [f"{a}x{b}" for a, b in variants],
                                           (0.3, 0.5, 0.6, 0.7), (False, True)):
        def keep(b, t=t, v=v, r=r, both=both):
            s = b["look"][v]
            return b["score"] >= t and (min(s) if both else s[0]) >= r
        run(f"score>={t} look {v} {'both' if both else 'plain'}>={r}", keep)
    for name, r in rows:
        print(f"{name:45s}", "  ".join(f"{h} {x['precision']:.3f}/{x['recall']:.3f} ({x['right']},{x['wrong']})"
                                       for h, x in r.items()))


if __name__ == "__main__":
    main()
