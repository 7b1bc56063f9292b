#!/usr/bin/env bash
# make preprocess under a one-node Slurm cluster (slurm/local-cluster.sh + slurm/submit preprocess)
# against the same stages run directly, as make preprocess runs them: wall times, their ratio, and
# whether the outputs are byte-identical (packed crops, manifests, labels, classes).
#
#   benches/slurm_vs_plain.sh IMAGENET_DIR FACES_DIR [SHARDS]
#   (docs/cluster.md: Tiny ImageNet's tarball and ../shared/data/faces/portraits, 2 shards)
# Needs root, slurm-wlm and munge, and a release build (make build; BIN= another folder of the
# binaries). Writes under a temporary folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
imagenet=$(realpath "$1") faces=$(realpath "$2") shards=${3:-2}
bin=$(realpath "${BIN:-$root/target/release}")
work=$(mktemp -d /tmp/slurm-vs-plain.XXXXXX)
cluster=$work/cluster
trap '"$root/slurm/local-cluster.sh" down "$cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
LOCAL_CLUSTER_MIN_JOB_AGE=600 "$root/slurm/local-cluster.sh" up "$cluster" >/dev/null
export SLURM_CONF=$cluster/slurm.conf

now() { date +%s.%N; }
# Plain: what make preprocess runs (faces, crop, report), one after the other.
t0=$(now)
"$bin/faces" --config "$root/configs/paper.toml" --input "$faces" --output "$work/plain/faces" 2>/dev/null || [ $? -eq 3 ]
"$bin/crop" --config "$root/configs/paper.toml" --input "$imagenet" --output "$work/plain/imagenet32" 2>/dev/null || [ $? -eq 3 ]
"$bin/report" --run "$work/plain" >/dev/null 2>&1
t1=$(now)

# Slurm: the same through the job scripts; the clock stops when the report job has ended.
jobs=$(BIN=$bin IMAGENET_DIR=$imagenet FACES_DIR=$faces LSUN_DIR="" OUT=$work/slurm SHARDS=$shards CPUS_PER_TASK=1 \
    MEM_PER_TASK="" "$root/slurm/submit" preprocess 2>&1)
report=$(awk '$1 == "report" {print $2}' <<<"$jobs")
until scontrol show job -o "$report" | grep -qE 'JobState=(COMPLETED|FAILED|CANCELLED)'; do sleep 0.2; done
t2=$(now)
failed=$(for j in $(awk '$2 ~ /^[0-9]+$/ {print $2}' <<<"$jobs"); do scontrol show job -o "$j"; done | grep -oE 'JobState=[A-Z_]+' | sort | uniq -c | tr '\n' ' ')

same=yes
for stage in faces imagenet32; do
    for f in $(cd "$work/plain/$stage" && ls images-*.npy manifest.jsonl labels.npy classes.jsonl); do
        cmp -s "$work/plain/$stage/$f" "$work/slurm/$stage/$f" || { same=no; echo "differs: $stage/$f"; }
    done
done
printf 'plain (faces, crop, report):  %.1f s\n' "$(echo "$t1 - $t0" | bc)"
printf 'slurm (%s shards, merges, report): %.1f s  (job states: %s)\n' "$shards" "$(echo "$t2 - $t1" | bc)" "$failed"
printf 'slurm / plain: %.2f; outputs byte-identical: %s\n' "$(echo "($t2 - $t1) / ($t1 - $t0)" | bc -l)" "$same"
rm -rf "$work/plain" "$work/slurm"
