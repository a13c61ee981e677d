"""Durable workflows used by tests/engine/test_durable_workflows.py (importable, so resumable)."""

from __future__ import annotations

import asyncio
import os
import time

import plait
from plait.engine.durable import call, workflow
from plait.orm import Float, Int, Str

#: set by a test: the workflow's process exits (a crash) right after this many squares finished
CRASH_AFTER = "PLAIT_TEST_DURABLE_CRASH_AFTER"
#: when set, the replay launches other inputs (a non-deterministic workflow)
SHIFT = "PLAIT_TEST_DURABLE_SHIFT"


@plait.calcfunction
def square(x: Int) -> Int:
    return Int(x.value * x.value)


@plait.calcfunction
def total(**values: Int) -> Int:
    return Int(sum(v.value for v in values.values()))


@workflow
async def sum_of_squares(n: Int) -> dict[str, Int]:
    """Square 0..n-1 concurrently, then add the squares."""
    shift = int(os.environ.get(SHIFT, "0"))
    squares = await asyncio.gather(*(call(square, x=Int(i + shift)) for i in range(n.value)))
    crash_after = os.environ.get(CRASH_AFTER)
    if crash_after is not None and len(squares) >= int(crash_after):
        os._exit(17)  # the interpreter dies with the squares recorded and the sum not yet launched
    return {"sum": await call(total, **{f"v{i}": q for i, q in enumerate(squares)})}


#: set by a test: the file a gated child waits for (it polls, at most a minute)
GATE_TIMEOUT = 60.0


@plait.calcfunction
def gated(path: Str) -> Int:
    """Return 1 once the file ``path`` exists (polls; gives up, raising, after a minute)."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(path.value):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path.value} never opened")
        time.sleep(0.05)
    return Int(1)


@workflow
async def gated_pipeline(n: Int, gate: Str, nap: Float) -> dict[str, Int]:
    """Square 0..n-1, wait for a gated child, sleep ``nap`` seconds (a durable timer), add up."""
    squares = await asyncio.gather(*(call(square, x=Int(i)) for i in range(n.value)))
    opened = await plait.arun(gated, path=gate)  # arun inside a workflow is plait.call
    await plait.sleep(nap.value)
    return {"sum": await call(total, gate=opened, **{f"v{i}": q for i, q in enumerate(squares)})}


@workflow
async def sleepy(nap: Float) -> dict[str, Float]:
    """Sleep ``nap`` seconds on a durable timer, then return when it woke."""
    await plait.sleep(nap.value)
    return {"woke": await call(clock, after=nap)}


@plait.calcfunction
def clock(after: Float) -> Float:
    """The time now (a workflow returns stored nodes: a calcfunction makes this one)."""
    return Float(time.time())


class AddOne(plait.WorkChain):
    """A work chain a workflow launches."""

    @classmethod
    def define(cls, spec):  # type: ignore[no-untyped-def]
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("y", valid_type=Int)
        spec.outline(cls.add)

    def add(self):  # type: ignore[no-untyped-def]
        self.out("y", _plus_one(self.inputs.x))


@plait.calcfunction
def _plus_one(x: Int) -> Int:
    return Int(x.value + 1)


@workflow
async def through_a_chain(x: Int) -> dict[str, Int]:
    """Launch a work chain and return its output (a workflow calling a work chain)."""
    outputs = await call(AddOne, x=x)
    return {"y": outputs["y"]}


class RunsAWorkflow(plait.WorkChain):
    """A work chain that launches a durable workflow as its child."""

    @classmethod
    def define(cls, spec):  # type: ignore[no-untyped-def]
        super().define(spec)
        spec.input("n", valid_type=Int)
        spec.output("sum", valid_type=Int)
        spec.outline(cls.launch, cls.collect)

    def launch(self):  # type: ignore[no-untyped-def]
        return plait.ToContext(flow=self.submit(sum_of_squares, n=self.inputs.n))

    def collect(self):  # type: ignore[no-untyped-def]
        self.out("sum", self.ctx.flow.outputs.sum)
