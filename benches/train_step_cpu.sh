#!/usr/bin/env bash
# One imagenet32 training step at batch 128 on the CPU: `train` (tch) and plain PyTorch, the same
# libtorch underneath (the project venv's torch 2.11), in one run. Prints both and the ratio.
#   bash benches/train_step_cpu.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10}
ours=$(target/release/train --benchmark-steps "$steps" --set train.device=cpu)
theirs=$(.venv/bin/python benches/train_step_torch.py --steps "$steps" --device cpu)
echo "$ours"
echo "$theirs"
python3 - "$ours" "$theirs" <<'PY'
import re, sys
rate = lambda s: float(re.search(r"([0-9.]+) images/s", s).group(1))
print(f"ratio train / PyTorch: {rate(sys.argv[1]) / rate(sys.argv[2]):.2f}")
PY
