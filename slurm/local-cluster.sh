#!/usr/bin/env bash
# A one-node Slurm cluster in a folder, for the tests and for trying the job scripts on one machine:
# munged, slurmctld and slurmd started by plain commands (no systemd), state and logs in DIR.
#
#   slurm/local-cluster.sh up DIR     start; prints the line to source (export SLURM_CONF=DIR/slurm.conf)
#   slurm/local-cluster.sh down DIR   cancel every job, stop the daemons (by their pid files)
#
# Needs Debian's slurm-wlm and munge (apt-get install --no-install-recommends slurm-wlm munge) and
# root (slurmd runs jobs as their users). Environment: SLURM_PORTS="CTLD SLURMD" (default 6817 6818),
# LOCAL_CLUSTER_CPUS (default: all), LOCAL_CLUSTER_MIN_JOB_AGE (seconds a finished job stays in
# scontrol's view, default 5), LOCAL_CLUSTER_OWNER (a pid: the cluster goes down when it ends, so
# that a test killed outright leaves no daemons behind). The node has one GPU that Slurm schedules with /dev/null
# behind it, so that the --gres=gpu:1 job scripts run unchanged on a CPU machine.
set -euo pipefail

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(realpath -m "$2")

pid_of() { [ -s "$1" ] && cat "$1" || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Polls `cmd` every 0.1 s up to $1 seconds.
wait_for() {
    local limit=$1; shift
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
        sleep 0.1
    done
}

stop_pidfile() {
    local pid
    pid=$(pid_of "$1")
    if alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        wait_for 20 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

down() {
    if [ -f "$dir/slurm.conf" ] && alive "$(pid_of "$dir/slurmctld.pid")"; then
        # slurmd stopping does not end running jobs: cancel them first, and wait for them to go.
        export SLURM_CONF=$dir/slurm.conf
        scancel --full --signal=KILL --user="$(id -un)" >/dev/null 2>&1 || true
        scancel --user="$(id -un)" >/dev/null 2>&1 || true
        wait_for 20 bash -c '[ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ]' || true
    fi
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    stop_pidfile "$dir/munged.pid"
}

up() {
    local host ctld_port slurmd_port cpus
    host=$(hostname -s)
    read -r ctld_port slurmd_port <<<"${SLURM_PORTS:-6817 6818}"
    cpus=${LOCAL_CLUSTER_CPUS:-$(nproc)}
    mkdir -p "$dir"/{munge,state,spool,log}
    chmod 755 "$dir/munge"   # munged refuses a socket folder that others cannot enter
    if [ ! -s "$dir/munge/munge.key" ]; then
        mungekey --create --keyfile="$dir/munge/munge.key" --force
        chmod 600 "$dir/munge/munge.key"
    fi
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
    cat >"$dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Start jobs at once and forget finished ones soon (sbatch --wait polls a job until it is gone).
SchedulerParameters=batch_sched_delay=0
MinJobAge=${LOCAL_CLUSTER_MIN_JOB_AGE:-5}
ReturnToService=2
JobRequeue=1
KillWait=30
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Gres=gpu:1 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    # Slurm drops a GPU without a device file.
    echo "NodeName=$host Name=gpu File=/dev/null" >"$dir/gres.conf"
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    # Up when the node is idle; drained or invalid (a bad configuration) is a failure at once.
    # Our own daemons must be the ones answering (a port taken by another cluster: they exit).
    if ! wait_for 60 bash -c "sinfo -h -o %t | grep -qE '^(idle|mix|alloc|drain|inval)'" ||
        ! sinfo -h -o %t | grep -qE '^(idle|mix|alloc)' ||
        ! alive "$(pid_of "$dir/slurmctld.pid")" || ! alive "$(pid_of "$dir/slurmd.pid")"; then
        echo "local-cluster: the node did not come up; logs in $dir/log:" >&2
        tail -n 20 "$dir"/log/*.log >&2 || true
        down
        exit 1
    fi
    if [ -n "${LOCAL_CLUSTER_OWNER-}" ]; then
        # A watchdog, detached from our output so that the caller does not wait for it.
        nohup bash -c "while kill -0 $LOCAL_CLUSTER_OWNER 2>/dev/null && [ -f '$dir/slurmctld.pid' ]; do sleep 2; done; '$0' down '$dir'" \
            >"$dir/log/watchdog.log" 2>&1 </dev/null &
    fi
    echo "export SLURM_CONF=$dir/slurm.conf"
}

case $action in
    up) up ;;
    down) down ;;
    *) usage ;;
esac
