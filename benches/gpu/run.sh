#!/usr/bin/env bash
# The train stage on a GPU machine (torch 2.11 in its python3, no Rust, no OpenCV, no internet), in
# one script that fits the device tool's 10-minute command limit:
#   1. train imagenet32 on CIFAR-10's 50,000 training images (labels unused) for $EPOCHS epochs;
#   2. the PyTorch reference: the same architecture and step with torch's DataLoader over the same
#      images (exported by `train --export-images`), batch 128, for the same number of epochs or
#      $REF_SECONDS, whichever ends first;
#   3. images/s of both and the ratio; the sample grid, the loss plot, the summary and the
#      discriminator (float16, < 16 MiB) into $OUT.
#
# Prepare here (see README "GPU"): release `train` and ../shared/data/cifar10-train-jpeg.tar.gz in
# gpu-carry/ (git-ignored), then run with carry=["gpu-carry"]:
#   bash benches/gpu/run.sh
# Test it on a CPU with a tiny configuration:
#   DEVICE=cpu EPOCHS=1 EXTRA="--set train.width=8 --set train.limit_images=512 --set train.batch=64" \
#   REF_ARGS="--width 8 --limit 512 --batch 64 --workers 0" OUT=/tmp/gpu-out bash benches/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=${CARRY:-gpu-carry}
OUT=${OUT:-/tmp/gpu-out}
EPOCHS=${EPOCHS:-15}
DEVICE=${DEVICE:-cuda}
REF_SECONDS=${REF_SECONDS:-150}
EXTRA=${EXTRA:-}
REF_ARGS=${REF_ARGS:-}
WORK=$(mktemp -d)
mkdir -p "$OUT"
PY=${PYTHON:-python3}
TORCH_LIB=$($PY -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
DATA=$CARRY/cifar10-train-jpeg.tar.gz
[ -f "$DATA" ] || DATA=${DATA_FALLBACK:?"no $DATA: put the CIFAR-10 tarball in $CARRY/"}
{
  echo "== machine"; (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi") 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  echo "== train ($EPOCHS epochs, device $DEVICE)"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$CARRY/train" -i "$DATA" -o "$WORK/run" --set train.epochs="$EPOCHS" --set train.device="$DEVICE" \
      --set train.log_every=50 --set run.log_every_s=15 $EXTRA 2>&1
  echo "wall $(echo "$(date +%s.%N) - $start" | bc) s"
  ours=$($PY -c "import json; print(json.load(open('$WORK/run/summary.json'))['report']['images_per_s'])")
  echo "== reference (PyTorch DataLoader)"
  "$CARRY/train" -i "$DATA" --export-images "$WORK/cifar.npy" $EXTRA 2>&1
  # shellcheck disable=SC2086
  ref=$($PY benches/train_step_torch.py --data "$WORK/cifar.npy" --epochs "$EPOCHS" --max-seconds "$REF_SECONDS" \
      --device "$DEVICE" $REF_ARGS 2>&1 | tee /dev/stderr | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')
  echo "== result"
  echo "train (tch): $ours images/s; PyTorch DataLoader reference: $ref images/s; ratio $($PY -c "print(round($ours / $ref, 2))")"
} 2>&1 | tee "$OUT/log.txt"
last=$(ls "$WORK/run/samples" | sort | tail -n 1)
cp "$WORK/run/samples/$last" "$OUT/samples.png"
cp "$WORK/run/losses.png" "$WORK/run/losses.csv" "$WORK/run/summary.json" "$OUT/"
# The discriminator in float16 (about 9 MB for width 128), with torch alone (no safetensors package).
$PY - "$WORK/run/discriminator.safetensors" "$OUT/imagenet32-d.safetensors" <<'PY'
import json, struct, sys, torch
src, dst = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
body = raw[8 + n:]
out_header, chunks, offset = {}, [], 0
for name, meta in sorted((k, v) for k, v in header.items() if k != "__metadata__"):
    start, end = meta["data_offsets"]
    t = torch.frombuffer(bytearray(body[start:end]), dtype=torch.float32).view(meta["shape"])
    b = bytes(t.half().contiguous().view(torch.uint8).flatten().tolist())
    out_header[name] = {"dtype": "F16", "shape": meta["shape"], "data_offsets": [offset, offset + len(b)]}
    chunks.append(b)
    offset += len(b)
h = json.dumps(out_header).encode()
h += b" " * (-len(h) % 8)
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(chunks))
print(f"{dst}: {len(out_header)} tensors, {offset / 2**20:.1f} MiB of float16")
PY
rm -rf "$WORK"
