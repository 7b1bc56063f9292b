#!/usr/bin/env python3
"""How the dedupe stage's cost per photo grows with the set, on real photos.

Builds sets of growing size from real photos with planted copies and runs the stage at its defaults
on each (target/release/dedupe), then prints per step the CPU time per image (user + system, all
threads, from summary.json's `usage`, measured in the process), the wall time and the peak resident
memory, and the CPU time per image relative to the smallest set. CPU time is the figure to read on a
shared machine: wall time there says as much about the neighbours as about the stage.

PLANTED_TAR is the set `dedupe --eval-scale --write-set` writes (Tiny ImageNet's 100,000 photos plus
the planted copies, named `<photo>#copy<c>-<kind>.jpg`); the smaller sets take the first 25%, 50% of
its photos with their copies, the third all of it; the largest adds EXTRA archives or folders to all
of it (CIFAR-10's training JPEGs, the ImageNet samples). The model is trained once, on the largest set (its cost is fixed by
`dedupe.ae_steps`, not per photo), and reused by the others through --model.

usage: [MODEL=model.safetensors] benches/dedupe_growth.py PLANTED_TAR OUT_DIR [EXTRA ...]
"""

import io
import json
import os
import subprocess
import sys
import tarfile

# (share of the planted set, with the EXTRA archives)
SIZES = ((0.25, False), (0.5, False), (1.0, False), (1.0, True))
STEPS = ("crop_pass_and_start", "codes", "index", "check", "cluster", "outputs")


def photo_of(name):
    return name.split("#copy")[0]


def members(path):
    """(name, bytes) of every file of a tar archive or a folder."""
    if os.path.isdir(path):
        for root, _, files in sorted(os.walk(path)):
            for f in sorted(files):
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    yield os.path.relpath(p, path), fh.read()
        return
    with tarfile.open(path) as tar:
        for m in tar:
            if m.isfile():
                yield m.name, tar.extractfile(m).read()


def write_tar(path, items):
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def build_sets(planted, out, extra):
    items = list(members(planted))
    photos = sorted({photo_of(n) for n, _ in items})
    sets = []
    for share, with_extra in SIZES:
        if with_extra and not extra:
            continue
        keep = set(photos[: int(len(photos) * share)])
        chosen = [(n, d) for n, d in items if photo_of(n) in keep]
        if with_extra:
            for e in extra:
                tag = os.path.basename(e.rstrip("/")).split(".")[0]
                chosen += [(f"{tag}/{n}", d) for n, d in members(e)]
        path = os.path.join(out, f"growth-{len(chosen)}.tar")
        if not os.path.exists(path):
            write_tar(path, chosen)
        sets.append((len(chosen), path))
    return sets


def run(binary, tar, out, model):
    cmd = ["/usr/bin/time", "-v", binary, "--input", tar, "--output", out, "--set", "dedupe.device=cpu"]
    if model:
        cmd += ["--model", model]
    done = subprocess.run(cmd, capture_output=True, text=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "..", os.path.basename(out) + ".log"), "w") as fh:
        fh.write(done.stderr)  # the progress lines (rates of each step) and /usr/bin/time's report
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    peak = next((l.split(":")[1].strip() for l in done.stderr.splitlines() if "Maximum resident" in l), "?")
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    # The stage resets the high-water mark before each step (usage.rs), so /usr/bin/time's maximum
    # is the last step's; the process's peak is the largest of the steps'.
    steps = [u.get("peak_rss_mib") or 0 for u in summary["usage"].values()]
    return summary, max(steps + [int(peak) / 1024 if peak != "?" else 0])


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    planted, out, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    binary = os.environ.get("DEDUPE", "target/release/dedupe")
    os.makedirs(out, exist_ok=True)
    sets = build_sets(planted, out, extra)
    results = {}
    # MODEL: a model.safetensors an earlier run of this benchmark trained, reused by every run.
    model = os.environ.get("MODEL")
    for n, tar in reversed(sets):  # the largest first: it trains the model the others reuse
        dest = os.path.join(out, f"run-{n}")
        summary, peak = run(binary, tar, dest, model)
        model = model or os.path.join(dest, "model.safetensors")
        results[n] = (summary, peak)
        print(f"{n} inputs: {summary['counts']}, process peak {peak:.0f} MiB", flush=True)
    smallest = min(results)
    print("\n| step | " + " | ".join(f"{n:,} photos: CPU us/image (wall s, peak MiB)" for n in sorted(results)) + " | largest / smallest (CPU per image) |")
    print("|---|" + "---:|" * (len(results) + 1))
    for step in STEPS:
        cells, per = [], {}
        for n in sorted(results):
            u = results[n][0]["usage"].get(step)
            if not u:
                cells.append("-")
                continue
            images = results[n][0]["counts"]["cropped"]
            per[n] = 1e6 * u["cpu_s"] / images
            wall = u["wall_s"]
            wall = "-" if wall is None or wall != wall else f"{wall:.1f}"
            peak = u.get("peak_rss_mib")
            cells.append(f"{per[n]:.0f} ({wall}, {peak:.0f})" if peak else f"{per[n]:.0f} ({wall})")
        ratio = f"{per[max(per)] / per[smallest]:.2f}" if smallest in per and per[smallest] > 0 else "-"
        print(f"| {step} | " + " | ".join(cells) + f" | {ratio} |")
    for n in sorted(results):
        c = results[n][0]["counts"]
        print(f"{n:,}: removed {c['removed']}, window pairs {c['window_pairs']} ({c['window_pairs'] / max(1, c['cropped']):.3f} an image), code pairs {c['near_pairs_between_distinct_codes']}")


if __name__ == "__main__":
    main()
