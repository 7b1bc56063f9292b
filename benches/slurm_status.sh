#!/usr/bin/env bash
# How long `slurm/submit status OUT` takes for a run of 3 stages (crop, faces, dedupe) x TASKS
# array tasks (default 8) on a one-node cluster (slurm/local-cluster.sh): wall and CPU time of
# RUNS calls (default 10), with the run in a mixed state (some tasks done, one failed, the others
# held, merges and report waiting). The stages are stand-ins (shell scripts that write a shard's
# report), so no build is needed: what is measured is status itself (one squeue, the record, the
# outputs, the logs).
#   benches/slurm_status.sh [TASKS] [RUNS]
# Needs root, slurm-wlm and munge; only one cluster can run on a machine at a time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tasks=${1:-8} runs=${2:-10}
work=$(mktemp -d /tmp/slurm-status.XXXXXX)
cluster=$work/cluster
trap '"$root/slurm/local-cluster.sh" down "$cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
LOCAL_CLUSTER_MIN_JOB_AGE=600 "$root/slurm/local-cluster.sh" up "$cluster" >/dev/null
export SLURM_CONF=$cluster/slurm.conf

# Stand-ins for the stage binaries: a shard writes its report, a merge its summary.json.
mkdir -p "$work/bin" "$work/photos"
cat >"$work/bin/stage" <<'EOF'
#!/usr/bin/env bash
while [ $# -gt 0 ]; do case $1 in --output) out=$2; shift ;; --shard) shard=$2; shift ;; --merge) merge=1 ;; esac; shift; done
parts=$out/parts; [[ $(basename "$0") != dedupe ]] || parts=$out/crops/parts
mkdir -p "$parts"
if [ -n "${merge-}" ]; then echo '{}' >"$out/summary.json"; exit 0; fi
echo '{}' >"$parts/shard-${shard%/*}-of-${shard#*/}.json"
echo "$(basename "$0"): shard $shard done"
EOF
chmod +x "$work/bin/stage"
for b in crop faces dedupe train cifar-eval report; do ln -s stage "$work/bin/$b"; done
touch "$work/photos/a.jpg"
out=$work/out
BIN=$work/bin CONFIG=$root/configs/paper.toml OUT=$out IMAGENET_DIR=$work/photos FACES_DIR=$work/photos \
    LSUN_DIR=$work/photos CIFAR_DIR="" SHARDS=$tasks CPUS_PER_TASK=1 MEM_PER_TASK="" EXTRA_SBATCH=--hold \
    "$root/slurm/submit" preprocess 2>"$work/submitted"
array() { awk -v n="$1-shards" '$1 == n { print $2 }' "$work/submitted"; }
# Half the tasks of each stage run; crop's next one is cancelled before it starts.
for stage in crop faces dedupe; do
    scontrol release "$(array "$stage")_[0-$((tasks / 2 - 1))]"
done
for _ in $(seq 600); do
    [ "$(find "$out" -name 'shard-*.json' | wc -l)" -lt $((3 * (tasks / 2))) ] || break
    sleep 0.1
done
scancel "$(array crop)_$((tasks / 2))"

"$root/slurm/submit" status "$out" >"$work/status.txt"
cat "$work/status.txt"
TIMEFORMAT='%R %U %S'
for _ in $(seq "$runs"); do
    { time "$root/slurm/submit" status "$out" >/dev/null; } 2>>"$work/times"
done
sort -n "$work/times" | awk -v runs="$runs" -v tasks="$tasks" '
    { wall[NR] = $1; cpu += $2 + $3 }
    END { printf "slurm_status: 3 stages x %d tasks: status took %.3f s (median of %d; max %.3f s), %.3f s CPU per call\n", tasks, wall[int((NR + 1) / 2)], runs, wall[NR], cpu / NR }'
