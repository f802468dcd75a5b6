#!/usr/bin/env bash
# A single-node Slurm on this machine, for testing the Slurm profile (tests/test_slurm.py) without a cluster.
#
#   scripts/slurm_local.sh start     # munged + slurmctld + slurmd; waits until the node is idle
#   scripts/slurm_local.sh status    # daemons and sinfo; exit 0 when the node takes jobs
#   scripts/slurm_local.sh stop      # cancels this cluster's jobs, then stops exactly the daemons it started
#
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (Slurm 22.05); no systemd. Everything it
# writes (config, munge key and socket, state, spool, logs, PID files) lives in QUAGMIRE_SLURM_DIR
# (default /tmp/quagmire-slurm), except the links /etc/slurm/{slurm,gres}.conf: Slurm clients inside a job (the
# executor plugin's job step drops SLURM_CONF) only find the config at its default path.
#
# Settings (environment): QUAGMIRE_SLURM_DIR, QUAGMIRE_SLURM_PARTITION (default `local`), QUAGMIRE_SLURM_GPUS
# (fake GPUs on the node, default 2: character devices /dev/fakegpuN, enough for Slurm to schedule --gpus),
# QUAGMIRE_SLURM_TIMEOUT (seconds `start` waits for the node, default 90).
set -euo pipefail
unset SLURM_CONF  # our clients read /etc/slurm/slurm.conf, i.e. this cluster

DIR=${QUAGMIRE_SLURM_DIR:-/tmp/quagmire-slurm}
PARTITION=${QUAGMIRE_SLURM_PARTITION:-local}
GPUS=${QUAGMIRE_SLURM_GPUS:-2}
TIMEOUT=${QUAGMIRE_SLURM_TIMEOUT:-90}
MARKER="# quagmire local Slurm (scripts/slurm_local.sh)"
DAEMONS=(munged slurmctld slurmd)  # start order; stopped in reverse

die() { echo "slurm_local: $*" >&2; exit 1; }
say() { echo "slurm_local: $*" >&2; }

alive() {  # a live process (not a zombie: here nobody may reap the daemons once this script has exited)
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

pid_of() {  # the recorded PID of a daemon when that process still runs that daemon, else nothing
    local name=$1 file="$DIR/pids/$1.pid" pid
    [[ -s $file ]] || return 0
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]] && alive "$pid" && echo "$pid"
    return 0
}

node_state() { sinfo --noheader --Node --nodes="$NODE" --format=%T 2>/dev/null | head -n1 | tr -d '*~#!%$@^-'; }

require() {
    [[ $(id -u) == 0 ]] || die "must run as root (it starts munged, slurmctld and slurmd)"
    local missing=()
    for cmd in munged mungekey slurmctld slurmd sinfo sbatch squeue scancel; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) ||
        die "missing ${missing[*]}: apt-get install -y slurmctld slurmd slurm-client munge"
}

node_line() {  # this machine's topology as slurmd sees it (a node whose config disagrees gets drained)
    local line mem
    line=$(slurmd -C | head -n1)
    [[ $line == NodeName=* ]] || die "slurmd -C printed no node line: $line"
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
    # Below the machine's memory: a node announcing less than its config says is drained.
    echo "${line% RealMemory=*} RealMemory=$((mem * 9 / 10)) NodeAddr=127.0.0.1 Gres=gpu:$GPUS State=UNKNOWN"
}

write_config() {
    local node_line
    node_line=$(node_line)
    NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node_line")
    mkdir -p "$DIR/etc"
    cat >"$DIR/etc/slurm.conf" <<EOF
$MARKER: generated at start, rewritten each time.
ClusterName=quagmire
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups (containers) and no accounting: job status comes from squeue, so finished jobs must stay visible
# there for longer than the executor's status-check interval.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
MpiDefault=none
ReturnToService=2
# Jobs share the node by core and memory: two one-CPU jobs run side by side.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
$node_line
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$DIR/etc/gres.conf"
    echo "$MARKER" >>"$DIR/etc/gres.conf"
    for ((i = 0; i < GPUS; i++)); do
        [[ -c /dev/fakegpu$i ]] || mknod "/dev/fakegpu$i" c 1 3  # a character device (like /dev/null) per GPU
        echo "NodeName=$NODE Name=gpu File=/dev/fakegpu$i" >>"$DIR/etc/gres.conf"
    done
    mkdir -p /etc/slurm
    for file in slurm.conf gres.conf; do
        local target=/etc/slurm/$file
        # Ours: a link to a config with our marker, or a dangling link (a removed state folder's).
        if [[ -L $target && ! -e $target ]] || grep -qF "$MARKER" "$target" 2>/dev/null; then
            ln -sfn "$DIR/etc/$file" "$target"
        elif [[ -e $target || -L $target ]]; then
            die "$target exists and is not ours: refusing to replace a real Slurm config"
        else
            ln -s "$DIR/etc/$file" "$target"
        fi
    done
}

