"""(c) N ArithmeticAddCalculation CalcJobs run in-process one after another, as in the aiida anchor.

Computer ``localhost`` (local transport, direct scheduler; it exists in every profile) and an
InstalledCode ``bash-add`` running ``/bin/bash``.  After 1 untimed warm-up job,
``run_get_node(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1))`` N times (default 20); each job
must be ``is_finished_ok`` with ``sum == i+1``.  The computer's options (``minimum_poll_interval``,
``safe_interval``...) are recorded as found; plait runs job commands with plain ``bash``, never a login
shell, which is what the anchor's fair row (poll 0, safe 0, ``use_login_shell=False``) compares against.

``--poll`` / ``--safe`` change the computer's ``minimum_poll_interval`` / ``safe_interval`` first
(default: leave the localhost defaults, 0.02 s and 0 s).

    python3 benchmarks/bench_calcjob.py [-n 20] [--poll SECONDS] [--safe SECONDS]
"""

from __future__ import annotations

import argparse
import time

import _common

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("-n", type=int, default=20)
parser.add_argument("--warmup", type=int, default=1, help="untimed CalcJobs first")
parser.add_argument("--poll", type=float, default=None, help="set minimum_poll_interval of localhost first")
parser.add_argument("--safe", type=float, default=None, help="set safe_interval of localhost first")
_common.add_common_args(parser)
args = parser.parse_args()
name = f"c_calcjob_run{args.tag}"
_common.fresh_home(name, args)

t0 = time.perf_counter()
from plait import run_get_node  # noqa: E402
from plait.calculations.arithmetic import ArithmeticAddCalculation  # noqa: E402
from plait.orm import Computer, InstalledCode, Int  # noqa: E402

t_import = time.perf_counter() - t0

computer = Computer.get("localhost")
changes = {}
if args.poll is not None:
    changes["minimum_poll_interval"] = args.poll
if args.safe is not None:
    changes["safe_interval"] = args.safe
if changes:
    computer.set_options(**changes)
code = InstalledCode(computer=computer, filepath_executable="/bin/bash", label="bash-add").store()


def run_one(i: int) -> None:
    res, node = run_get_node(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1))
    assert node.is_finished_ok, (node.pk, node.process_state, node.exit_status)
    assert res["sum"].value == i + 1, res


t0 = time.perf_counter()
for i in range(args.warmup):
    run_one(i)
t_warmup = time.perf_counter() - t0

per_job = []
t0 = time.perf_counter()
for i in range(args.n):
    t1 = time.perf_counter()
    run_one(i)
    per_job.append(time.perf_counter() - t1)
elapsed = time.perf_counter() - t0

options = Computer.get("localhost").options
_common.emit(
    name,
    {
        "mode": "run",
        "n": args.n,
        "warmup": args.warmup,
        "computer": computer.label,
        "transport": computer.transport_type,
        "scheduler": computer.scheduler_type,
        "minimum_poll_interval": options["minimum_poll_interval"],
        "safe_interval": computer.safe_interval(),
        "computer_options": options,
        "login_shell": False,
        "import_s": round(t_import, 4),
        "warmup_s": round(t_warmup, 4),
        "elapsed_s": round(elapsed, 4),
        "calcjobs_per_min": round(60 * args.n / elapsed, 2),
        "s_per_calcjob": round(elapsed / args.n, 4),
        "per_job_min_s": round(min(per_job), 4),
        "per_job_max_s": round(max(per_job), 4),
    },
)
