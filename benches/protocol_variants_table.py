"""Markdown table of benches/protocol_variants.rs rows: OUT/{committed,random}/rows.jsonl.

    python benches/protocol_variants_table.py OUT
"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {}
for d in ["committed", "random"]:
    path = out / d / "rows.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows.setdefault(r["row"], {})[d] = r

def cell(r):
    if r is None:
        return "not run", ""
    if "mean" in r:
        return f"{100 * r['mean']:.1f}% (+-{100 * r['std']:.1f}%), C {r['c']:.0e}", f"{r['seconds']:.0f} s"
    if "validation_accuracy" not in r:
        return "", f"{r['seconds']:.0f} s, {r['peak_rss_mib']:,.0f} MiB"
    grid = ", ".join(f"{c:.1e} {100 * a:.1f}" for c, a, _ in r["grid"])
    return f"**{100 * r['validation_accuracy']:.2f}%** at C {r['best_c']:.1e} ({grid})", f"{r['seconds']:.0f} s, {r['peak_rss_mib']:,.0f} MiB"

print("| row | committed D: validation (C: accuracy %) | time, peak memory | random D: validation | time, peak memory |")
print("|---|---|---|---|---|")
for name, by_d in rows.items():
    c, r = cell(by_d.get("committed")), cell(by_d.get("random"))
    print(f"| {name} | {c[0]} | {c[1]} | {r[0]} | {r[1]} |")
