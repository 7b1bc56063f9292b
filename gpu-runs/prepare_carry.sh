#!/usr/bin/env bash
# Fills the carry (gpu-carry/, git-ignored) for gpu-runs/imagenet_run.sh and checks what travels
# against the budget (docs/gpu.md#what-travels):
#   - train.xz: the train binary, stripped and xz-compressed (the run unpacks it with python's lzma);
#     refused when it needs a library the GPU machine lacks (OpenCV, say);
#   - imagenet-shard.tar.gz (+ .json): the half of Tiny ImageNet's photos this lease trains on
#     (gpu-runs/shard.py; the lease after the committed ones in $STATE/run.json, rotating);
#   - nothing else: the run's state ($STATE, committed) travels in the tree, and its D is scored at
#     home (make cifar-eval), so neither CIFAR-10 nor cifar-eval travels.
# What travels is the tracked tree, untracked files that are not ignored, and the carry; the device
# tool refuses more than 64 MiB, this script more than $LIMIT_MIB (60), and it warns past
# $TARGET_MIB (56). With stand-in data (the test), the shard counts as the real one would
# ($REAL_SOURCE_BYTES / $SHARDS), so the check says whether the real carry would fit.
#   bash gpu-runs/prepare_carry.sh [BIN_DIR]     # default target/release (the LTO build)
# Environment: DATA (a folder with tiny-imagenet-32-train.tar.gz; ../shared/data), CARRY (gpu-carry),
# STATE (models/imagenet-run), SHARDS (2), ALLOW_NEEDED (more libraries the binary may need: only for
# the test's non-LTO build, see tests/gpu_run.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-target/release}
DATA=${DATA:-../shared/data}
CARRY=${CARRY:-gpu-carry}
STATE=${STATE:-models/imagenet-run}
SHARDS=${SHARDS:-2}
LIMIT_MIB=${LIMIT_MIB:-60}
TARGET_MIB=${TARGET_MIB:-56}
ALLOW_NEEDED=${ALLOW_NEEDED:-}
# ../shared/data/tiny-imagenet-32-train.tar.gz, measured 2026-12-03 (its halves: 16,092,319 and 16,064,561).
REAL_SOURCE_BYTES=33517317
# The run state at width 128: D and G as float16 (9,181,450 + 8,698,814 bytes), their records, run.json
# and losses.csv (~17 kB a lease); once committed, its real size counts.
REAL_STATE_BYTES=17980000
SOURCE=$DATA/tiny-imagenet-32-train.tar.gz
fail() { echo "prepare_carry: $*" >&2; exit 1; }
[ -f "$SOURCE" ] || fail "$SOURCE: missing (DATA=folder with tiny-imagenet-32-train.tar.gz)"
[ -x "$BIN_DIR/train" ] || fail "$BIN_DIR/train: missing (cargo build --release)"

leases=0
if [ -f "$STATE/run.json" ]; then
  leases=$(python3 -c "import json, sys; print(len(json.load(open(sys.argv[1]))['leases']))" "$STATE/run.json") \
    || fail "$STATE/run.json: unreadable"
fi
shard=$((leases % SHARDS))

rm -rf "$CARRY" && mkdir -p "$CARRY"
python3 gpu-runs/shard.py "$SOURCE" "$shard" "$SHARDS" "$CARRY/imagenet-shard.tar.gz"

cp "$BIN_DIR/train" "$CARRY/train"
strip "$CARRY/train"
# The GPU machine has python's torch (libtorch, libc10, its libgomp) and the C and C++ runtimes.
for lib in $(readelf -d "$CARRY/train" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
  case $lib in
    libtorch*|libc10*|libgomp*|libc.so*|libm.so*|libgcc_s.so*|libstdc++.so*|ld-linux*|libdl.so*|libpthread.so*|librt.so*) ;;
    *) case " $ALLOW_NEEDED " in
         *" ${lib%%.so*} "*) echo "prepare_carry: $lib allowed (ALLOW_NEEDED): this binary would not load on the GPU machine" ;;
         *) fail "$BIN_DIR/train needs $lib, which the GPU machine lacks (use the LTO release build)" ;;
       esac ;;
  esac
done
xz -9e -T2 "$CARRY/train"

# Bytes of the files that travel under the given paths (all of them without one; a path outside the repository: 0).
listed() { { git ls-files -z --cached --others --exclude-standard -- "$@" 2>/dev/null || true; } | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
tree=$(listed)
[ "$tree" -gt 0 ] || fail "cannot list the working tree (git ls-files)"
# Until a lease's state is committed in the tree, count what it will weigh there (the next lease carries it).
state_in_tree=$(listed "$STATE")
state_missing=$((REAL_STATE_BYTES > state_in_tree ? REAL_STATE_BYTES - state_in_tree : 0))
shard_bytes=$(stat -c %s "$CARRY/imagenet-shard.tar.gz")
real_shard=$((REAL_SOURCE_BYTES / SHARDS))
counted_shard=$((shard_bytes > real_shard ? shard_bytes : real_shard))
carry=$(du -cb "$CARRY"/* | tail -1 | cut -f1)
now=$((tree + carry - shard_bytes + counted_shard))
total=$((now + state_missing))
du -b "$CARRY"/* | awk '{printf "%10d  %s\n", $1, $2}'
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
printf 'shard %d of %d (lease %d): tree %d bytes (%s MiB; %s MiB of it the run state in %s) + carry %d (the shard counted as %d) = %s MiB\n' \
  "$shard" "$SHARDS" $((leases + 1)) "$tree" "$(mib "$tree")" "$(mib "$state_in_tree")" "$STATE" "$carry" "$counted_shard" "$(mib "$now")"
printf 'with the run state at its full size (%s MiB more until it is committed): %d bytes, %s MiB of %d MiB (target %d MiB)\n' \
  "$(mib "$state_missing")" "$total" "$(mib "$total")" "$LIMIT_MIB" "$TARGET_MIB"
[ "$total" -le $((LIMIT_MIB * 1048576)) ] || fail "over the limit: $(mib "$total") MiB of $LIMIT_MIB (docs/gpu.md#what-travels)"
[ "$total" -le $((TARGET_MIB * 1048576)) ] || echo "prepare_carry: warning: over the $TARGET_MIB MiB target"
echo "prepare_carry: ready; run with carry=[\"$CARRY\"]: bash gpu-runs/imagenet_run.sh"
