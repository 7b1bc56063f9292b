#!/usr/bin/env python3
# Usage: python3 benches/faces_recall_by_kind.py GT.json RUN/manifest.jsonl   (standard library only)
# Recall of valid WIDER faces (side sqrt(w*h) >= 64) by the .mat's attributes, for a faces run's kept
# boxes: one-to-one matching at IoU >= 0.5, best score first (the rule of faces --eval-boxes).
import json, math, sys, collections
gt = json.load(open(sys.argv[1]))['images']
rows = {json.loads(l)['source']: json.loads(l) for l in open(sys.argv[2])}
def iou(a, b):
    ax, ay, aw, ah = a; bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx)); iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy; u = aw * ah + bw * bh - inter
    return inter / u if u > 0 else 0
tot = collections.Counter(); hit = collections.Counter()
names = {'occlusion': ['none', 'partial', 'heavy'], 'pose': ['typical', 'atypical'], 'blur': ['clear', 'normal', 'heavy']}
for im in gt:
    dets = [b for b in rows.get(im['file'], {}).get('boxes', []) if b.get('kept')]
    dets.sort(key=lambda b: -b.get('score', 0))
    valid = [i for i, b in enumerate(im['boxes']) if not im['invalid'][i] and math.sqrt(b[2] * b[3]) >= 64]
    taken = set()
    for d in dets:
        db = (d['x'], d['y'], d['w'], d['h'])
        best = max(((iou(db, im['boxes'][i]), i) for i in valid if i not in taken), default=(0, None))
        if best[0] >= 0.5:
            taken.add(best[1])
    for i in valid:
        for a in names:
            k = (a, names[a][im[a][i]]); tot[k] += 1; hit[k] += i in taken
        tot[('all', '')] += 1; hit[('all', '')] += i in taken
print('| attribute | kind | faces >= 64 px | found | recall |\n|---|---|---:|---:|---:|')
for k in sorted(tot):
    print(f'| {k[0]} | {k[1]} | {tot[k]} | {hit[k]} | {hit[k] / tot[k]:.3f} |')
