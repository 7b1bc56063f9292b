#!/usr/bin/env bash
# The train stage on a GPU machine (torch 2.11 in its python3, no Rust, no OpenCV, no internet), in
# one script that fits the device tool's 10-minute command limit:
#   1. probes: $PROBE_STEPS steps of imagenet32 in each of float32 / bfloat16 convolutions x
#      NCHW / channels-last, images/s of each (which pay off);
#   2. the PyTorch reference: the same architecture and step with torch's DataLoader over the same
#      images (exported by `train --export-images`), batch 128, for $REF_SECONDS;
#   3. imagenet32 on CIFAR-10's 50,000 training images (labels unused) with the fastest probe's
#      settings, $EPOCHS epochs or $TRAIN_MINUTES minutes, whichever ends first;
#   4. its discriminator exported (float16, < 16 MiB) and scored by cifar-eval on the same machine
#      (one C, features on the GPU), bounded so that the whole script ends by $DEADLINE_S.
# Everything lands in $OUT as it is made (a killed run still brings back what it had).
#
# Prepare here (see docs/gpu.md): release `train`, `cifar-eval` and
# ../shared/data/cifar10-train-jpeg.tar.gz in gpu-carry/ (git-ignored), then run with
# carry=["gpu-carry"]:  bash gpu-runs/run.sh
# Test it on a CPU with a tiny configuration:
#   DEVICE=cpu EPOCHS=1 PROBE_STEPS=4 REF_SECONDS=5 EVAL="--set cifar_eval.limit_train_per_class=100 --set cifar_eval.width=8" \
#   EXTRA="--set train.width=8 --set train.limit_images=512 --set train.batch=64" \
#   REF_ARGS="--width 8 --limit 512 --batch 64 --workers 0" OUT=/tmp/gpu-out bash gpu-runs/run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
CARRY=${CARRY:-gpu-carry}
OUT=${OUT:-/tmp/gpu-out}
EPOCHS=${EPOCHS:-40}
TRAIN_MINUTES=${TRAIN_MINUTES:-3}
PROBE_STEPS=${PROBE_STEPS:-150}
DEVICE=${DEVICE:-cuda}
REF_SECONDS=${REF_SECONDS:-45}
DEADLINE_S=${DEADLINE_S:-480}
EXTRA=${EXTRA:-}
REF_ARGS=${REF_ARGS:-}
EVAL=${EVAL:-}
WORK=$(mktemp -d)
mkdir -p "$OUT"
PY=${PYTHON:-python3}
TORCH_LIB=$($PY -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
DATA=$CARRY/cifar10-train-jpeg.tar.gz
[ -f "$DATA" ] || DATA=${DATA_FALLBACK:?"no $DATA: put the CIFAR-10 tarball in $CARRY/"}
LOG=$OUT/log.txt
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
# Mean images/s over losses.csv's rows after the first (the first holds cuDNN's autotuning).
rate() { $PY -c "
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
r = [float(x['images_per_s']) for x in rows[1:]] or [float(x['images_per_s']) for x in rows]
print(round(sum(r) / len(r), 1) if r else 0)" "$1"; }

say "== machine"
run bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo 'no nvidia-smi'"
run $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

say "== probes ($PROBE_STEPS steps each)"
best="float32 false" best_rate=0
for variant in "float32 false" "float32 true" "bfloat16 false" "bfloat16 true"; do
  set -- $variant
  dir=$WORK/probe-$1-$2
  # shellcheck disable=SC2086
  run "$CARRY/train" -i "$DATA" -o "$dir" --set train.max_steps="$PROBE_STEPS" --set train.device="$DEVICE" \
      --set train.precision="$1" --set train.channels_last="$2" --set train.log_every=25 --set run.log_every_s=30 $EXTRA >/dev/null
  r=$(rate "$dir/losses.csv")
  say "probe precision=$1 channels_last=$2: $r images/s"
  if $PY -c "import sys; sys.exit(0 if float('$r') > float('$best_rate') else 1)"; then best="$variant" best_rate=$r; fi
done
set -- $best
PRECISION=${PRECISION:-$1} CHANNELS_LAST=${CHANNELS_LAST:-$2}
say "fastest: precision=$1 channels_last=$2 ($best_rate images/s); training with precision=$PRECISION channels_last=$CHANNELS_LAST"

say "== reference (PyTorch DataLoader, float32, $REF_SECONDS s)"
# shellcheck disable=SC2086
run "$CARRY/train" -i "$DATA" --export-images "$WORK/cifar.npy" $EXTRA >/dev/null
# shellcheck disable=SC2086
ref=$($PY benches/train_step_torch.py --data "$WORK/cifar.npy" --epochs 1000 --max-seconds "$REF_SECONDS" \
      --device "$DEVICE" $REF_ARGS 2>&1 | tee -a "$LOG" | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
rm -f "$WORK/cifar.npy"
# The same step without a DataLoader (random batches already on the GPU): what PyTorch's compute costs.
# shellcheck disable=SC2086
step_ref=$($PY benches/train_step_torch.py --steps "$PROBE_STEPS" --device "$DEVICE" $REF_ARGS 2>&1 | tee -a "$LOG" \
      | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
f32=$(rate "$WORK/probe-float32-false/losses.csv")
say "reference $ref images/s (step alone, no DataLoader: $step_ref); ours float32 $f32 images/s (ratio $($PY -c "print(round($f32 / $ref, 2))")), ours fastest $best_rate (ratio $($PY -c "print(round($best_rate / $ref, 2))"))"

if [ -n "${ONLY_PROBES:-}" ]; then say "== done (ONLY_PROBES)"; rm -rf "$WORK"; exit 0; fi
say "== train ($EPOCHS epochs or $TRAIN_MINUTES minutes)"
start=$(date +%s.%N)
# shellcheck disable=SC2086
run "$CARRY/train" -i "$DATA" -o "$WORK/run" --set train.epochs="$EPOCHS" --set train.device="$DEVICE" \
    --set train.max_minutes="$TRAIN_MINUTES" --set train.precision="$PRECISION" --set train.channels_last="$CHANNELS_LAST" \
    --set train.log_every=50 --set run.log_every_s=20 $EXTRA
say "train wall $($PY -c "import time; print(round(time.time() - $start, 1))") s"
run "$CARRY/train" -i "$DATA" --output "$WORK/run" --export-discriminator "$OUT/imagenet32-d.safetensors" $EXTRA
tar -C "$WORK/run" -cf "$OUT/run.tar" samples losses.csv losses.png summary.json config.toml
(cd "$WORK" && tar -rf "$OUT/run.tar" probe-*/losses.csv)
say "train images/s (whole run): $($PY -c "import json; print(json.load(open('$WORK/run/summary.json'))['report']['images_per_s'])")"

left=$(( DEADLINE_S - ($(date +%s) - T0) ))
say "== cifar-eval of the trained D (at most $left s)"
if [ "$left" -gt 30 ]; then
  # shellcheck disable=SC2086
  timeout "$left" "$CARRY/cifar-eval" -i "$DATA" -o "$WORK/ce" -d "$OUT/imagenet32-d.safetensors" \
      --set cifar_eval.device="$DEVICE" --set 'cifar_eval.c_grid=[0.00003]' --set cifar_eval.draws=3 $EVAL 2>&1 | tee -a "$LOG" | tail -n 30
  for f in metrics.json confusion.png; do [ -f "$WORK/ce/$f" ] && cp "$WORK/ce/$f" "$OUT/"; done
fi
say "== done"
rm -rf "$WORK"
