#!/usr/bin/env bash
# Every input layout against the folder of the same photos (issue 37): the first N photos of
# Tiny ImageNet's tar.gz written as a folder, a tar of class tars (ImageNet's layout), a zip (Python's
# zipfile, deflated), Hub-style Parquet shards and WebDataset shards; then, per layout, `crop` on it
# (images/s from summary.json, wall, CPU, peak RSS from /usr/bin/time) with its crops, labels and
# classes compared byte for byte with the folder's, and the source read alone (source_layouts read).
# ROUNDS rounds, the layouts' order rotating, so the load of a shared machine falls on all alike.
#   bash benches/source_layouts.sh [N] [ROUNDS] [ARCHIVE] [DIR]   (LAYOUT_NAMES="folder zip": only those)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
rounds=${2:-2}
archive=${3:-../shared/data/tiny-imagenet-32-train.tar.gz}
dir=${4:-/tmp/source-layouts-$n}
crop=${CROP:-target/release/crop}
layouts=${LAYOUTS:-target/release/examples/source_layouts}
python=${PYTHON:-python3}
if [ ! -d "$dir/folder" ]; then
  mkdir -p "$dir"
  "$layouts" make "$archive" "$n" "$dir"
  (cd "$dir/folder" && "$python" -c '
import pathlib, zipfile
with zipfile.ZipFile("../train.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path(".").rglob("*"), key=lambda p: p.parts):
        if p.is_file():
            z.write(p, str(p))
')
fi
wds_last=$(printf '%06d' $(( $(ls "$dir/wds" | wc -l) - 1 )))
declare -A input=(
  [folder]="$dir/folder" [tar-of-tars]="$dir/train.tar" [zip]="$dir/train.zip"
  [parquet]="$dir/parquet" [webdataset]="$dir/wds/train-{000000..$wds_last}.tar"
)
names=(${LAYOUT_NAMES:-folder tar-of-tars zip parquet webdataset})
echo "layout round images/s wall_s cpu_s images_per_cpu_s peak_rss_MiB same_as_folder | read alone"
for round in $(seq "$rounds"); do
  for k in "${!names[@]}"; do
    name=${names[$(( (k + round - 1) % ${#names[@]} ))]}
    out="$dir/out-$name"
    rm -rf "$out"
    /usr/bin/time -f '%e %U %S %M' -o "$dir/time-$name" "$crop" -i "${input[$name]}" -o "$out" \
      --set crop.part_size=50000 >/dev/null 2>"$dir/log-$name" || true
    read -r wall user sys rss <"$dir/time-$name"
    rate=$("$python" -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["timings"]["last_run_records_per_s"]))' "$out/summary.json")
    same=yes
    for f in $(cd "$dir/out-folder" 2>/dev/null && ls images-*.npy labels.npy classes.jsonl); do
      cmp -s "$dir/out-folder/$f" "$out/$f" || same=no
    done
    [ -d "$dir/out-folder" ] || same=n/a
    readonly_line=$(/usr/bin/time -f '%U+%S s CPU, %M KiB' "$layouts" read "${input[$name]}" 2>&1 | tr '\n' ' ')
    cpu=$(echo "$user + $sys" | bc)
    echo "$name $round $rate $wall $cpu $(echo "$n / $cpu" | bc) $(( rss / 1024 )) $same | $readonly_line"
  done
done
