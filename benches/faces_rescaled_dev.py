#!/usr/bin/env python3
"""The dev set's photos rescaled (issue 36, item 3: faces found at the scale YuNet sees best whatever
the photo's size): writes OUT/images (each photo resized by --factor, INTER_CUBIC up, INTER_AREA
down, JPEG quality 95) and OUT/gt.json with the boxes scaled alike. Not committed (WIDER FACE).

    .bench-venv-yunet/bin/python benches/faces_rescaled_dev.py --dev ../shared/data/faces-wider-dev \\
        --factor 3 --out out/wider-dev-x3
"""
import argparse
import json
import os

import cv2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", required=True)
    ap.add_argument("--factor", type=float, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gt = json.load(open(os.path.join(args.dev, "gt.json")))
    f = args.factor
    for image in gt["images"]:
        img = cv2.imread(os.path.join(args.dev, "images", image["file"]), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        size = (max(1, round(w * f)), max(1, round(h * f)))
        out = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
        path = os.path.join(args.out, "images", image["file"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, out, [cv2.IMWRITE_JPEG_QUALITY, 95])
        sx, sy = size[0] / w, size[1] / h
        image["boxes"] = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in image["boxes"]]
    with open(os.path.join(args.out, "gt.json"), "w") as fh:
        json.dump(gt, fh)


if __name__ == "__main__":
    main()
