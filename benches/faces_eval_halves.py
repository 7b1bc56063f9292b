#!/usr/bin/env python3
"""Scores a faces run's kept boxes on the dev set's tune half, check half and all photos (the split of
docs/faces.md's rule: photos sorted by file name, even positions tune, odd check), the same matching
as `faces --eval-boxes` (IoU >= 0.5, invalid or < --min-side faces are ignore regions).

    python3 benches/faces_eval_halves.py ../shared/data/faces-wider-dev/gt.json RUN/manifest.jsonl

With --presence-grid it re-decides the boxes the second look saw for each candidate of the
face-presence rescue's rule (docs/faces.md): second_look_threshold in {0.6, 0.65} and
presence_rescue in {off, 0.3, 0.5, 0.7, 0.9}, from the manifest's `second_look` and `presence` fields
(a run at second_look_threshold 0.65 and presence_rescue 0.3 records every score those need).
"""
import argparse
import json
import math


def iou(a, b):
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def score(truth, kept, files, min_side):
    right = wrong = faces_n = 0
    for image in truth:
        if image["file"] not in files:
            continue
        inv = image.get("invalid", [])
        faces, ignore = [], []
        for k, b in enumerate(image["boxes"]):
            bad = k < len(inv) and inv[k] != 0
            (ignore if bad or math.sqrt(max(b[2] * b[3], 0)) < min_side else faces).append(b)
        faces_n += len(faces)
        matched = [False] * len(faces)
        for b in sorted(kept.get(image["file"], []), key=lambda b: -b[4]):
            cand = [(iou(b, g), i) for i, g in enumerate(faces) if not matched[i]]
            best = max(cand, default=(0.0, -1))
            if best[0] >= 0.5:
                matched[best[1]] = True
                right += 1
            elif not any(iou(b, g) >= 0.5 for g in ignore):
                wrong += 1
    p = right / (right + wrong) if right + wrong else 1.0
    return right, wrong, faces_n, p, right / faces_n if faces_n else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gt")
    ap.add_argument("manifest")
    ap.add_argument("--min-side", type=float, default=64)
    ap.add_argument("--presence-grid", action="store_true")
    args = ap.parse_args()
    truth = json.load(open(args.gt))["images"]
    rows = [json.loads(line) for line in open(args.manifest)]
    files = sorted(i["file"] for i in truth)
    halves = (("tune", set(files[0::2])), ("check", set(files[1::2])), ("all", set(files)))

    def kept_by(keep):
        return {row["source"]: [[b["x"], b["y"], b["w"], b["h"], b.get("score", math.inf)]
                                for b in row.get("boxes", []) if keep(b)] for row in rows}

    if not args.presence_grid:
        kept = kept_by(lambda b: b.get("kept"))
        for name, part in halves:
            r, w, n, p, rec = score(truth, kept, part, args.min_side)
            print(f"{name:6s} right {r:4d} wrong {w:3d} faces {n:4d} precision {p:.3f} recall {rec:.3f}")
        return
    print("| second_look_threshold | presence_rescue | tune: right / wrong, P / R | check | all |")
    print("|---:|---:|---|---|---|")
    for m in (0.6, 0.65):
        for t in (None, 0.3, 0.5, 0.7, 0.9):
            def keep(b, m=m, t=t):
                if "second_look" not in b:
                    return bool(b.get("kept"))
                mean = (b["score"] + sum(b["second_look"])) / 3
                if mean >= m - 5e-5:
                    return True
                if "presence" not in b and b.get("kept"):
                    raise SystemExit("a kept box below the threshold without a presence score: not a grid run")
                return t is not None and b.get("presence", 0.0) >= t
            kept = kept_by(keep)
            cells = []
            for _, part in halves:
                r, w, n, p, rec = score(truth, kept, part, args.min_side)
                cells.append(f"{r} / {w}, {p:.3f} / {rec:.3f}")
            print(f"| {m} | {'off' if t is None else t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
