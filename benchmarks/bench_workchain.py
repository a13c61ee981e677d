"""(b) WorkChain benchmarks, in-process with ``plait.run_get_node``: the same scenarios as the aiida anchor.

--kind steps     outline = N literal steps (``spec.outline(*[cls.inc] * N)``, default N=100); each
                 step only does ``ctx.count += 1``.
--kind while     outline = ``setup, while_(not_done)(inc)``, N iterations (N+1 condition checks, N steps).
--kind children  outline = ``launch, finalize``; ``launch`` calls N child calcfunctions (default 50, add
                 two fresh Ints) one after the other inside the step; ``finalize`` outputs the sum as a
                 stored Int.

One untimed warm-up run of the same WorkChain, then one timed ``run_get_node``.  The final count (or the
sum and the number of called children) and ``is_finished_ok`` are asserted.

    python3 benchmarks/bench_workchain.py --kind steps|while|children [-n N]
"""

from __future__ import annotations

import argparse
import time

import _common

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--kind", choices=["steps", "while", "children"], default="steps")
parser.add_argument("-n", type=int, default=None, help="steps/iterations (100) or children (50)")
parser.add_argument("--warmup", type=int, default=1, help="untimed runs of the same workchain first")
_common.add_common_args(parser)
args = parser.parse_args()
if args.n is None:
    args.n = 50 if args.kind == "children" else 100
name = f"b_workchain_{args.kind}{args.tag}"
_common.fresh_home(name, args)

t0 = time.perf_counter()
from plait import WorkChain, calcfunction, run_get_node, while_  # noqa: E402
from plait.orm import Int  # noqa: E402

t_import = time.perf_counter() - t0

N = args.n
FINAL_COUNT: dict[int, int] = {}


@calcfunction
def add(x, y):
    return x + y


class StepsWorkChain(WorkChain):
    """N literal outline steps, each incrementing a ctx counter."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(*([cls.inc] * N))

    def inc(self):
        self.ctx.count = self.ctx.get("count", 0) + 1
        FINAL_COUNT[self.node.pk] = self.ctx.count


class WhileWorkChain(WorkChain):
    """while_ loop of N iterations, each incrementing a ctx counter."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.setup, while_(cls.not_done)(cls.inc))

    def setup(self):
        self.ctx.count = 0

    def not_done(self):
        return self.ctx.count < N

    def inc(self):
        self.ctx.count += 1
        FINAL_COUNT[self.node.pk] = self.ctx.count


class ChildrenWorkChain(WorkChain):
    """Calls N child calcfunctions (sequentially, in one step) and outputs their sum."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.launch, cls.finalize)
        spec.output("total", valid_type=Int)

    def launch(self):
        total = 0
        for i in range(N):
            total += add(Int(i), Int(1)).value
        self.ctx.total = total

    def finalize(self):
        self.out("total", Int(self.ctx.total).store())


cls = {"steps": StepsWorkChain, "while": WhileWorkChain, "children": ChildrenWorkChain}[args.kind]


def check(node, results):
    assert node.is_finished_ok, node.process_state
    if args.kind == "children":
        assert results["total"].value == sum(i + 1 for i in range(N))
        assert len(node.called) == N, len(node.called)
    else:
        assert FINAL_COUNT[node.pk] == N


t0 = time.perf_counter()
for _ in range(args.warmup):
    res, nd = run_get_node(cls)
    check(nd, res)
t_warmup = time.perf_counter() - t0

t0 = time.perf_counter()
results, node = run_get_node(cls)
elapsed = time.perf_counter() - t0
check(node, results)

record = {
    "kind": args.kind,
    "n": N,
    "warmup": args.warmup,
    "import_s": round(t_import, 4),
    "warmup_s": round(t_warmup, 4),
    "elapsed_s": round(elapsed, 4),
}
if args.kind in ("steps", "while"):
    record["steps_per_s"] = round(N / elapsed, 2)
    record["ms_per_step"] = round(1000 * elapsed / N, 3)
else:
    record["children_per_s"] = round(N / elapsed, 2)
    record["ms_per_child"] = round(1000 * elapsed / N, 3)

_common.emit(name, record)
