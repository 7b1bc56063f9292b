#!/usr/bin/env bash
# After a task of STAGE failed or was cancelled: submits again what the run in OUT needs to finish
# that stage (`slurm/submit resubmit STAGE [TASKS]` calls this with its OUT).
#   slurm/resubmit.sh OUT STAGE [TASKS] [--dry-run]
#
# A merge waits for its whole array with afterok: once a task has failed or was cancelled it can
# never start (Reason=DependencyNeverSatisfied), and the report, and with `submit all` train and
# cifar-eval, wait behind it. Resubmitting replaces that chain: the tasks again (they resume from
# the parts they had finished), a merge after them and after the stage's tasks still queued, then
# the report, train and cifar-eval that were waiting. Everything comes from OUT/slurm-logs: the jobs
# of every submission of the stage (submitted.tsv), and the settings the stage was submitted with
# (settings-*.sh), never site.conf or the environment.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '4s/^# \{0,1\}//p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
OUT=$1 stage=$2
run_out=$1
shift 2
wanted="" dry=""
for arg in "$@"; do
    if [ "$arg" = --dry-run ]; then dry=1
    elif [ -z "$wanted" ] && [[ $arg =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]]; then wanted=$arg
    else usage
    fi
done
case $stage in crop | faces | dedupe) ;; *) usage ;; esac

# shellcheck source=lib.sh
. "$root/slurm/lib.sh"
logs=$OUT/slurm-logs
record=$logs/submitted.tsv
[ -f "$record" ] || die "$record: no submission recorded for OUT=$OUT (slurm/submit preprocess writes it; the same OUT= is needed)"
read_record "$record"

# The stage's history: every array recorded for it with the last one's shards and output (an
# earlier submission with another SHARDS writes other shards), oldest first, and its merges.
arrays=() stage_merges=()
last_array=$(records_of "$stage-shards" | tail -n 1)
[ -n "$last_array" ] || die "$record: no $stage array recorded (slurm/submit preprocess with its input)"
recorded_command "$last_array"
shard_command=("${command[@]}")
# stage.sbatch BINARY SHARDS CONFIG INPUT OUTPUT [--merge-queued]
shards=${shard_command[2]} output=${shard_command[5]}
for i in $(records_of "$stage-shards"); do
    recorded_command "$i"
    [ "${command[2]}" != "$shards" ] || [ "${command[5]}" != "$output" ] || arrays+=("${rec_id[i]}")
