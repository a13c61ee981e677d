#!/usr/bin/env bash
# Start a one-node SLURM cluster (munged + slurmctld + slurmd) on loopback for the scheduler tests.
#
# Idempotent: when the daemons already run and the cluster accepts jobs it only checks and exits 0.
# Needs root (writes /etc/slurm/slurm.conf, starts daemons directly: there is no systemd here).
# Exits non-zero with the tail of the daemon logs when the cluster does not come up within the bound.
set -euo pipefail

WAIT_SECONDS="${SLURM_START_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd
RUN_DIR=/run/slurm

log() { printf 'start-slurm: %s\n' "$*" >&2; }

die() {
    log "ERROR: $*"
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [ -f "$f" ]; then
            log "---- last lines of $f ----"
            tail -n 25 "$f" >&2 || true
        fi
    done
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (it writes $CONF and starts the daemons)"
fi

# -- packages (only when missing) ------------------------------------------------------------------
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# -- munge -----------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

if ! munge_ok; then
    log "starting munged"
    rm -f /run/munge/munged.pid
    # --force: start even if the socket file of a dead munged is still there.
    runuser -u munge -- /usr/sbin/munged --force || /usr/sbin/munged --force
    for _ in $(seq 1 50); do
        munge_ok && break
        sleep 0.2
    done
    munge_ok || die "munged did not start (munge -n | unmunge fails)"
fi

# -- slurm.conf ------------------------------------------------------------------------------------
NODE_NAME="$(hostname -s)"
CPUS="$(nproc)"
TOTAL_MB="$(free -m | awk '/^Mem:/ {print $2}')"
# Leave some head room: slurmd refuses to register a node that claims more memory than it has.
REAL_MB=$(( TOTAL_MB * 9 / 10 ))
if [ "$REAL_MB" -lt 1 ]; then REAL_MB=1; fi

install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$SPOOL_CTLD" "$SPOOL_D" "$RUN_DIR"

NEW_CONF="$(mktemp)"
cat >"$NEW_CONF" <<CONF
# Written by .ci/start-slurm.sh for plait's scheduler tests: one node on loopback.
ClusterName=plait-ci
SlurmctldHost=${NODE_NAME}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=${SPOOL_CTLD}
SlurmdSpoolDir=${SPOOL_D}
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished and cancelled jobs stay visible to squeue --states=all for five minutes.
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=${NODE_NAME} NodeAddr=127.0.0.1 NodeHostname=${NODE_NAME} CPUs=${CPUS} RealMemory=${REAL_MB} State=UNKNOWN
PartitionName=debug Nodes=${NODE_NAME} Default=YES MaxTime=INFINITE State=UP
CONF

CONF_CHANGED=0
if [ ! -f "$CONF" ] || ! cmp -s "$NEW_CONF" "$CONF"; then
    install -m 0644 "$NEW_CONF" "$CONF"
    CONF_CHANGED=1
    log "wrote $CONF"
fi
rm -f "$NEW_CONF"

# -- daemons ---------------------------------------------------------------------------------------
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$CONF_CHANGED" -eq 1 ]; then
    # A new configuration: restart whatever runs so that it is read.
    for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid"; do
        if pid_alive "$pidfile"; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            for _ in $(seq 1 50); do pid_alive "$pidfile" || break; sleep 0.2; done
        fi
    done
fi

if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    # -c: start from a clean state (no jobs left from an earlier run); fine for a test cluster.
    /usr/sbin/slurmctld -c -i || die "slurmctld failed to start"
fi
if ! pid_alive "$RUN_DIR/slurmd.pid"; then
    log "starting slurmd"
    /usr/sbin/slurmd || die "slurmd failed to start"
fi

# -- wait until the node is idle and a job runs ----------------------------------------------------
deadline=$(( $(date +%s) + WAIT_SECONDS ))
state=""
while :; do
    # %T ends in '*' while the node does not respond: not ready yet.
    state="$(sinfo -h -n "$NODE_NAME" -o %T 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|fail*)
            scontrol update nodename="$NODE_NAME" state=resume >/dev/null 2>&1 || true ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        die "node $NODE_NAME not ready after ${WAIT_SECONDS}s (sinfo says '${state:-nothing}')"
    fi
    sleep 1
done
log "node $NODE_NAME is $state"

remaining=$(( deadline - $(date +%s) ))
if [ "$remaining" -lt 15 ]; then remaining=15; fi
if ! out="$(timeout "$remaining" srun -N1 -n1 --time=1 /bin/echo plait-slurm-ok 2>&1)"; then
    die "a trivial srun job failed: $out"
fi
case "$out" in
    *plait-slurm-ok*) ;;
    *) die "a trivial srun job printed something unexpected: $out" ;;
esac
log "slurm is up: cluster plait-ci, node $NODE_NAME, partition debug"
