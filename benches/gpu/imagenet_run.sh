#!/usr/bin/env bash
# The paper's path on ImageNet photos, on a GPU machine, in ONE device call of at most 9 minutes
# (torch 2.11 in its python3; no Rust, no OpenCV, no internet):
#   1. train imagenet32 on Tiny ImageNet's 100,000 32x32 photos (read straight from the tarball:
#      crop needs OpenCV, and the packed set, 307 MB, would not fit the 64 MiB carry) for
#      $TRAIN_MINUTES minutes, a D and G snapshot every $SNAPSHOT_EVERY epochs;
#   2. score every snapshot on the validation split of CIFAR-10's training images (features on the
#      GPU, the C grid $C_GRID, the SVM fitted on $FIT_PER_CLASS images per class, the held-out test
#      images never read), until $SCORE_DEADLINE_S seconds into the script;
#   3. export the best snapshot's D and G as float16 with their records;
#   4. with time left (FINAL_EVAL=1 and $FINAL_MIN_S seconds before $DEADLINE_S), cifar-eval of the
#      best D on the held-out test images at the C it was chosen with.
# $OUT gets at most 8 files, each under 16 MiB: log.txt, snapshots.json, snapshots.md,
# imagenet32-{d,g}.safetensors (+ .json records) and run.tar (samples, losses, summaries, configs,
# snapshots.csv, the final metrics). Each lands as soon as it is made.
#
# Prepare here: bash benches/gpu/prepare_carry.sh (binaries and both tarballs into gpu-carry/,
# git-ignored; it checks the 64 MiB limit), then run with carry=["gpu-carry"], timeout_s 540 (it ends by itself at ~520 s):
#   bash benches/gpu/imagenet_run.sh
# Test it on a CPU with a tiny configuration (90 s on the 2-core VM, 4 snapshots scored; the binaries
# of any profile, the tarballs where they are):
#   DEVICE=cpu CARRY=target/test-release TINY_DATA=../shared/data OUT=/tmp/imagenet-gpu-test \
#   TRAIN_MINUTES=0.5 SNAPSHOT_EVERY=1 SCORE_DEADLINE_S=200 DEADLINE_S=280 FINAL_MIN_S=30 FIT_PER_CLASS=50 VALIDATION=500 \
#   TRAIN_EXTRA="--set train.width=8 --set train.limit_images=320 --set train.batch=64" \
#   EVAL_EXTRA="--set cifar_eval.width=8 --set cifar_eval.batch_norm_images=1000 --set cifar_eval.limit_train_per_class=300" \
#   FINAL_EXTRA="--set cifar_eval.per_class=20 --set cifar_eval.draws=1 --set cifar_eval.holdout_test=500" \
#   bash benches/gpu/imagenet_run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
CARRY=${CARRY:-gpu-carry}
TINY_DATA=${TINY_DATA:-$CARRY}
OUT=${OUT:-/tmp/imagenet-gpu-out}
DEVICE=${DEVICE:-cuda}
TRAIN_MINUTES=${TRAIN_MINUTES:-3.5}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-3}
C_GRID=${C_GRID:-[0.0001,0.0003]}
FIT_PER_CLASS=${FIT_PER_CLASS:-1000}
VALIDATION=${VALIDATION:-5000}
SCORE_DEADLINE_S=${SCORE_DEADLINE_S:-420}
DEADLINE_S=${DEADLINE_S:-515}
FINAL_EVAL=${FINAL_EVAL:-1}
FINAL_MIN_S=${FINAL_MIN_S:-80}
TRAIN_EXTRA=${TRAIN_EXTRA:-}
EVAL_EXTRA=${EVAL_EXTRA:-}
FINAL_EXTRA=${FINAL_EXTRA:-}
WORK=$(mktemp -d)
mkdir -p "$OUT"
PY=${PYTHON:-python3}
TORCH_LIB=$($PY -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
LOG=$OUT/log.txt
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
left() { echo $(( $1 - ($(date +%s) - T0) )); }

# The binaries travel xz-compressed when the carry is tight (prepare_carry.sh decides).
BIN=$WORK/bin
mkdir -p "$BIN"
for b in train cifar-eval; do
  if [ -f "$CARRY/$b.xz" ]; then
    $PY -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$CARRY/$b.xz" "$BIN/$b"
    chmod +x "$BIN/$b"
  else
    ln -s "$(realpath "$CARRY/$b")" "$BIN/$b"
  fi
done
IMAGENET=$TINY_DATA/tiny-imagenet-32-train.tar.gz
CIFAR=$TINY_DATA/cifar10-train-jpeg.tar.gz
for f in "$IMAGENET" "$CIFAR"; do [ -f "$f" ] || { say "missing $f"; exit 1; }; done

say "== machine"
run bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'"
run $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
run nproc

say "== train imagenet32 on $IMAGENET ($TRAIN_MINUTES minutes, a snapshot every $SNAPSHOT_EVERY epochs)"
# shellcheck disable=SC2086
run "$BIN/train" -i "$IMAGENET" -o "$WORK/run" --set train.epochs=1000 --set train.device="$DEVICE" \
    --set train.max_minutes="$TRAIN_MINUTES" --set train.snapshot_every_epochs="$SNAPSHOT_EVERY" \
    --set train.keep_checkpoints=1 --set train.log_every=100 --set run.log_every_s=30 $TRAIN_EXTRA
say "train: $($PY -c "import json; r = json.load(open('$WORK/run/summary.json'))['report']; print(f\"{r['end_step']} steps, {r['images']} images, {r['images_per_s']:.0f} images/s over {r['wall_s']:.0f} s\")")"
say "snapshots: $(ls "$WORK/run/snapshots" | tr '\n' ' ')"

score_left=$(left "$SCORE_DEADLINE_S")
say "== score every snapshot on CIFAR-10's validation split (at most $score_left s)"
# shellcheck disable=SC2086
timeout "$score_left" "$BIN/cifar-eval" --snapshots "$WORK/run" -i "$CIFAR" -o "$WORK/select" \
    --set cifar_eval.device="$DEVICE" --set "cifar_eval.c_grid=$C_GRID" --set cifar_eval.snapshot_fit_per_class="$FIT_PER_CLASS" \
    --set cifar_eval.validation="$VALIDATION" --set run.log_every_s=30 $EVAL_EXTRA 2>&1 | tee -a "$LOG"
for f in snapshots.json snapshots.md; do [ -f "$WORK/select/$f" ] && cp "$WORK/select/$f" "$OUT/"; done

# The best scored snapshot; with none scored (cut short), the newest checkpoint.
best=$($PY -c "import json, sys; t = json.load(open(sys.argv[1])); print(t['best']['path'] if t.get('best') else '')" "$WORK/select/snapshots.json" 2>/dev/null)
say "== export (best: ${best:-none scored, the newest checkpoint})"
run "$BIN/train" -o "$WORK/run" ${best:+--checkpoint "$best"} \
    --export-discriminator "$OUT/imagenet32-d.safetensors" --export-generator "$OUT/imagenet32-g.safetensors"

final_left=$(left "$DEADLINE_S")
if [ "$FINAL_EVAL" = 1 ] && [ -n "$best" ] && [ "$final_left" -gt "$FINAL_MIN_S" ]; then
  c=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['best']['best_c'])" "$WORK/select/snapshots.json")
  say "== cifar-eval of the best D on the held-out test images, C $c (at most $final_left s)"
  # shellcheck disable=SC2086
  timeout "$final_left" "$BIN/cifar-eval" -i "$CIFAR" -o "$WORK/final" -d "$OUT/imagenet32-d.safetensors" \
      --set cifar_eval.device="$DEVICE" --set "cifar_eval.c_grid=[$c]" --set cifar_eval.draws=3 --set run.log_every_s=30 \
      $EVAL_EXTRA $FINAL_EXTRA 2>&1 | tee -a "$LOG" | tail -n 12
fi

say "== bring back"
mkdir -p "$WORK/back"
cp -r "$WORK/run/samples" "$WORK/back/samples"
for f in losses.csv losses.png summary.json config.toml; do cp "$WORK/run/$f" "$WORK/back/"; done
cp "$WORK/select/snapshots.csv" "$WORK/back/" 2>/dev/null
for f in metrics.json summary.json confusion.png; do [ -f "$WORK/final/$f" ] && cp "$WORK/final/$f" "$WORK/back/final-$f"; done
tar -C "$WORK/back" -cf "$OUT/run.tar" .
say "run.tar $(du -h "$OUT/run.tar" | cut -f1); \$OUT: $(ls "$OUT" | tr '\n' ' ')"
say "== done"
rm -rf "$WORK"
