"""(a) N sequential calcfunction calls adding two Ints, in-process: the same scenario as the aiida anchor.

``@calcfunction def add(x, y): return x + y`` called N times (default 200) with
two fresh, unstored ``Int`` inputs (each call stores 2 input Ints, 1
CalcFunctionNode, 1 output Int and 3 links), after 1 untimed warm-up call.
With ``--reuse-inputs`` two stored Ints are made once and reused.  Every result
is asserted.  The timed region excludes interpreter start, imports and the
creation of the scratch profile (the warm-up call opens it).

    python3 benchmarks/bench_calcfunction.py [-n 200] [--reuse-inputs]
"""

from __future__ import annotations

import argparse
import time

import _common

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("-n", type=int, default=200)
parser.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed loop")
parser.add_argument("--reuse-inputs", action="store_true")
_common.add_common_args(parser)
args = parser.parse_args()
name = "a_calcfunction" + ("_reuse" if args.reuse_inputs else "") + args.tag
_common.fresh_home(name, args)

t0 = time.perf_counter()
from plait import calcfunction  # noqa: E402
from plait.orm import Int  # noqa: E402

t_import = time.perf_counter() - t0


@calcfunction
def add(x, y):
    return x + y


t0 = time.perf_counter()
for i in range(args.warmup):
    assert add(Int(i), Int(1)).value == i + 1
t_warmup = time.perf_counter() - t0

if args.reuse_inputs:
    x0, y0 = Int(2).store(), Int(3).store()

t0 = time.perf_counter()
for i in range(args.n):
    if args.reuse_inputs:
        result = add(x0, y0)
        assert result.value == 5
    else:
        result = add(Int(i), Int(1))
        assert result.value == i + 1
elapsed = time.perf_counter() - t0
assert result.is_stored and result.creator is not None and result.creator.is_finished_ok

_common.emit(
    name,
    {
        "n": args.n,
        "warmup": args.warmup,
        "reuse_inputs": args.reuse_inputs,
        "import_s": round(t_import, 4),
        "warmup_s": round(t_warmup, 4),
        "elapsed_s": round(elapsed, 4),
        "rate_per_s": round(args.n / elapsed, 2),
        "ms_per_call": round(1000 * elapsed / args.n, 3),
    },
)