check_no_other() {  # one local Slurm per machine: /etc/slurm and the ports are shared
    local link other pid
    link=$(readlink /etc/slurm/slurm.conf 2>/dev/null) || return 0
    other=${link%/etc/slurm.conf}
    [[ $other != "$link" && $other != "$DIR" && -s $other/pids/slurmctld.pid ]] || return 0
    pid=$(<"$other/pids/slurmctld.pid")
    if [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == slurmctld ]] && alive "$pid"; then
        die "another local Slurm runs from $other: QUAGMIRE_SLURM_DIR=$other $0 stop"
    fi
}

start_daemon() {  # start_daemon NAME ARGS...: in its own session, output to log/NAME.out, PID recorded
    local name=$1
    shift
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/pids/$name.pid"
}

wait_for() {  # wait_for WHAT TEST-COMMAND...: poll until it succeeds or TIMEOUT runs out
    local what=$1 deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@"; do
        if ((SECONDS >= deadline)); then
            say "no $what after ${TIMEOUT}s; last log lines:"
            tail -n 15 "$DIR"/log/*.log "$DIR"/log/*.out >&2 2>/dev/null || true
            scontrol show node "$NODE" >&2 2>/dev/null || true
            die "start failed: no $what (logs in $DIR/log)"
        fi
        sleep 0.5
    done
}

running() { local name; for name in "${DAEMONS[@]}"; do [[ -n $(pid_of "$name") ]] || return 1; done; }
node_idle() { [[ $(node_state) == idle ]]; }
munge_up() { [[ -S $DIR/munge/munge.socket.2 ]] && [[ -n $(pid_of munged) ]]; }
ctld_up() { [[ -n $(pid_of slurmctld) ]] && scontrol ping 2>/dev/null | grep -q UP; }

cmd_start() {
    require
    if running; then
        write_config_node_only
        say "already running (PIDs in $DIR/pids); waiting for the node"
        wait_for "idle node $NODE" node_idle
        say "node $NODE idle"
        return 0
    fi
    check_no_other
    cmd_stop quiet  # whatever half of a previous start still runs
    # Fresh state every start: a previous run's jobs, node states and spool must not leak into this one.
    rm -rf "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/log" "$DIR/pids"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/log" "$DIR/pids" "$DIR/munge"
    chmod 0711 "$DIR/munge"  # the socket must be reachable; the key stays 0600
    rm -f "$DIR/munge/munge.socket.2"*
    if [[ ! -s $DIR/munge/munge.key ]]; then
        mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 0600 "$DIR/munge/munge.key"
    write_config
    # --force: munged refuses to run as root (or with keys and sockets under /tmp) without it.
    start_daemon munged munged --foreground --force --socket="$DIR/munge/munge.socket.2" \
        --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munged.seed" \
        --log-file="$DIR/log/munged.log"
    wait_for "munge socket" munge_up
    start_daemon slurmctld slurmctld -D -f "$DIR/etc/slurm.conf"
    wait_for "slurmctld answering scontrol ping" ctld_up
    start_daemon slurmd slurmd -D -f "$DIR/etc/slurm.conf"
    wait_for "idle node $NODE" node_idle
    say "node $NODE idle in partition $PARTITION with $GPUS fake GPUs (config $DIR/etc/slurm.conf)"
}

write_config_node_only() {  # NODE for a running cluster, without touching its config
    NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$DIR/etc/slurm.conf")
}

cmd_stop() {
    local quiet=${1:-} name pid
    if [[ -n $(pid_of slurmctld) ]]; then  # cancel this cluster's jobs before their slurmd goes
        squeue --noheader --format=%A 2>/dev/null | xargs -r scancel 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while [[ -n $(squeue --noheader --states=PENDING,RUNNING,COMPLETING 2>/dev/null) ]] && ((SECONDS < deadline)); do
            sleep 0.5
        done
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 40); do alive "$pid" || break; sleep 0.25; done
            alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
            [[ -z $quiet ]] && say "stopped $name ($pid)"
        fi
        rm -f "$DIR/pids/$name.pid"
    done
    # Our /etc/slurm links go too: with a config naming a controller that is down, every Slurm client waits
    # ~10 s for it, and snakemake-executor-plugin-slurm runs `scontrol show config` whenever Snakemake starts.
    for file in slurm.conf gres.conf; do
        [[ -L /etc/slurm/$file && $(readlink "/etc/slurm/$file") == "$DIR/etc/$file" ]] && rm -f "/etc/slurm/$file"
    done
    return 0
}

cmd_status() {
    local name pid ok=0
    for name in "${DAEMONS[@]}"; do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then echo "$name: running ($pid)"; else echo "$name: not running"; ok=1; fi
    done
    if ((ok == 0)); then
        write_config_node_only
        sinfo
        [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]] || ok=1
    fi
    return $ok
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 start|stop|status (state in \$QUAGMIRE_SLURM_DIR, default /tmp/quagmire-slurm)" ;;
esac
