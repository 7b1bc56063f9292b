#!/usr/bin/env bash
# Where the run in OUT stands (`slurm/submit status OUT` calls this): per stage, the tasks done,
# running, pending (with Slurm's reason) and failed (with their log's last line), the merge, the
# report, train and cifar-eval, then what to do next.
#   slurm/status.sh OUT
#
# Works with accounting off: the jobs come from OUT/slurm-logs/submitted.tsv, their states from one
# squeue (pending and running, and those slurmctld still keeps after they ended), what finished
# from the outputs (a shard's report, a merge's summary.json), why a job failed from its log; sacct,
# where accounting is on, adds the final state of the jobs that ended (FAILED, TIMEOUT, CANCELLED...).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
OUT=$1
# shellcheck source=lib.sh
. "$root/slurm/lib.sh"
logs=$OUT/slurm-logs
record=$logs/submitted.tsv
[ -f "$record" ] || die "$record: no submission recorded for $OUT (slurm/submit preprocess, train or all write it)"
read_record "$record"
read_queue all

# The final states of the recorded jobs from sacct, where accounting is on: into q_state for the
# jobs squeue no longer knows.
accounting="accounting off: states from squeue, the outputs and the logs"
job_ids=$(printf '%s\n' "${rec_id[@]}" | sort -u | paste -sd,)
if command -v sacct >/dev/null && sacct_out=$(timeout 5 sacct -n -P -X -j "$job_ids" -o JobID,State 2>/dev/null); then
    accounting="states from squeue and sacct"
    while IFS='|' read -r id state; do
        [[ $id =~ ^[0-9]+(_[0-9]+)?$ ]] && [ -z "${q_state[$id]-}" ] && q_state[$id]=${state%% *}
    done <<<"$sacct_out"
fi
echo "status of $OUT (${rec_header[${#rec_header[@]} - 1]%%, settings*}; $accounting)"

next=()      # what to do, one line each
pending_ok=0 # jobs still queued that can run
# " (STATE)" of a job that ended, where known and other than FAILED.
ended() { local s=${q_state[$1]-}; [ -z "$s" ] || [ "$s" = FAILED ] || queued_now "$1" || echo " ($s)"; }
why() { [ -n "${q_reason[$1]-}" ] && [ "${q_reason[$1]}" != None ] && echo " ${q_reason[$1]}"; }
# Reasons that never clear by waiting: the job must be cancelled and submitted otherwise.
stuck() {
    case ${q_reason[$1]-} in
        PartitionTimeLimit | PartitionConfig | PartitionNodeLimit | ReqNodeNotAvail* | InvalidAccount | InvalidQOS | *MaxWallDuration* | BadConstraints | DependencyNeverSatisfied) return 0 ;;
        *) return 1 ;;
    esac
}