done
for i in $(records_of "$stage-merge"); do stage_merges+=("$i"); done
[ ${#stage_merges[@]} -gt 0 ] || die "$record: no $stage merge recorded (submit the stage again: slurm/submit preprocess)"

# The run's settings, as recorded, not the environment's.
settings=${rec_settings[last_array]}
if [ -n "$settings" ] && [ -f "$logs/$settings" ]; then
    ignored=$(differing_environment "$logs/$settings")
    # shellcheck disable=SC1090
    . "$logs/$settings"
    echo "submit: resubmit uses the settings recorded with the run ($logs/$settings), not the environment${ignored:+ (ignored here: $ignored)}" >&2
else
    # shellcheck source=site.conf
    . "${SITE:-$root/slurm/site.conf}"
    TIME_REPORT=${TIME_REPORT-00:30:00} RUN_NAME=${RUN_NAME-}
    warn "$record: recorded by an older slurm/submit, without its settings: using slurm/site.conf and the environment"
fi
OUT=$run_out # the record's own folder, whatever the settings say
logs=$OUT/slurm-logs
record=$logs/submitted.tsv
[ -x "${shard_command[1]}" ] || die "${shard_command[1]}: missing (the binary the first submission ran)"
read_queue

# Which tasks to submit again, into $tasks; the stage's unfinished tasks still queued into $waiting.
tasks=() waiting=()
declare -A queued_as=() # task -> the ARRAY_TASK that holds it in the queue
for array in "${arrays[@]}"; do
    for ((t = 0; t < shards; t++)); do
        ! queued_now "${array}_$t" || queued_as[$t]=${array}_$t
    done
done
for ((t = 0; t < shards; t++)); do
    [ -z "${queued_as[$t]-}" ] || shard_done "$stage" "$output" "$t" "$shards" || waiting+=("${queued_as[$t]}")
done
if [ -n "$wanted" ]; then
    while read -r t; do
        [ "$t" -lt "$shards" ] || die "task $t: $stage's array has tasks 0-$((shards - 1))"
        [ -z "${queued_as[$t]-}" ] ||
            die "task $t of $stage is still ${q_state[${queued_as[$t]}]} as ${queued_as[$t]}: scancel ${queued_as[$t]} first, or let it run"
        tasks+=("$t")
    done < <(IFS=,; for range in $wanted; do
        if [[ $range == *-* ]]; then seq "${range%-*}" "${range#*-}"; else echo "$range"; fi
    done | sort -n -u)
else
    for ((t = 0; t < shards; t++)); do
        [ -n "${queued_as[$t]-}" ] || shard_done "$stage" "$output" "$t" "$shards" || tasks+=("$t")
    done
fi

# A merge still queued that can start: nothing to replace while no task needs resubmitting.
live_merge="" stale=()
for i in "${stage_merges[@]}"; do
    id=${rec_id[i]}
    queued_now "$id" || continue
    if never_starts "$id"; then stale+=("$stage-merge $id"); else live_merge=$id; fi
done
if [ ${#tasks[@]} -eq 0 ]; then
    if [ -n "$live_merge" ]; then
        echo "submit: nothing to resubmit: every task of $stage has finished or is queued${waiting[*]:+ (${waiting[*]})}, and merge $live_merge waits for them" >&2
        exit 0
    fi
    if merge_succeeded "$stage" "$output"; then
        echo "submit: nothing to do: $stage has finished: its $shards shards and its merge succeeded ($output/summary.json)" >&2
        exit 0
    fi
fi
[ -z "$live_merge" ] || stale+=("$stage-merge $live_merge")

# What waits in vain behind the replaced merges: the reports, and train then cifar-eval when they wait for one.
latest() { records_of "$1" | tail -n 1; }
waits_for_stale() {
    local deps=${q_deps[$1]-} entry
    queued_now "$1" || return 1
    for entry in "${stale[@]}"; do [[ $deps != *":${entry#* }("* ]] || return 0; done
    return 1
}
report_i=$(latest report) train_i=$(latest train) eval_i=$(latest cifar-eval)
new_train="" new_eval=""
for i in $(records_of report); do ! waits_for_stale "${rec_id[i]}" || stale+=("report ${rec_id[i]}"); done
for i in $(records_of train); do
    if waits_for_stale "${rec_id[i]}"; then
        stale+=("train ${rec_id[i]}")
        new_train=1
    fi
done
if [ -n "$new_train" ]; then
    for i in $(records_of cifar-eval); do ! waits_for_stale "${rec_id[i]}" || { stale+=("cifar-eval ${rec_id[i]}"); new_eval=1; }; done
fi

planned=("$stage-merge")
[ ${#tasks[@]} -eq 0 ] || planned+=("$stage-shards")
[ -z "$report_i" ] || planned+=(report)
[ -z "$new_train" ] || planned+=(train)
[ -z "$new_eval" ] || planned+=(cifar-eval)
check_cluster "${planned[@]}"
[ -n "$dry" ] || mkdir -p "$logs"
record_header "resubmit $stage" "$settings"

line="submit: $stage ($shards tasks, job(s) $(IFS=,; echo "${arrays[*]}")):"
if [ ${#tasks[@]} -gt 0 ]; then
    line+=" resubmitting task(s) $(IFS=,; echo "${tasks[*]}");"
else
    line+=" no task to resubmit, but the merge did not succeed (no $output/summary.json newer than the shards) and none is queued;"
fi
[ ${#waiting[@]} -eq 0 ] || line+=" the new merge also waits for ${waiting[*]}, still queued;"
next="a new merge"
[ -z "$report_i" ] || next+=", report"
[ -z "$new_train" ] || next+=", train"
[ -z "$new_eval" ] || next+=", cifar-eval"
echo "$line then $next" >&2

after=("${waiting[@]}")
if [ ${#tasks[@]} -gt 0 ]; then
    submit "$stage-shards" --array="$(IFS=,; echo "${tasks[*]}")" -- "${shard_command[@]}"
    after+=("$job")
fi
recorded_command "${stage_merges[${#stage_merges[@]} - 1]}"
dependency=()
[ ${#after[@]} -eq 0 ] || dependency=(--dependency="afterok:$(IFS=:; echo "${after[*]}")")
submit "$stage-merge" "${dependency[@]}" -- "${command[@]}"
new_merge=$job
if [ -n "$report_i" ]; then
    # After the new merge and the other stages' merges still queued.
    merges_left=("$new_merge")
    for other in crop faces dedupe; do
        [ "$other" != "$stage" ] || continue
        for i in $(records_of "$other-merge"); do ! queued_now "${rec_id[i]}" || merges_left+=("${rec_id[i]}"); done
    done
    recorded_command "$report_i"
    submit report --dependency="afterany:$(IFS=:; echo "${merges_left[*]}")" -- "${command[@]}"
fi
if [ -n "$new_train" ]; then
    recorded_command "$train_i"
    submit train --dependency="afterok:$new_merge" -- "${command[@]}"
    if [ -n "$new_eval" ]; then
        new_train_job=$job
        recorded_command "$eval_i"
        submit cifar-eval --dependency="afterok:$new_train_job" -- "${command[@]}"
    fi
fi

# Cancels the replaced jobs, those that wait for the others first (so that the report never starts
# on an unfinished merge).
if [ ${#stale[@]} -gt 0 ]; then
    ids=()
    for ((i = ${#stale[@]} - 1; i >= 0; i--)); do ids+=("${stale[i]#* }"); done
    listed=$(IFS=,; echo "${stale[*]}")
    if [ -n "$dry" ]; then
        echo "scancel ${ids[*]}"
    elif scancel "${ids[@]}" 2>"$errors"; then
        echo "submit: cancelled the jobs that waited in vain: $listed" >&2
    else
        die "could not cancel $listed ($(last_line "$(cat "$errors")")): scancel ${ids[*]}"
    fi
fi
summary
