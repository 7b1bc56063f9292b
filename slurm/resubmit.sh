# shellcheck shell=bash disable=SC2154
# `slurm/submit resubmit STAGE [TASKS]`, sourced by slurm/submit (it uses its submit, abandon,
# check_cluster, $record, $logs, $dry and the variables from site.conf).
#
# A merge waits for its whole array with afterok: once a task has failed or was cancelled it can
# never start (Reason=DependencyNeverSatisfied), and the report (afterany on every merge), and with
# `submit all` train and cifar-eval, wait behind it. Resubmitting replaces that chain: the tasks
# again (they resume from the parts they had finished), a merge after them and after the first
# array's tasks still queued, then the report, train and cifar-eval that were waiting. The jobs come
# from OUT/slurm-logs/submitted.tsv (written by slurm/submit), the resources from site.conf now.

declare -A recorded=()   # job name -> its last record line (name, id, script, arguments; tabs)

read_record() {
    [ -f "$record" ] || die "$record: no submission recorded for OUT=$OUT (slurm/submit preprocess writes it; the same OUT= is needed)"
    local line
    while IFS= read -r line; do
        [[ -z $line || $line == '#'* ]] && continue
        recorded[${line%%$'\t'*}]=$line
    done <"$record"
}

# The id of the recorded job NAME, or nothing.
recorded_id() {
    local line=${recorded[$1]-}
    [ -n "$line" ] || return 0
    line=${line#*$'\t'}
    echo "${line%%$'\t'*}"
}

# The script and arguments of the recorded job NAME, into $command.
recorded_command() {
    local line=${recorded[$1]}
    IFS=$'\t' read -r -a command <<<"$line"
    command=("${command[@]:2}")
}

# "TASK STATE" for every task of ARRAY still in the queue (pending, running, completing...).
queued_tasks() { squeue -h -r -j "$1" -o '%K %T' 2>/dev/null || true; }

# The dependencies still to come of job ID when it is pending, else nothing.
pending_dependencies() { [ -z "$1" ] || squeue -h -j "$1" -t PENDING -o '%E' 2>/dev/null || true; }

is_pending() { [ -n "$1" ] && [ -n "$(squeue -h -j "$1" -t PENDING -o %i 2>/dev/null || true)" ]; }
is_queued() { [ -n "$1" ] && [ -n "$(squeue -h -j "$1" -o %i 2>/dev/null || true)" ]; }

# Array task list (5 or 1,4-6) -> one number a line.
expand_tasks() {
    local range
    IFS=, read -r -a ranges <<<"$1"
    for range in "${ranges[@]}"; do
        if [[ $range == *-* ]]; then seq "${range%-*}" "${range#*-}"; else echo "$range"; fi
    done
}

# Which tasks to submit again, into $tasks; the first array's tasks still queued into $waiting.
choose_tasks() {
    local stage=$1 wanted=$2 array=$3 shards=$4 output=$5 task state
    declare -A queued_state=()
    while read -r task state; do
        [ -n "$task" ] && queued_state[$task]=$state
    done < <(queued_tasks "$array")
    tasks=() waiting=()
    while read -r task; do
        [ -n "$task" ] && waiting+=("${array}_$task")
    done < <(printf '%s\n' "${!queued_state[@]}" | sort -n)
    if [ -n "$wanted" ]; then
        while read -r task; do
            [ "$task" -lt "$shards" ] || die "task $task: $stage's array has tasks 0-$((shards - 1))"
            state=${queued_state[$task]-}
            [ -z "$state" ] || die "task $task of $stage's job $array is still $state: scancel ${array}_$task first, or let it run"
            tasks+=("$task")
        done < <(expand_tasks "$wanted" | sort -n -u)
    else
        for ((task = 0; task < shards; task++)); do
            [ -z "${queued_state[$task]-}" ] || continue
            [ -f "$output/parts/shard-$task-of-$shards.json" ] || tasks+=("$task")
        done
    fi
}

resubmit() {
    local stage=$1 wanted=$2 array merge report train eval shards output
    read_record
    array=$(recorded_id "$stage-shards")
    [ -n "$array" ] || die "$record: no $stage array recorded (slurm/submit preprocess with its input)"
    recorded_command "$stage-shards"
    local shard_command=("${command[@]}")
    # stage.sbatch BINARY SHARDS CONFIG INPUT OUTPUT
    shards=${shard_command[2]} output=${shard_command[5]}
    [ -x "${shard_command[1]}" ] || die "${shard_command[1]}: missing (the binary the first submission ran)"
    merge=$(recorded_id "$stage-merge")
    [ -n "$merge" ] || die "$record: no $stage merge recorded (submit the stage again: slurm/submit preprocess)"
    choose_tasks "$stage" "$wanted" "$array" "$shards" "$output"
    if [ ${#tasks[@]} -eq 0 ] && is_queued "$merge"; then
        echo "submit: nothing to resubmit: every task of $stage's job $array has finished or is queued, and its merge $merge waits for them" >&2
        return 0
    fi

    # What waits in vain behind the merge: the report, and train then cifar-eval when they wait for it.
    local stale=() new_train=""
    report=$(recorded_id report)
    train=$(recorded_id train)
    eval=$(recorded_id cifar-eval)
    is_queued "$merge" && stale+=("$stage-merge $merge")
    [[ $(pending_dependencies "$report") == *":$merge("* ]] && stale+=("report $report")
    if [[ $(pending_dependencies "$train") == *":$merge("* ]]; then
        stale+=("train $train")
        new_train=1
        [[ $(pending_dependencies "$eval") == *":$train("* ]] && stale+=("cifar-eval $eval")
    fi

    local kinds=(cpu)
    if [ "$stage" = dedupe ] || [ -n "$new_train" ]; then kinds+=(gpu); fi
    check_cluster "${kinds[@]}"
    [ -n "$dry" ] || mkdir -p "$logs"
    [ -n "$dry" ] || printf '# slurm/submit resubmit %s, %s\n' "$stage" "$(date -u +%FT%TZ)" >>"$record"

    local line="submit: $stage (job $array, $shards tasks):"
    if [ ${#tasks[@]} -gt 0 ]; then
        line+=" resubmitting task(s) $(IFS=,; echo "${tasks[*]}");"
    else
        line+=" no task to resubmit, but merge $merge is no longer queued (it ended: see its log);"
    fi
    if [ ${#waiting[@]} -gt 0 ]; then line+=" the new merge also waits for ${waiting[*]}, still queued;"; fi
    local next="a new merge"
    [ -z "$report" ] || next+=", report"
    [ -z "$new_train" ] || next+=", train"
    [[ ${stale[*]} != *cifar-eval* ]] || next+=", cifar-eval"
    echo "$line then $next" >&2
    local after=("${waiting[@]}")
    if [ ${#tasks[@]} -gt 0 ]; then
        submit "$stage-shards" --array="$(IFS=,; echo "${tasks[*]}")" -- "${shard_command[@]}"
        after+=("$job")
    fi
    recorded_command "$stage-merge"
    local dependency=()
    [ ${#after[@]} -eq 0 ] || dependency=(--dependency="afterok:$(IFS=:; echo "${after[*]}")")
    submit "$stage-merge" "${dependency[@]}" -- "${command[@]}"
    local new_merge=$job
    if [ -n "$report" ]; then
        # After the new merge and the other stages' merges still queued.
        local merges_left=("$new_merge") other id
        for other in crop faces dedupe; do
            id=$(recorded_id "$other-merge")
            [ "$other" != "$stage" ] && is_queued "$id" && merges_left+=("$id")
        done
        recorded_command report
        submit report --dependency="afterany:$(IFS=:; echo "${merges_left[*]}")" -- "${command[@]}"
    fi
    if [ -n "$new_train" ]; then
        recorded_command train
        submit train --dependency="afterok:$new_merge" -- "${command[@]}"
        if [ ${#stale[@]} -gt 0 ] && [[ ${stale[*]} == *"cifar-eval $eval"* ]]; then
            local new_train_job=$job
            recorded_command cifar-eval
            submit cifar-eval --dependency="afterok:$new_train_job" -- "${command[@]}"
        fi
    fi
    cancel_stale "${stale[@]}"
    summary
}

# Cancels the replaced jobs, those that wait for the others first (so that the report never starts
# on an unfinished merge).
cancel_stale() {
    [ $# -gt 0 ] || return 0
    local jobs=("$@") ids=() i listed
    for ((i = ${#jobs[@]} - 1; i >= 0; i--)); do ids+=("${jobs[i]#* }"); done
    listed=$(IFS=,; echo "$*")
    if [ -n "$dry" ]; then
        echo "scancel ${ids[*]}"
    elif scancel "${ids[@]}" 2>"$errors"; then
        echo "submit: cancelled the jobs that waited in vain: $listed" >&2
    else
        echo "submit: error: could not cancel $listed ($(last_line "$(cat "$errors")")): scancel ${ids[*]}" >&2
        exit 1
    fi
}
