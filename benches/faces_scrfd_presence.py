#!/usr/bin/env python3
"""The face-presence model (models/mediapipe_face_presence.onnx) as SCRFD's second look, scored offline
on the dev set's halves (docs/faces.md, SCRFD, round c): for every box a faces run with SCRFD at score
>= 0.3 kept, the presence of its square (1.5 x its longer side, turned by the eye line, 192 x 192, RGB
in [0, 1]; the stage's src/faces/presence.rs geometry, here with cv2), then each candidate of the rule
(score_threshold T, boxes below H kept only at presence >= t) on the tune half, check half and all.

    faces --config configs/scrfd.toml --set faces.model=SCRFD.onnx --set faces.score_threshold=0.3 \
        -i ../shared/data/faces-wider-dev/images -o out/scrfd-030
    python3 benches/faces_scrfd_presence.py        # (cv2 and numpy; paths below)
"""
import json, math, sys, os
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
import numpy as np, cv2
sys.path.insert(0, os.path.join(ROOT, 'benches'))
import faces_second_look as fsl
cv2.setNumThreads(1)
dev = os.path.join(ROOT, '..', 'shared', 'data', 'faces-wider-dev')
net = cv2.dnn.readNetFromONNX(os.path.join(ROOT, 'models/mediapipe_face_presence.onnx'))
def presence(img, b, lm):
    x, y, w, h = b
    cx, cy = x + w / 2, y + h / 2
    side = 1.5 * max(w, h)
    ang = math.degrees(math.atan2(lm[1][1] - lm[0][1], lm[1][0] - lm[0][0])) if lm else 0.0
    s = 192.0 / side
    m = cv2.getRotationMatrix2D((cx, cy), ang, s)
    m[0, 2] += 96 - cx; m[1, 2] += 96 - cy
    if s < 1:  # shrink first, as the stage does (INTER_AREA), then turn
        small = cv2.resize(img, None, fx=s * 1.0, fy=s * 1.0, interpolation=cv2.INTER_AREA)
        m2 = cv2.getRotationMatrix2D((cx * small.shape[1] / img.shape[1], cy * small.shape[0] / img.shape[0]), ang, 1.0)
        m2[0, 2] += 96 - cx * small.shape[1] / img.shape[1]; m2[1, 2] += 96 - cy * small.shape[0] / img.shape[0]
        crop = cv2.warpAffine(small, m2, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    else:
        crop = cv2.warpAffine(img, m, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    net.setInput(rgb.transpose(2, 0, 1)[None].copy())
    v = float(net.forward().ravel()[0])
    return 1 / (1 + math.exp(-v))
photos = {}
for line in open(os.path.join(ROOT, 'out/scrfd-030/manifest.jsonl')):
    r = json.loads(line)
    img = None
    boxes = []
    for b in r.get('boxes', []):
        if not b.get('kept'):
            continue
        if img is None:
            img = cv2.imread(os.path.join(dev, 'images', r['source']), cv2.IMREAD_COLOR)
        bb = [b['x'], b['y'], b['w'], b['h']]
        boxes.append({'box': bb, 'score': b['score'], 'presence': presence(img, bb, b.get('landmarks'))})
    photos[r['source']] = {'boxes': boxes}
gt = json.load(open(os.path.join(dev, 'gt.json')))
files = sorted(i['file'] for i in gt['images'])
for f in files:
    photos.setdefault(f, {'boxes': []})
halves = {'tune': set(files[0::2]), 'check': set(files[1::2]), 'all': set(files)}
rows = []
for T in (0.3, 0.35, 0.4, 0.45, 0.5):
    for H in (0.5, 0.6, 0.7):
        for t in (None, 0.1, 0.3, 0.5):
            if t is None and H != 0.5:
                continue
            keep = lambda b, T=T, H=H, t=t: b['score'] >= T and (t is None or b['score'] >= H or b['presence'] >= t)
            r = {h: fsl.score(gt, photos, keep, fs) for h, fs in halves.items()}
            rows.append((T, H, t, r))
# the rule: tune precision >= 0.97, highest tune recall; ties: higher precision, higher T, higher t, lower H
ok = [x for x in rows if x[3]['tune']['precision'] >= 0.97]
best = max(ok, key=lambda x: (x[3]['tune']['right'], x[3]['tune']['precision'], x[0], -1 if x[2] is None else x[2], -x[1]))
for T, H, t, r in rows:
    mark = ' <= chosen' if (T, H, t) == best[:3] else ''
    print(f"| {T} | {H if t is not None else '-'} | {'off' if t is None else t} | " + " | ".join(f"{r[h]['right']} / {r[h]['wrong']}, {r[h]['precision']:.3f} / {r[h]['recall']:.3f}" for h in ('tune', 'check', 'all')) + f" |{mark}")
