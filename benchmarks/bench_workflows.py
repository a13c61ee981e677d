"""Work chains of the daemon benchmarks (bench_daemon.py).

They live in an importable module because a daemon worker imports a
submitted process again from its recorded ``module:QualName``: the daemon is
started with this folder on ``PYTHONPATH`` (bench_daemon.py does that), so
the module is ``bench_workflows`` in the submitting script and in the workers.
"""

from __future__ import annotations

import asyncio
import os

from plait import ToContext, WorkChain
from plait.orm import Int, Str

#: how often a gated child looks for its gate file
GATE_POLL_S = 0.05


class Trivial(WorkChain):
    """One step that does nothing worth mentioning: the cheapest work chain to submit."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.outline(cls.step)

    def step(self):
        self.ctx.seen = self.inputs.x.value


class GateChild(WorkChain):
    """Waits at an await (``asyncio.sleep`` in a loop) until the file ``path`` exists."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.outline(cls.wait)

    async def wait(self):
        path = self.inputs.path.value
        # deliberately a polling loop at an await (what the benchmark measures); stat() is microseconds
        while not os.path.exists(path):  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(GATE_POLL_S)


class GateParent(WorkChain):
    """Submits one GateChild and waits for it (ToContext): parked while it waits."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        return ToContext(child=self.submit(GateChild, path=self.inputs.path))

    def done(self):
        assert self.ctx.child.is_finished_ok, self.ctx.child.pk


class SpinChild(WorkChain):
    """Like GateChild, but its step is blocking code (``time.sleep`` in a loop), so it holds a worker slot."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("path", valid_type=Str)
        spec.outline(cls.wait)

    def wait(self):
        import time

        path = self.inputs.path.value
        while not os.path.exists(path):
            time.sleep(GATE_POLL_S)
