#!/usr/bin/env bash
# One imagenet32 training step at batch 128 on the CPU: `train` (tch) and plain PyTorch, the same
# libtorch underneath (the project venv's torch 2.11), interleaved: ROUNDS rounds of one process
# each (the order alternates), so that the load of a shared machine falls on both alike. Prints each
# round, its ratio, and the median of the ratios.
#   bash benches/train_step_cpu.sh [STEPS] [ROUNDS]    (TRAIN=path/to/train to time another build)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10}
rounds=${2:-3}
train=${TRAIN:-target/release/train}
ours() { "$train" --benchmark-steps "$steps" --set train.device=cpu; }
theirs() { .venv/bin/python benches/train_step_torch.py --steps "$steps" --device cpu; }
lines=()
for round in $(seq "$rounds"); do
  if (( round % 2 )); then a=$(ours); b=$(theirs); else b=$(theirs); a=$(ours); fi
  echo "round $round: $a"
  echo "round $round: $b"
  lines+=("$a" "$b")
done
python3 - "${lines[@]}" <<'PY'
import re, statistics, sys
rate = lambda s: float(re.search(r"([0-9.]+) images/s", s).group(1))
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
ratios = [rate(a) / rate(b) for a, b in pairs]
print("ratio train / PyTorch per round: " + " ".join(f"{r:.2f}" for r in ratios))
print(f"train {statistics.median(rate(a) for a, _ in pairs):.1f} images/s, PyTorch {statistics.median(rate(b) for _, b in pairs):.1f} images/s (medians)")
print(f"ratio train / PyTorch (median of {len(ratios)} rounds): {statistics.median(ratios):.2f}")
PY
