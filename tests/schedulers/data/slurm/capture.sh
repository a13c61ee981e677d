#!/usr/bin/env bash
# Re-capture the SLURM fixtures in this folder from a real cluster (started by .ci/start-slurm.sh).
#
# Each capture NAME gives NAME.stdout and NAME.stderr (byte for byte what the command printed) and a
# line "NAME<TAB>exit code<TAB>command" in commands.tsv.  The squeue format string is read from
# plait.schedulers.slurm.SQUEUE_FORMAT (the tests check that the fixtures used the current one).
# Takes about two minutes: one job has to reach its one-minute time limit.
set -euo pipefail
cd "$(dirname "$0")"
FORMAT="$(python3 -c 'from plait.schedulers.slurm import SQUEUE_FORMAT; print(SQUEUE_FORMAT)')"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
: > commands.tsv

capture() {  # capture NAME COMMAND...
    local name="$1"; shift
    local rc=0
    "$@" > "$name.stdout" 2> "$name.stderr" || rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$*" >> commands.tsv
}

sub() { sbatch --parsable --chdir="$WORK" --output=/dev/null "$@"; }
wait_state() {  # wait_state JOBID STATE
    for _ in $(seq 1 120); do
        [ "$(squeue -h --states=all -j "$1" -o %T)" = "$2" ] && return 0
        sleep 0.5
    done
    echo "job $1 never reached $2" >&2; return 1
}

capture sbatch_parsable sbatch --parsable --chdir="$WORK" --output=/dev/null --job-name=plait-capture --wrap true
ok="$(cat sbatch_parsable.stdout)"
failed="$(sub --wrap 'exit 3')"
cancel_running="$(sub --wrap 'sleep 300')"
timeout_job="$(sub --time=1 --wrap 'sleep 300')"
wait_state "$ok" COMPLETED; wait_state "$failed" FAILED
wait_state "$cancel_running" RUNNING; wait_state "$timeout_job" RUNNING
scancel "$cancel_running"; wait_state "$cancel_running" CANCELLED

running="$(sub --wrap 'sleep 300')"; wait_state "$running" RUNNING
pending_resources="$(sub --wrap true)"
pending_dependency="$(sub --dependency=afterok:"$running" --wrap true)"
held="$(sub --hold --wrap true)"
cancel_pending="$(sub --wrap true)"
scancel "$cancel_pending"; wait_state "$cancel_pending" CANCELLED
for _ in $(seq 1 60); do  # let the scheduler give the pending job its reason
    [ "$(squeue -h -j "$pending_resources" -o %r)" != None ] && break
    sleep 0.5
done

all="$ok,$failed,$cancel_running,$timeout_job,$running,$pending_resources,$pending_dependency,$held,$cancel_pending"
capture squeue_mixed squeue --noheader --states=all --jobs="$all" --format="$FORMAT"
capture squeue_known_and_unknown squeue --noheader --states=all --jobs="$ok,999999" --format="$FORMAT"
capture squeue_one_unknown squeue --noheader --states=all --jobs=999999 --format="$FORMAT"
capture squeue_all_unknown squeue --noheader --states=all --jobs=999998,999999 --format="$FORMAT"
capture sbatch_refused sbatch --parsable --chdir="$WORK" --partition=no-such-partition --wrap true
capture scancel_unknown scancel 999999
capture scancel_finished scancel "$ok"

wait_state "$timeout_job" TIMEOUT
scancel "$running" "$pending_resources" "$pending_dependency" "$held"
sleep 2
capture squeue_after_timeout squeue --noheader --states=all --jobs="$all" --format="$FORMAT"
printf 'captured with: %s\n' "$(sbatch --version)" >> commands.tsv
