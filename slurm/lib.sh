# shellcheck shell=bash disable=SC2154
# (SC2154: $logs, $record and $dry are set by the script that sources this.)
# What slurm/submit, slurm/resubmit.sh and slurm/status.sh share, sourced by each: a run's recorded
# settings, the sbatch options of a job, the checks against the cluster (nodes and time limits),
# submitting with a record, the record read back, and whether a stage's shards and merge finished
# (from their outputs). The settings (site.conf's variables and the paths) are globals: they are
# what a run is, loaded once by the script that sources this (from site.conf and the environment
# for a new submission, from OUT/slurm-logs for a recorded one).

die() { echo "submit: error: $*" >&2; exit 1; }
warn() { echo "submit: warning: $*" >&2; }
last_line() { printf '%s\n' "$1" | sed '/^[[:space:]]*$/d' | tail -n 1 | sed 's/^sbatch: //; s/^sinfo: //; s/^scontrol: //; s/^error: //; s/^fatal: //'; }

# ---- A run's settings, recorded with it (OUT/slurm-logs/settings-*.sh) and read back by resubmit.

SETTINGS=(PARTITION GPU_PARTITION ACCOUNT GPU_GRES SHARDS CPUS_PER_TASK MEM_PER_TASK TIME_SHARD TIME_MERGE
    TIME_REPORT TIME_TRAIN TIME_EVAL EXTRA_SBATCH CHECK_NODES RUN_NAME CONFIG BIN OUT IMAGENET_DIR FACES_DIR
    LSUN_DIR CIFAR_DIR)

# Writes every setting to FILE as shell assignments (atomically: a temporary, then a rename).
write_settings() {
    local file=$1 name
    {
        echo "# The settings slurm/submit used for this run; slurm/submit resubmit reads them back."
        for name in "${SETTINGS[@]}"; do printf '%s=%q\n' "$name" "${!name-}"; done
    } >"$file.tmp" && mv "$file.tmp" "$file"
}

# The settings the environment sets otherwise than FILE records, as "NAME=value" words (ignored).
differing_environment() {
    local file=$1 name line recorded=()
    declare -A in_file=()
    while IFS= read -r line; do
        [[ $line =~ ^([A-Z_]+)=(.*)$ ]] && in_file[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
    done <"$file"
    for name in "${SETTINGS[@]}"; do
        [ -n "${!name+set}" ] || continue
        [ "$(printf '%q' "${!name}")" = "${in_file[$name]-}" ] || recorded+=("$name=${!name}")
    done
    echo "${recorded[*]}"
}

# The run's short name for job names: RUN_NAME, else the last folder of OUT.
run_name() {
    local name=${RUN_NAME:-$(basename "$OUT")}
    name=${name//[^A-Za-z0-9_.+-]/_}
    echo "${name:0:20}"
}

# ---- The sbatch options of a job.

gpu_partition() { echo "${GPU_PARTITION:-$PARTITION}"; }
is_gpu_job() { case $1 in dedupe-merge | train | cifar-eval) return 0 ;; *) return 1 ;; esac; }

# The variable holding the time limit of job NAME.
time_variable() {
    case $1 in
        *-shards) echo TIME_SHARD ;;
        *-merge) echo TIME_MERGE ;;
        train) echo TIME_TRAIN ;;
        cifar-eval) echo TIME_EVAL ;;
        *) echo TIME_REPORT ;;
    esac
}

# The sbatch options of the job NAME (crop-shards, crop-merge, report, train, cifar-eval, ...) into $opts.
job_options() {
    local name=$1 time_var
    opts=(--parsable)
    [ -n "$ACCOUNT" ] && opts+=(--account="$ACCOUNT")
    # shellcheck disable=SC2206
    [ -n "$EXTRA_SBATCH" ] && opts+=($EXTRA_SBATCH)
    if is_gpu_job "$name"; then
        [ -n "$(gpu_partition)" ] && opts+=(--partition="$(gpu_partition)")
        [ -n "$GPU_GRES" ] && opts+=(--gres="$GPU_GRES")
    else
        [ -n "$PARTITION" ] && opts+=(--partition="$PARTITION")
    fi
    [ -n "$CPUS_PER_TASK" ] && opts+=(--cpus-per-task="$CPUS_PER_TASK")
    [ -n "$MEM_PER_TASK" ] && opts+=(--mem="$MEM_PER_TASK")
    time_var=$(time_variable "$name")
    opts+=(--job-name="$(run_name)-${name%-shards}")
    # Empty: the partition's DefaultTime.
    [ -z "${!time_var-}" ] || opts+=(--time="${!time_var}")
    if [[ $name == *-shards ]]; then
        opts+=(--output="$logs/${name%-shards}-%A_%a.out")
    else
        opts+=(--output="$logs/$name-%j.out")
    fi
}

