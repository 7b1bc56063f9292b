#!/usr/bin/env python3
"""Scores a faces run's kept boxes on the dev set's tune half, check half and all photos (the split of
docs/faces.md's rule: photos sorted by file name, even positions tune, odd check), the same matching
as `faces --eval-boxes` (IoU >= 0.5, invalid or < --min-side faces are ignore regions).

    python3 benches/faces_eval_halves.py ../shared/data/faces-wider-dev/gt.json RUN/manifest.jsonl

With --presence-grid it re-decides the boxes the second look saw for each candidate of the
face-presence rescue's rule (docs/faces.md): second_look_threshold in {0.6, 0.65} and
presence_rescue in {off, 0.3, 0.5, 0.7, 0.9}, from the manifest's `second_look` and `presence` fields
(a run at second_look_threshold 0.65 and presence_rescue 0.3 records every score those need).

With --side-grid it does the same for round d's rule (docs/faces.md, "What counts as a face's
side"): score_threshold in {0.5, 0.55, 0.6} times second_look_threshold in {0.6, 0.65, 0.7} times
presence_rescue in {off, 0.5, 0.7, 0.9}, from a run at score_threshold 0.5, second_look_threshold 1
and presence_rescue 0 (every box big enough is looked at below 0.9 and has its presence recorded),
and prints the rule's pick, chosen on the tune half alone. Give one manifest per side_measure with
--side-grid MEASURE=MANIFEST ... (and no positional manifest).
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


def kept_by(rows, keep):
    """Each photo's boxes that `keep` takes, as [x, y, w, h, score] for score()."""
    return {row["source"]: [[b["x"], b["y"], b["w"], b["h"], b.get("score", math.inf)]
                            for b in row.get("boxes", []) if keep(b)] for row in rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gt")
    ap.add_argument("manifest", nargs="?", help="the run's manifest.jsonl (not with --side-grid)")
    ap.add_argument("--min-side", type=float, default=64)
    ap.add_argument("--presence-grid", action="store_true")
    ap.add_argument("--min-score", type=float, default=0.0,
                    help="score only the kept boxes scoring at least this (a run at a lower threshold)")
    ap.add_argument("--side-grid", nargs="+", metavar="MEASURE=MANIFEST")
    args = ap.parse_args()
    truth = json.load(open(args.gt))["images"]
    files = sorted(i["file"] for i in truth)
    halves = (("tune", set(files[0::2])), ("check", set(files[1::2])), ("all", set(files)))
    if args.side_grid:
        side_grid(truth, halves, args)
        return
    if args.manifest is None:
        ap.error("the run's manifest is needed (or --side-grid MEASURE=MANIFEST ...)")
    rows = [json.loads(line) for line in open(args.manifest)]
    if not args.presence_grid:
        kept = kept_by(rows, lambda b: b.get("kept") and b.get("score", math.inf) >= args.min_score - 5e-5)
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
            kept = kept_by(rows, keep)
            cells = []
            for _, part in halves:
                r, w, n, p, rec = score(truth, kept, part, args.min_side)
                cells.append(f"{r} / {w}, {p:.3f} / {rec:.3f}")
            print(f"| {m} | {'off' if t is None else t} | " + " | ".join(cells) + " |")


def side_grid(truth, halves, args):
    # Nearer today's default wins a tie, in this order of importance (the rule's words).
    today = ("sqrt_area", 0.5, 0.65, 0.7)
    results = []
    for spec in args.side_grid:
        measure, path = spec.split("=", 1)
        rows = [json.loads(line) for line in open(path)]
        for row in rows:
            for b in row.get("boxes", []):
                if "second_look" in b and "presence" not in b:
                    raise SystemExit(f"{path}: a looked-at box without a presence score: not a grid run")
        for s in (0.5, 0.55, 0.6):
            for m in (0.6, 0.65, 0.7):
                for t in (None, 0.5, 0.7, 0.9):
                    def keep(b, s=s, m=m, t=t):
                        # In the grid run every box big enough is kept (the rescue at 0 takes all).
                        if not b.get("kept") or b["score"] < s - 5e-5:
                            return False
                        if "second_look" not in b:
                            return True
                        if (b["score"] + sum(b["second_look"])) / 3 >= m - 5e-5:
                            return True
                        return t is not None and b["presence"] >= t
                    kept = kept_by(rows, keep)
                    cells = [score(truth, kept, part, args.min_side) for _, part in halves]
                    results.append(((measure, s, m, t), cells))
    print("| side_measure | score_threshold | second_look_threshold | presence_rescue | tune | check | all |")
    print("|---|---:|---:|---:|---|---|---|")
    for (measure, s, m, t), cells in results:
        text = " | ".join(f"{r} / {w}, {p:.3f} / {rec:.3f}" for r, w, _, p, rec in cells)
        print(f"| {measure} | {s} | {m} | {'off' if t is None else t} | {text} |")

    def nearness(key):
        return tuple(int(a != b) for a, b in zip(key, today))

    eligible = [(key, cells) for key, cells in results if cells[0][3] >= 0.985]
    if not eligible:
        print("no candidate reaches tune precision 0.985")
        return
    key, cells = max(eligible, key=lambda kc: (kc[1][0][4], kc[1][0][3], tuple(-x for x in nearness(kc[0]))))
    print(f"the rule's pick (tune half only): {key}")


if __name__ == "__main__":
    main()
