"""Durable workflows used by tests/engine/test_durable_workflows.py (importable, so resumable)."""

from __future__ import annotations

import asyncio
import os

import plait
from plait.engine.durable import call, workflow
from plait.orm import Int

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