# ---- The checks against the cluster, before any sbatch.

# MEM_PER_TASK in MB (Slurm's unit without a suffix); nothing when it is not a plain size.
mem_mb() {
    local m=${1^^}
    [[ $m =~ ^([0-9]+)([KMGT]?)B?$ ]] || return 0
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]} in
        K) echo $((n / 1024)) ;;
        G) echo $((n * 1024)) ;;
        T) echo $((n * 1024 * 1024)) ;;
        *) echo "$n" ;;
    esac
}

# A Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in seconds; nothing for none or
# unlimited; "bad" when it is not a time.
slurm_seconds() {
    local t=$1 days=0 a b c
    case ${t^^} in "" | NONE | UNLIMITED | INFINITE | N/A) return 0 ;; esac
    if [[ $t =~ ^([0-9]+)-(.*)$ ]]; then
        days=$((10#${BASH_REMATCH[1]}))
        t=${BASH_REMATCH[2]}
        IFS=: read -r a b c <<<"$t"
        [[ $a =~ ^[0-9]+$ && ${b:-0} =~ ^[0-9]+$ && ${c:-0} =~ ^[0-9]+$ ]] || { echo bad; return 0; }
        echo $((days * 86400 + 10#$a * 3600 + 10#${b:-0} * 60 + 10#${c:-0}))
        return 0
    fi
    IFS=: read -r a b c <<<"$t"
    [[ $a =~ ^[0-9]+$ && ${b:-0} =~ ^[0-9]+$ && ${c:-0} =~ ^[0-9]+$ ]] || { echo bad; return 0; }
    if [ -n "$c" ]; then echo $((10#$a * 3600 + 10#$b * 60 + 10#$c))
    elif [ -n "$b" ]; then echo $((10#$a * 60 + 10#$b))
    else echo $((10#$a * 60)); fi
}

# Checks the jobs of one kind (cpu or gpu) against the nodes of their partition: prints a one-line
# reason and returns 1 when no node can run them (they would pend forever, Reason=PartitionConfig).
check_nodes() {
    local kind=$1 nodes=$2 partition cpus=${CPUS_PER_TASK:-1} mb gpus=0 gpu_type="" shown line
    mb=$(mem_mb "${MEM_PER_TASK:-0}")
    if [ "$kind" = gpu ]; then
        partition=$(gpu_partition)
        if [[ $GPU_GRES =~ ^gpu(:([A-Za-z][^:]*))?(:([0-9]+))?$ ]]; then
            gpu_type=${BASH_REMATCH[2]}
            gpus=${BASH_REMATCH[4]:-1}
        fi
    else
        partition=$PARTITION
    fi
    # "NODES CPUS MB GPUS FITS": how many nodes the partition has, the most of each resource on one
    # node, and how many nodes have all that is asked for at once.
    line=$(awk -F'|' -v part="$partition" -v c="$cpus" -v m="${mb:-0}" -v g="$gpus" -v t="$gpu_type" '
        {
            p = $1; dflt = sub(/\*$/, "", p)
            if (part != "" ? p != part : !dflt) next
            n++; have = 0
            k = split($5, items, ",")
            for (i = 1; i <= k; i++) {
                item = items[i]; sub(/\(.*/, "", item)
                f = split(item, x, ":")
                if (x[1] != "gpu") continue
                type = ""; count = 1
                if (f == 2) { if (x[2] ~ /^[0-9]+$/) count = x[2]; else type = x[2] }
                if (f >= 3) { type = x[2]; count = x[3] }
                if (t == "" || t == type) have += count
            }
            if ($3 + 0 > mc) mc = $3 + 0
            if ($4 + 0 > mm) mm = $4 + 0
            if (have > mg) mg = have
            if ($3 + 0 >= c && (m == 0 || $4 + 0 >= m) && have >= g) fits++
        }
        END { printf "%d %d %d %d %d\n", n, mc, mm, mg, fits }' <<<"$nodes")
    local n max_cpus max_mb max_gpus fits
    read -r n max_cpus max_mb max_gpus fits <<<"$line"
    if [ -n "$partition" ]; then
        shown="partition $partition"
    else
        shown="the default partition, $(awk -F'|' '$1 ~ /[*]$/ { sub(/[*]$/, "", $1); print $1; exit }' <<<"$nodes")"
    fi
    if [ "$n" -eq 0 ]; then
        local names
        names=$(awk -F'|' '{ sub(/[*]$/, "", $1); print $1 }' <<<"$nodes" | sort -u | tr '\n' ' ')
        if [ -n "$partition" ]; then
            echo "the cluster has no $shown (PARTITION/GPU_PARTITION in slurm/site.conf; it has: ${names% }); nothing was submitted"
        else
            echo "no PARTITION in slurm/site.conf and the cluster has no default partition (it has: ${names% }); nothing was submitted"
        fi
        return 1
    fi
    [ "$fits" -gt 0 ] && return 0
    local why=()
    [ "$cpus" -gt "$max_cpus" ] && why+=("CPUS_PER_TASK=$cpus but its largest node has $max_cpus CPUs")
    [ -n "$mb" ] && [ "$mb" -gt "$max_mb" ] && why+=("MEM_PER_TASK=$MEM_PER_TASK ($mb MB) but its largest node has $max_mb MB")
    [ "$gpus" -gt "$max_gpus" ] && why+=("GPU_GRES=$GPU_GRES asks for $gpus GPU(s)${gpu_type:+ of type $gpu_type} but its largest node has $max_gpus")
    [ ${#why[@]} -gt 0 ] || why=("no single node has CPUS_PER_TASK=$cpus, MEM_PER_TASK=${MEM_PER_TASK:-0} and $gpus GPUs at once (largest: $max_cpus CPUs, $max_mb MB, $max_gpus GPUs)")
    local joined
    joined=$(printf '%s; ' "${why[@]}")
    echo "the ${kind^^} jobs could never start on $shown: ${joined%; }; nothing was submitted (set these in slurm/site.conf or the environment)"
    return 1
}

# Checks the time limit of job NAME against its partition's MaxTime (scontrol's one-line view in
# $3): a longer job would pend for ever (Reason=PartitionTimeLimit). Prints the reason, returns 1.
check_time() {
    local name=$1 partitions=$2 partition variable asked limit line max_time default_time
    variable=$(time_variable "$name")
    asked=${!variable-}
    [ -n "$asked" ] || return 0 # the partition's DefaultTime, within its MaxTime
    if is_gpu_job "$name"; then partition=$(gpu_partition); else partition=$PARTITION; fi
    if [ -n "$partition" ]; then
        line=$(grep -E "(^| )PartitionName=$partition( |$)" <<<"$partitions" | head -n 1)
    else
        line=$(grep -E '(^| )Default=YES( |$)' <<<"$partitions" | head -n 1)
        partition=$(sed -n 's/.*PartitionName=\([^ ]*\).*/\1/p' <<<"$line")
    fi
    [ -n "$line" ] || return 0 # no such partition: check_nodes says so
    max_time=$(sed -n 's/.* MaxTime=\([^ ]*\).*/\1/p' <<<" $line")
    default_time=$(sed -n 's/.* DefaultTime=\([^ ]*\).*/\1/p' <<<" $line")
    limit=$(slurm_seconds "$max_time")
    local seconds
    seconds=$(slurm_seconds "$asked")
    if [ "$seconds" = bad ]; then
        echo "$variable=$asked is not a Slurm time (HH:MM:SS, D-HH:MM:SS or minutes); nothing was submitted"
        return 1
    fi
    [ -n "$limit" ] && [ "$limit" != bad ] && [ "$seconds" -gt "$limit" ] || return 0
    local hint="set $variable to at most $max_time in slurm/site.conf or the environment"
    [ "$variable" != TIME_TRAIN ] || hint+=" (train checkpoints before its limit and is requeued: it resumes)"
    [[ ${default_time^^} == NONE || -z $default_time ]] || hint+=", or empty for the partition's DefaultTime=$default_time"
    echo "$name asks for $variable=$asked but partition $partition allows at most MaxTime=$max_time: it would pend for ever (Reason=PartitionTimeLimit); nothing was submitted ($hint)"
    return 1
}

# Refuses, before anything is submitted, the jobs NAME... that no node of their partition could
# run or whose time limit their partition does not allow. Skipped in a dry run and with CHECK_NODES=0.
check_cluster() {
    [ -n "$dry" ] && return 0
    [ "${CHECK_NODES:-1}" != 0 ] || return 0
    local nodes partitions name reason failed="" cpu="" gpu=""
    if ! nodes=$(sinfo -h -N -o '%P|%N|%c|%m|%G' 2>&1) || ! partitions=$(scontrol show partition -o 2>&1); then
        die "cannot read the cluster's nodes with sinfo: $(last_line "$nodes"$'\n'"${partitions-}"); nothing was submitted (is Slurm reachable from here? SLURM_CONF=${SLURM_CONF-})"
    fi
    for name in "$@"; do if is_gpu_job "$name"; then gpu=1; else cpu=1; fi; done
    for kind in ${cpu:+cpu} ${gpu:+gpu}; do
        if ! reason=$(check_nodes "$kind" "$nodes"); then
            echo "submit: error: $reason" >&2
            failed=1
        fi
    done
    if [ -z "$failed" ]; then
        for name in "$@"; do
            if ! reason=$(check_time "$name" "$partitions"); then
                echo "submit: error: $reason" >&2
                failed=1
                break
            fi
        done
    fi
    [ -z "$failed" ] || exit 1
}

# ---- Submitting, recording, and stopping at the first failure. Needs $record, $logs and $dry.

job=""
fake=1000
queued=() # "NAME ID" of every job this run queued
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT

# Cancels what this run queued (the jobs that depend on others first) and exits.
abandon() {
    [ ${#queued[@]} -gt 0 ] || { echo "submit: nothing was queued" >&2; exit 1; }
    local ids=() i
    for ((i = ${#queued[@]} - 1; i >= 0; i--)); do ids+=("${queued[i]#* }"); done
    if scancel "${ids[@]}" 2>"$errors"; then
        echo "submit: cancelled what this run had queued: $(IFS=,; echo "${queued[*]}")" >&2
    else
        echo "submit: these jobs of this run are still queued (scancel failed: $(last_line "$(cat "$errors")")): $(IFS=,; echo "${queued[*]}"); scancel ${ids[*]}" >&2
    fi
    exit 1
}

# submit NAME [SBATCH_OPTION ...] -- SCRIPT [ARG ...]: submits with NAME's options, prints
# "NAME JOBID", leaves the id in $job and records the job. A failed sbatch ends the run.
submit() {
    local name=$1 extra=() out
    shift
    while [ "$1" != -- ]; do extra+=("$1"); shift; done
    shift
    job_options "$name"
    if [ -n "$dry" ]; then
        job=$((fake++))
        printf 'sbatch'; printf ' %q' "${opts[@]}" "${extra[@]}" "$@"; printf '\n'
    else
        if ! out=$(sbatch "${opts[@]}" "${extra[@]}" "$@" 2>"$errors"); then
            echo "submit: error: sbatch failed for $name: $(last_line "$(cat "$errors")")" >&2
            abandon
        fi
        cat "$errors" >&2
        job=${out%%;*}
        if ! [[ $job =~ ^[0-9]+$ ]]; then
            echo "submit: error: sbatch gave no job id for $name: $(last_line "$out")" >&2
            abandon
        fi
        { printf '%s\t%s' "$name" "$job"; printf '\t%s' "$@"; printf '\n'; } >>"$record"
        # Which tasks an array holds (squeue forgets it once the array ended unstarted).
        local option
        for option in "${extra[@]}"; do
            [[ $option != --array=* ]] || printf '# tasks %s %s\n' "$job" "${option#--array=}" >>"$record"
        done
    fi
    queued+=("$name $job")
    echo "$name $job" >&2
}

# Starts a submission in the record: "# slurm/submit WHAT, DATE, settings FILE".
record_header() {
    [ -n "$dry" ] || printf '# slurm/submit %s, %s, settings %s\n' "$1" "$(date -u +%FT%TZ)" "$2" >>"$record"
}

summary() {
    if [ -n "$dry" ]; then
        echo "submit: dry run: nothing was checked or submitted" >&2
    elif [ ${#queued[@]} -eq 0 ]; then
        echo "submit: nothing to submit" >&2
    else
        echo "submit: ${#queued[@]} jobs queued ($(IFS=,; echo "${queued[*]}")); logs in $logs; slurm/submit status $OUT" >&2
    fi
}

# ---- The record read back: OUT/slurm-logs/submitted.tsv.

# Every job line in order: rec_name[i], rec_id[i], rec_settings[i] (the settings file of the
# submission it belongs to, or nothing for a record older than them), rec_line[i] (the whole line).
read_record() {
    local file=$1 line settings=""
    rec_name=() rec_id=() rec_settings=() rec_line=() rec_header=() rec_tasks=()
    while IFS= read -r line; do
        if [[ $line =~ ^'# tasks '([0-9]+)' '(.*)$ ]]; then
            rec_tasks[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
            continue
        fi
        if [[ $line == '# slurm/submit '* ]]; then
            settings=""
            [[ $line == *', settings '* ]] && settings=${line##*, settings }
            rec_header+=("${line#\# }")
            continue
        fi
        [[ -z $line || $line == '#'* ]] && continue
        rec_name+=("${line%%$'\t'*}")
        local rest=${line#*$'\t'}
        rec_id+=("${rest%%$'\t'*}")
        rec_settings+=("$settings")
        rec_line+=("$line")
    done <"$file"
}

declare -A rec_tasks=()

# Whether task T is in the array list SPEC (0-15, 1,4-6); an unrecorded SPEC holds every task.
in_array() {
    local t=$1 spec=${2-} range
    [ -n "$spec" ] || return 0
    spec=${spec%%%*}
    IFS=, read -r -a ranges <<<"$spec"
    for range in "${ranges[@]}"; do
        if [[ $range == *-* ]]; then
            [ "$t" -ge "${range%-*}" ] && [ "$t" -le "${range#*-}" ] && return 0
        else
            [ "$t" != "$range" ] || return 0
        fi
    done
    return 1
}

# The state of task T of ARRAY: its own, else the array's (an array that ended before its tasks
# were split: squeue shows the array alone).
task_state() {
    local state=${q_state[${2}_$1]-}
    if [ -z "$state" ] && [ -n "${q_state[$2]-}" ] && in_array "$1" "${rec_tasks[$2]-}"; then state=${q_state[$2]}; fi
    echo "$state"
}

# The script and arguments of record line I, into $command.
recorded_command() {
    IFS=$'\t' read -r -a command <<<"${rec_line[$1]}"
    command=("${command[@]:2}")
}

# The indices of the records named NAME, oldest first.
records_of() {
    local i
    for i in "${!rec_name[@]}"; do [ "${rec_name[i]}" != "$1" ] || echo "$i"; done
}

declare -A q_state=() q_reason=() q_deps=()
# The queue once: q_state[ID], q_reason[ID] and q_deps[ID] for every job of the user Slurm still
# knows (ID: JOB, or ARRAY_TASK for an array's task; pending, running, and with "all" those that
# ended lately, while slurmctld keeps them: MinJobAge).
read_queue() {
    local which=${1-} id array task state reason deps
    q_state=() q_reason=() q_deps=()
    local states=()
    [ "$which" != all ] || states=(-t all)
    while IFS='|' read -r id array task state reason deps; do
        [ -n "$id" ] || continue
        if [[ $task =~ ^[0-9]+$ ]]; then id=${array}_$task; fi
        q_state[$id]=$state q_reason[$id]=$reason q_deps[$id]=$deps
    done < <(squeue -h -r "${states[@]}" -u "$(id -un)" -o '%i|%F|%K|%T|%r|%E' 2>/dev/null || true)
}

# Whether job ID (or ARRAY_TASK) is in the queue: pending, running, suspended or ending.
queued_now() {
    case ${q_state[$1]-} in PENDING | RUNNING | CONFIGURING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_HOLD | REQUEUE_FED | RESIZING | SIGNALING | STAGE_OUT) return 0 ;; *) return 1 ;; esac
}

# A queued job that can never start: a job it waits for with afterok failed.
never_starts() { [ "${q_state[$1]-}" = PENDING ] && { [ "${q_reason[$1]-}" = DependencyNeverSatisfied ] || [[ ${q_deps[$1]-} == *'(failed)'* ]]; }; }

# ---- A stage's outputs: its shards and its merge, read from the files (not from the jobs).

# The folder of a stage's parts: dedupe keeps its crop pass in OUTPUT/crops.
parts_dir() { if [ "$1" = dedupe ]; then echo "$2/crops/parts"; else echo "$2/parts"; fi; }

shard_done() { [ -f "$(parts_dir "$1" "$2")/shard-$3-of-$4.json" ]; }

# Whether STAGE's merge into OUTPUT succeeded: its summary.json is there and no shard report is
# newer (a summary of an earlier run does not count).
merge_succeeded() {
    local stage=$1 output=$2 parts
    parts=$(parts_dir "$stage" "$output")
    [ -f "$output/summary.json" ] || return 1
    [ -z "$(find "$parts" -maxdepth 1 -name 'shard-*.json' -newer "$output/summary.json" 2>/dev/null | head -n 1)" ]
}

# The last line of a log (nothing when there is none), without Slurm's padding.
log_tail() { [ -s "$1" ] && tail -n 3 "$1" | sed '/^[[:space:]]*$/d' | tail -n 1 | cut -c1-300; }
