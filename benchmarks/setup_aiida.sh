#!/bin/bash
# Set up aiida-core 2.9.4 for the side-by-side benchmarks, OUTSIDE this repository.
#
#   benchmarks/setup_aiida.sh [SCRATCH]      # default SCRATCH: /work/scratch
#
# Creates (idempotently; whatever exists already is kept):
#   $SCRATCH/aiida-venv   python3 -m venv + pip install aiida-core==2.9.4 (resolves SQLAlchemy 2.1.9, plumpy 0.26.1)
#   $SCRATCH/aiida-home   AIIDA_PATH: the aiida config lives in $SCRATCH/aiida-home/.aiida, nothing in ~
#   profile bench-nobroker   `verdi presto --no-broker` (core.sqlite_dos storage, Computer 'localhost' core.local +
#                            core.direct), plus the code bash-add@localhost made by the anchor's setup_localhost.py
#
# This follows "Reproduce from scratch" of ../shared/anchors/aiida-bench/README.md (steps 1 and 3) for the one
# profile the side-by-side runner needs: (a), (b), (c) in-process and (e) need no broker.  The runner sets the fair
# (c) settings itself (poll 0, safe 0, no login shell) before each (c) comparison.
set -euo pipefail
SCRATCH=${1:-${AIIDA_SCRATCH:-/work/scratch}}
HERE=$(cd "$(dirname "$0")" && pwd)
ANCHORS_DIR=${AIIDA_ANCHORS:-$(cd "$HERE/../.." && pwd)/shared/anchors/aiida-bench}
VENV=$SCRATCH/aiida-venv
PROFILE=${AIIDA_PROFILE:-bench-nobroker}
case "$(cd "$(dirname "$SCRATCH")" 2>/dev/null && pwd)/" in
  "$(cd "$HERE/.." && pwd)/"*) echo "refusing: $SCRATCH is inside the plait repository" >&2; exit 2;;
esac
mkdir -p "$SCRATCH/aiida-home"

if [ ! -x "$VENV/bin/verdi" ]; then
  echo "== creating $VENV and installing aiida-core==2.9.4"
  timeout 120 python3 -m venv "$VENV"
  timeout 900 "$VENV/bin/pip" install -q "aiida-core==2.9.4"
fi
export AIIDA_PATH=$SCRATCH/aiida-home   # before anything imports aiida, or it creates ~/.aiida
export PATH=$VENV/bin:$PATH
export ANCHORS=$SCRATCH   # only read by setup_localhost.py when it has to create the computer itself
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the read-only anchor folder
"$VENV/bin/python" -c 'import aiida; print("aiida-core", aiida.__version__)'

if ! timeout 120 verdi profile show "$PROFILE" > /dev/null 2>&1; then
  echo "== verdi presto: profile $PROFILE (no broker)"
  timeout 300 verdi presto -n -p "$PROFILE" --no-broker
fi
echo "== setup_localhost.py (code bash-add@localhost; fair settings poll 0, safe 0, no login shell)"
timeout 120 "$VENV/bin/python" "$ANCHORS_DIR/setup_localhost.py" --profile "$PROFILE" --poll 0 --safe 0 --login-shell false

# The daemon rows need a RabbitMQ profile (compare.py also creates it when missing).
DAEMON_PROFILE=${AIIDA_DAEMON_PROFILE:-bench-rmq}
if (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  if ! timeout 120 verdi profile show "$DAEMON_PROFILE" > /dev/null 2>&1; then
    echo "== verdi presto: profile $DAEMON_PROFILE (RabbitMQ on 127.0.0.1:5672)"
    DEFAULT=$(timeout 120 verdi profile list 2>/dev/null | awk '$1 == "*" {print $2}')
    timeout 300 verdi presto -n -p "$DAEMON_PROFILE"
    # presto makes the new profile the default: keep the previous one
    [ -n "$DEFAULT" ] && timeout 120 verdi profile set-default "$DEFAULT" > /dev/null
  fi
  timeout 120 "$VENV/bin/python" "$ANCHORS_DIR/setup_localhost.py" --profile "$DAEMON_PROFILE" \
    --poll 0 --safe 0 --login-shell false
else
  echo "== RabbitMQ is not reachable on 127.0.0.1:5672: no profile $DAEMON_PROFILE (the daemon rows need it)"
fi

cat <<EOF

aiida is ready. Run the side-by-side comparison with:
  python3 benchmarks/compare.py --aiida-venv $VENV --aiida-home $SCRATCH/aiida-home --aiida-profile $PROFILE
EOF
