"""Processes for the exactly-once tests: they crash the interpreter (``os._exit``) where told.

``PLAIT_TEST_CRASH_AT`` names the place; the crash happens only in an interpreter that has it set,
so the same chain resumed in the test process (without it) runs through.
"""

from __future__ import annotations

import os
import time

from plait import ToContext, WorkChain, calcfunction
from plait.orm import Int


def crash_here(where: str) -> None:
    if os.environ.get("PLAIT_TEST_CRASH_AT") == where:
        os._exit(17)


@calcfunction
def plus_one(x: Int) -> Int:
    return Int(x.value + 1)


@calcfunction
def plus_two_crashing(x: Int) -> Int:
    crash_here("inside-calcfunction")
    return Int(x.value + 2)


@calcfunction
def slow_double(x: Int) -> Int:
    time.sleep(float(os.environ.get("PLAIT_TEST_SLOW", "1.5")))
    return Int(x.value * 2)


class FirstStepChain(WorkChain):
    """One step that submits a child and calls an inline calcfunction, then may crash (no checkpoint)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("result", valid_type=Int)
        spec.outline(cls.launch, cls.gather)

    def launch(self):
        from wf_library import Counter

        self.ctx.inline = plus_one(self.inputs.x)
        child = self.submit(Counter, n=Int(1))
        crash_here("first-step")
        return ToContext(child=child)

    def gather(self):
        total = self.ctx.inline.value + self.ctx.child.outputs.count.value
        self.out("result", plus_one(Int(total)))


class ThreeCalls(WorkChain):
    """One step with three inline calls; the middle one may crash its interpreter while it runs."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("result", valid_type=Int)
        spec.outline(cls.compute)

    def compute(self):
        a = plus_one(self.inputs.x)
        b = plus_two_crashing(a)
        c = plus_one(b)
        self.out("result", c)


class SubmitsSlowFunction(WorkChain):
    """Submits a slow calcfunction (a daemon child) and continues with its result."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("result", valid_type=Int)
        spec.outline(cls.launch, cls.finish)

    def launch(self):
        return ToContext(doubled=self.submit(slow_double, x=self.inputs.x))

    def finish(self):
        self.out("result", plus_one(self.ctx.doubled.outputs.result))


class AwaitsForever(WorkChain):
    """An async step that waits (at an await) until told to stop by a file."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("gate", valid_type=Int)
        spec.outline(cls.wait)

    async def wait(self):
        import asyncio

        path = os.environ["PLAIT_TEST_GATE"]
        while not os.path.exists(path):
            await asyncio.sleep(0.1)


class Parent(WorkChain):
    """Waits for one child: a parked parent in the daemon."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        return ToContext(child=self.submit(plus_one, x=self.inputs.x))

    def done(self):
        pass
