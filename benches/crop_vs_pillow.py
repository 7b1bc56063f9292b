#!/usr/bin/env python3
"""The crop stage against the usual Python route, on the same folder, in the same run.

Peers (single process, as a data-preparation script usually runs):
  pillow        Image.open -> convert("RGB") -> resize shorter side to SIZE with BICUBIC -> center crop
  pillow-draft  the same after im.draft("RGB", (SIZE, SIZE)), which lets libjpeg decode at 1/2..1/8 scale

Prints images/s of each, the ratios, and the PSNR of our crops against plain Pillow's
(the reference: full decode, antialiased bicubic).

    python benches/crop_vs_pillow.py --input ../shared/data/imagenet-samples --crop target/release/crop
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image, ImageOps


def pillow_crop(path, size, draft, upright=False):
    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (size, size))
        if upright:
            # Not part of the timed peer (the usual script ignores EXIF orientation); used only
            # to compare the photos that we turn upright against an upright reference.
            im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)))


def time_pillow(files, size, draft):
    start = time.perf_counter()
    crops = [pillow_crop(f, size, draft) for f in files]
    return time.perf_counter() - start, crops


def time_ours(binary, folder, size, extra, runs):
    """Best whole-process time of `runs`, and the in-process rate that run's summary.json gives."""
    best, out_dir, rate = None, None, None
    for _ in range(runs):
        out_dir = tempfile.mkdtemp(prefix="crop-bench-")
        cmd = [binary, "--input", folder, "--output", out_dir, "--set", f"crop.size={size}", *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode not in (0, 3):
            raise SystemExit(f"crop failed ({proc.returncode}): {proc.stderr}")
        if best is None or elapsed < best:
            best = elapsed
            summary = json.load(open(os.path.join(out_dir, "summary.json")))
            rate = summary["timings"]["last_run_records_per_s"]
        if _ < runs - 1:
            shutil.rmtree(out_dir)
    return best, out_dir, rate


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder of photos (read recursively)")
    ap.add_argument("--crop", default="target/release/crop", help="the crop binary")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3, help="runs of our binary; the best is kept")
    args = ap.parse_args()

    files = sorted(
        os.path.join(root, f)
        for root, _, names in os.walk(args.input)
        for f in names
        if f.lower().endswith((".jpg", ".jpeg", ".png"))
    )
    n = len(files)
    # Warm the page cache so that every contender reads from memory.
    for f in files:
        with open(f, "rb") as fh:
            fh.read()

    t_plain, plain = time_pillow(files, args.size, draft=False)
    t_draft, drafted = time_pillow(files, args.size, draft=True)
    t_ours, out_dir, rate = time_ours(args.crop, args.input, args.size, [], args.runs)
    t_ours1, out1, rate1 = time_ours(args.crop, args.input, args.size, ["--set", "run.threads=1"], args.runs)
    shutil.rmtree(out1)

    ours = np.load(os.path.join(out_dir, "images-00000.npy"))
    rows = [json.loads(l) for l in open(os.path.join(out_dir, "manifest.jsonl"))]
    by_source = {r["source"]: r for r in rows if r["status"] == "ok"}
    ref = {os.path.relpath(f, args.input): c for f, c in zip(files, plain)}
    plain_ref = dict(ref)
    for source, row in by_source.items():
        if row.get("orientation", 1) != 1:
            ref[source] = pillow_crop(os.path.join(args.input, source), args.size, False, upright=True)
    draft_ref = {os.path.relpath(f, args.input): c for f, c in zip(files, drafted)}
    ps = [psnr(ours[r["index"]], ref[s]) for s, r in by_source.items() if s in ref]
    ps_draft = [psnr(draft_ref[s], plain_ref[s]) for s in by_source if s in plain_ref]
    shutil.rmtree(out_dir)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}")
    print(f"folder: {args.input} ({n} images), crops {args.size}x{args.size}; ours best of {args.runs} runs, whole process")
    print()
    print("| contender | images/s | ours (2 threads) is x faster |")
    print("|---|---:|---:|")
    for name, t in [
        ("Pillow, BICUBIC (1 process)", t_plain),
        ("Pillow + draft() (1 process)", t_draft),
        ("crop, run.threads=1", t_ours1),
        ("crop, all cores", t_ours),
    ]:
        print(f"| {name} | {n / t:.0f} | {t / t_ours:.2f} |")
    print(f"| crop, all cores, in-process rate (summary.json, no start-up) | {rate:.0f} | |")
    print(f"| crop, run.threads=1, in-process rate | {rate1:.0f} | |")
    print()
    print(f"PSNR of crop's output vs plain Pillow: mean {np.mean(ps):.1f} dB, median {np.median(ps):.1f}, min {np.min(ps):.1f} ({len(ps)} images)")
    print(f"PSNR of Pillow+draft vs plain Pillow:  mean {np.mean(ps_draft):.1f} dB, median {np.median(ps_draft):.1f}, min {np.min(ps_draft):.1f}")
    print(f"goals: >= 6x Pillow: {t_plain / t_ours:.2f}x; >= 3x Pillow+draft: {t_draft / t_ours:.2f}x; mean PSNR >= 36 dB: {np.mean(ps):.1f}")


if __name__ == "__main__":
    main()
