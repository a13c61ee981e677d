"""Work chains of ``tests/daemon/test_two_hosts.py`` (a network partition between two daemon hosts).

They live in an importable module because the daemon workers (in their own network namespaces)
import them again from their recorded ``module:QualName``.  Every step naps (in its thread or at an
``await``) for a time read from the environment, which the workers inherit and the test process
does not: the result and the provenance depend on ``seed`` alone, so a crash-free twin run in the
test process (no naps at all) must give the same provenance.

* ``PLAIT_TWO_HOSTS_STEP``: the longest nap of a step in a thread (a fraction fixed by the seed);
* ``PLAIT_TWO_HOSTS_NAP``: the longest nap at an ``await``;
* ``PLAIT_TWO_HOSTS_LONG``: the nap of the first child of every :data:`LONG_EVERY`-th chain, in a
  thread, long enough to span the partition: the worker that lost the child's lease wakes up
  after the link is back and tries to go on (a report, an inline calcfunction, a checkpoint).
"""

from __future__ import annotations

import asyncio
import os
import time

from plait import WorkChain, append_, calcfunction
from plait.orm import Bool, Int

#: the first child of the chains with ``seed % LONG_EVERY == 1`` naps PLAIT_TWO_HOSTS_LONG in its step
LONG_EVERY = 4
#: the message a long child reports as its long nap begins (the test waits for it)
LONG_NAP = "long nap"


def _seconds(variable: str) -> float:
    try:
        return max(0.0, float(os.environ.get(variable) or 0.0))
    except ValueError:
        return 0.0


def _fraction(seed: int) -> float:
    return (seed * 37 % 11) / 10


def is_long(seed: int) -> bool:
    return seed % LONG_EVERY == 1


def expected_total(seed: int) -> int:
    """What ``TwoHostChain(seed=Int(seed))`` outputs as ``total``."""
    first = seed + 1
    children = (10 * seed + 1) + (10 * seed + 2)
    return first + children


#: the labels of the processes a chain calls, in call order (a child calls one ``th_add``)
CHAIN_CALLS = ["th_add", "TwoHostChild", "TwoHostChild", "th_add"]


@calcfunction
def th_add(x: Int, y: Int) -> Int:
    return x + y


class TwoHostChild(WorkChain):
    """A step in a thread (a nap, a report, an inline calcfunction), one at an ``await``, one more."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.input("long", valid_type=Bool, default=lambda: Bool(False))
        spec.output("y", valid_type=Int)
        spec.outline(cls.work, cls.rest, cls.done)

    def work(self):
        if self.inputs.long.value:
            self.report(LONG_NAP)
            time.sleep(_seconds("PLAIT_TWO_HOSTS_LONG"))
        else:
            time.sleep(_fraction(self.inputs.x.value) * _seconds("PLAIT_TWO_HOSTS_STEP"))
        self.report("awake")
        self.ctx.y = th_add(self.inputs.x, Int(1))

    async def rest(self):
        await asyncio.sleep(_fraction(self.inputs.x.value + 3) * _seconds("PLAIT_TWO_HOSTS_NAP"))

    def done(self):
        self.out("y", self.ctx.y)


class TwoHostChain(WorkChain):
    """An inline calcfunction, two submitted children (the daemon parks the chain), a nap, a sum."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("seed", valid_type=Int)
        spec.output("total", valid_type=Int)
        spec.outline(cls.setup, cls.launch, cls.rest, cls.collect)

    def _nap(self, shift: int) -> None:
        time.sleep(_fraction(self.inputs.seed.value + shift) * _seconds("PLAIT_TWO_HOSTS_STEP"))

    def setup(self):
        self.ctx.first = th_add(self.inputs.seed, Int(1))
        self._nap(1)

    def launch(self):
        seed = self.inputs.seed.value
        for i in range(2):
            child = self.submit(TwoHostChild, x=Int(10 * seed + i), long=Bool(is_long(seed) and i == 0))
            self.to_context(kids=append_(child))
        self._nap(2)

    async def rest(self):
        await asyncio.sleep(_fraction(self.inputs.seed.value + 5) * _seconds("PLAIT_TWO_HOSTS_NAP"))

    def collect(self):
        total = self.ctx.first.value + sum(kid.outputs.y.value for kid in self.ctx.kids)
        self.report("collected %d", total)
        self.out("total", th_add(Int(total), Int(0)))