# stage_status STAGE: its tasks over every array recorded for it (with the last one's shards).
stage_status() {
    local stage=$1 last shards output i t array id
    last=$(records_of "$stage-shards" | tail -n 1)
    [ -n "$last" ] || return 0
    recorded_command "$last"
    shards=${command[2]} output=${command[5]}
    local arrays=()
    for i in $(records_of "$stage-shards"); do
        recorded_command "$i"
        [ "${command[2]}" != "$shards" ] || [ "${command[5]}" != "$output" ] || arrays+=("${rec_id[i]}")
    done
    local done_n=0 running=() pending=() failed=() lines=() stuck_seen="" reason shown=()
    declare -A by_reason=()
    for ((t = 0; t < shards; t++)); do
        if shard_done "$stage" "$output" "$t" "$shards"; then done_n=$((done_n + 1)); continue; fi
        id=""
        for array in "${arrays[@]}"; do queued_now "${array}_$t" && id=${array}_$t; done
        if [ -n "$id" ]; then
            if [ "${q_state[$id]}" = PENDING ]; then
                pending+=("$t")
                by_reason[${q_reason[$id]-}]+=" $t"
                if stuck "$id"; then stuck_seen="$id ${q_reason[$id]}"; else pending_ok=$((pending_ok + 1)); fi
            else
                running+=("$t")
                pending_ok=$((pending_ok + 1))
            fi
            continue
        fi
        failed+=("$t")
        # The latest array that held it: its log, and its state where known.
        local ran="" state="" log=""
        for array in "${arrays[@]}"; do
            if [ -f "$logs/$stage-${array}_$t.out" ] || in_array "$t" "${rec_tasks[$array]-}"; then ran=${array}_$t; fi
        done
        [ -z "$ran" ] || { state=$(task_state "$t" "${ran%_*}"); log=$logs/$stage-$ran.out; }
        if [ -z "$ran" ]; then
            lines+=("  task $t: not in any array of the record")
        elif [ -f "$log" ]; then
            lines+=("  task $t failed (job $ran${state:+, $state}): $(log_tail "$log")")
        else
            lines+=("  task $t did not start (job $ran${state:+, $state}; no log: cancelled while pending?)")
        fi
    done
    local summary="$stage: $shards tasks: $done_n done, ${#running[@]} running${running[*]:+ (${running[*]})}"
    for reason in "${!by_reason[@]}"; do shown+=("$reason:${by_reason[$reason]}"); done
    local joined
    joined=$(IFS=';'; echo "${shown[*]}")
    summary+=", ${#pending[@]} pending${shown[*]:+ (${joined//;/; })}"
    summary+=", ${#failed[@]} failed${failed[*]:+ ($(IFS=' '; echo "${failed[*]}"))}"
    echo "$summary"
    [ ${#lines[@]} -le 10 ] || lines=("${lines[@]:0:10}" "  ... and $((${#lines[@]} - 10)) more failed tasks (logs in $logs)")
    [ ${#lines[@]} -eq 0 ] || printf '%s\n' "${lines[@]}"
    merge_status "$stage" "$output" "${#failed[@]}" "$stuck_seen"
}

# merge_status STAGE OUTPUT FAILED_TASKS STUCK: the stage's latest merge, and what to do.
merge_status() {
    local stage=$1 output=$2 failures=$3 stuck_task=$4 i id state
    i=$(records_of "$stage-merge" | tail -n 1)
    [ -n "$i" ] || return 0
    id=${rec_id[i]}
    if queued_now "$id"; then
        state=${q_state[$id]}
        if never_starts "$id" || { [ "$failures" -gt 0 ] && [ "$state" = PENDING ]; }; then
            echo "  merge (job $id): ${state,,}$(why "$id"): can never start, a task it waits for failed"
            failures=$((failures + 1))
        else
            echo "  merge (job $id): ${state,,}$(why "$id")"
            pending_ok=$((pending_ok + 1))
        fi
    elif merge_succeeded "$stage" "$output"; then
        echo "  merge (job $id): done ($output/summary.json)"
    elif [ -f "$logs/$stage-merge-$id.out" ]; then
        echo "  merge (job $id): failed$(ended "$id"): $(log_tail "$logs/$stage-merge-$id.out")"
        failures=$((failures + 1))
    else
        echo "  merge (job $id): did not run$(ended "$id")"
        failures=$((failures + 1))
    fi
    if [ -n "$stuck_task" ]; then
        next+=("${stuck_task%% *} pends for ever (${stuck_task#* }): cancel the run (scancel $(queued_jobs)), fix slurm/site.conf, submit again")
    elif [ "$failures" -gt 0 ] || never_starts "$id"; then
        next+=("OUT=$OUT slurm/submit resubmit $stage")
    fi
}

# The recorded jobs still queued (arrays by their id), for one scancel.
queued_jobs() {
    local key
    declare -A seen=()
    for key in "${!q_state[@]}"; do queued_now "$key" && seen[${key%%_*}]=1; done
    for key in $(printf '%s\n' "${rec_id[@]}" | sort -n -u); do [ -z "${seen[$key]-}" ] || echo "$key"; done | paste -sd' '
}

# job_status NAME: the latest job NAME (report, train, cifar-eval), queued or how it ended.
job_status() {
    local name=$1 i id log
    i=$(records_of "$name" | tail -n 1)
    [ -n "$i" ] || return 0
    id=${rec_id[i]} log=$logs/$name-${rec_id[i]}.out
    if queued_now "$id"; then
        if never_starts "$id"; then
            echo "$name (job $id): can never start: a job it waits for failed$(why "$id")"
        else
            echo "$name (job $id): ${q_state[$id],,}$(why "$id")"
            pending_ok=$((pending_ok + 1))
        fi
    elif [ "$name" = report ] && [[ $(log_tail "$log") == 'report: '*'report.html ('* ]]; then
        echo "report (job $id): written: $OUT/report.html"
    elif [ -f "$log" ]; then
        if [ "$name" = report ]; then
            echo "report (job $id): failed$(ended "$id"): $(log_tail "$log")"
        else
            echo "$name (job $id): ended${q_state[$id]:+ ${q_state[$id]}}: $(log_tail "$log")"
        fi
        if [ "$name" = report ] && [[ $(log_tail "$log") != 'report: not written'* ]]; then
            recorded_command "$i"
            next+=("the report failed: ${command[1]} --run $OUT")
        fi
    else
        echo "$name (job $id): did not run$(ended "$id")"
    fi
}

for stage in crop faces dedupe; do stage_status "$stage"; done
for name in report train cifar-eval; do job_status "$name"; done
if [ ${#next[@]} -gt 0 ]; then
    printf 'next: %s\n' "${next[@]}"
elif [ "$pending_ok" -gt 0 ]; then
    echo "next: nothing to do: $pending_ok job(s) still queued or running"
else
    echo "next: nothing to do: the run has finished"
fi
