#!/usr/bin/env bash
# Fills gpu-carry/ (git-ignored) for benches/gpu/imagenet_run.sh: the train and cifar-eval binaries
# (stripped) and the two tarballs, and checks what travels against the device tool's 64 MiB (the
# tracked tree, untracked files that are not ignored, and the carry). The binaries go xz-compressed
# (the script unpacks them with python's lzma) when they would not fit plain.
#   bash benches/gpu/prepare_carry.sh [BIN_DIR]     # default target/release
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN_DIR=${1:-target/release}
DATA=${DATA:-../shared/data}
CARRY=gpu-carry
LIMIT=$((64 * 1024 * 1024))
rm -rf "$CARRY" && mkdir -p "$CARRY"
cp "$DATA/tiny-imagenet-32-train.tar.gz" "$DATA/cifar10-train-jpeg.tar.gz" "$CARRY/"
for b in train cifar-eval; do
  cp "$BIN_DIR/$b" "$CARRY/$b"
  strip "$CARRY/$b"
done
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
total() { echo $(( tree + $(du -cb "$CARRY"/* | tail -1 | cut -f1) )); }
if [ "$(total)" -gt "$LIMIT" ]; then
  for b in train cifar-eval; do xz -9e -T2 "$CARRY/$b"; done
fi
du -b "$CARRY"/* | awk '{printf "%10d  %s\n", $1, $2}'
t=$(total)
printf 'tree %d + carry %d = %d bytes (%.1f MiB) of %d (64 MiB)\n' "$tree" $((t - tree)) "$t" "$(echo "$t / 1048576" | bc -l)" "$LIMIT"
[ "$t" -le "$LIMIT" ] || { echo "over the limit"; exit 1; }
