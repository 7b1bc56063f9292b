#!/usr/bin/env bash
# One lease of the ImageNet run (docs/gpu.md#the-imagenet-run-across-leases), in ONE device call on a
# GPU machine (torch 2.11 in its python3; no Rust, no OpenCV, no internet):
#   1. resume the run from its committed state ($STATE: D and G as float16, the checkpoint state,
#      losses.csv, run.json; none there: a new run); Adam's moments do not travel, so the first
#      $MOMENT_WARMUP steps re-estimate them with the weights held still (train.moment_warmup_steps);
#   2. train imagenet32 on the carried half of Tiny ImageNet's photos for $TRAIN_MINUTES minutes
#      (under `timeout`, so that the export below always has its time);
#   3. export D and G (float16) with their records, which also say the totals over all leases,
#      run.json (every lease, the totals, the checkpoint the next lease resumes from) and run.tar
#      (at most 12 sample grids, losses.csv and .png, summary.json, config.toml).
# Nothing is scored here: the D is scored at home (make cifar-eval D=$STATE/imagenet32-d.safetensors).
# $OUT gets 7 files, each under 16 MiB (D 8.8 MiB, G 12.8 MiB), each as soon as it is made: log.txt,
# imagenet32-{d,g}.safetensors (+ .json), run.json, run.tar. Exit status 0 only when all were made.
#
# Prepare here: bash gpu-runs/prepare_carry.sh; then the device tool with carry=["gpu-carry"],
# timeout_s 600: bash gpu-runs/imagenet_run.sh; then here:
# python3 gpu-runs/lease.py commit <the files' folder> models/imagenet-run, and commit that folder.
# tests/gpu_run.rs runs it on the CPU (make test) from a carry prepared the same way, twice (the
# second lease resumes the first), with a tiny configuration through TRAIN_EXTRA.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
CARRY=${CARRY:-gpu-carry}
STATE=${STATE:-models/imagenet-run}
OUT=${OUT:-/tmp/imagenet-gpu-out}
DEVICE=${DEVICE:-cuda}
TRAIN_MINUTES=${TRAIN_MINUTES:-7}
MOMENT_WARMUP=${MOMENT_WARMUP:-1000}
DEADLINE_S=${DEADLINE_S:-570}
TRAIN_EXTRA=${TRAIN_EXTRA:-}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
LOG=$OUT/log.txt
say() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
die() { say "FAILED: $*"; exit 1; }

SHARD=$CARRY/imagenet-shard.tar.gz
for f in "$CARRY/train.xz" "$SHARD" "$SHARD.json"; do [ -f "$f" ] || die "missing $f (gpu-runs/prepare_carry.sh)"; done
run $PY gpu-runs/lease.py check-shard "$STATE" "$SHARD.json" || die "the carry does not fit the committed state"
TORCH_LIB=$($PY -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))") || die "no torch in $PY"
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
TRAIN=$WORK/train
$PY -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$CARRY/train.xz" "$TRAIN" \
  && chmod +x "$TRAIN" || die "cannot unpack $CARRY/train.xz"
run "$TRAIN" --version || die "train does not start here (libraries: ldd $TRAIN)"

say "== machine"
run bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'"
run $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
DEVICE_NAME=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo unknown)

say "== resume"
run $PY gpu-runs/lease.py seed "$STATE" "$WORK/run" || die "cannot resume from $STATE"

train_s=$((DEADLINE_S - ($(date +%s) - T0) - 40))
say "== train on $SHARD ($TRAIN_MINUTES minutes, at most $train_s s in all)"
# shellcheck disable=SC2086
run timeout --preserve-status -k 20 "$train_s" "$TRAIN" -i "$SHARD" -o "$WORK/run" --set train.epochs=1000000 --set train.device="$DEVICE" \
  --set train.max_minutes="$TRAIN_MINUTES" --set train.keep_checkpoints=1 --set train.snapshot_every_epochs=0 \
  --set train.moment_warmup_steps="$MOMENT_WARMUP" --set train.log_every=100 --set run.log_every_s=30 $TRAIN_EXTRA
status=$?
# 75: stopped by timeout's signal with a checkpoint (train's preemption exit); anything else but 0 fails.
[ "$status" = 0 ] || [ "$status" = 75 ] || say "train exited with $status"

say "== export the newest checkpoint"
run "$TRAIN" -o "$WORK/run" --input "$SHARD" --export-discriminator "$OUT/imagenet32-d.safetensors" \
  --export-generator "$OUT/imagenet32-g.safetensors" || die "export"
run $PY gpu-runs/lease.py record "$STATE" "$WORK/run" "$OUT" "$SHARD.json" "$DEVICE_NAME" || die "run.json"

say "== bring back"
mkdir -p "$WORK/back"
$PY gpu-runs/lease.py samples "$WORK/run" "$WORK/back/samples" 12
for f in losses.csv losses.png summary.json config.toml; do [ -f "$WORK/run/$f" ] && cp "$WORK/run/$f" "$WORK/back/"; done
tar -C "$WORK/back" -cf "$OUT/run.tar" . || die "run.tar"
say "run.tar $(du -h "$OUT/run.tar" | cut -f1); \$OUT: $(ls "$OUT" | tr '\n' ' ')"
[ "$status" = 0 ] || [ "$status" = 75 ] || die "train exited with $status (what it had is exported)"
say "== done"
