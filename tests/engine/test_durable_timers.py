"""Durable timers: ``await self.sleep(seconds)`` in an async work chain step, in this interpreter."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plait import WorkChain, resume, run_get_node
from plait.engine.lifecycle import EngineError, ProcessKilledError
from plait.engine.runner import Runner
from plait.orm import Float, QueryBuilder, WorkChainNode, load_node
from plait.storage import get_backend

TESTS = Path(__file__).resolve().parents[1]


class Sleeper(WorkChain):
    """Sleeps ``seconds`` in its second step, then returns when it woke."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("seconds", valid_type=Float)
        spec.output("woke", valid_type=Float)
        spec.outline(cls.before, cls.nap, cls.after)

    def before(self):
        self.ctx.before = 1

    async def nap(self):
        await self.sleep(self.inputs.seconds.value)
        self.ctx.woke = time.time()

    def after(self):
        self.out("woke", Float(self.ctx.woke).store())


class PlainSleeper(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.nap)

    def nap(self):
        asyncio.run(self.sleep(1))


def _row(pk: int) -> dict:
    return get_backend().get_process(pk)


def _asleep(pk: int) -> bool:
    row = _row(pk)
    return row is not None and (row["status"] or "").startswith("sleeping until")


def test_a_chain_sleeps_until_its_committed_wake_time(any_profile):
    outputs, node = run_get_node(Sleeper, seconds=Float(0.2))
    assert node.is_finished_ok
    wake_at = _row(node.pk)["wake_at"]
    assert wake_at is not None and outputs["woke"].value >= wake_at  # never before its time


def test_sleep_refuses_bad_seconds_and_a_plain_step():
    with pytest.raises(ValueError, match="must not be negative"):
        run_get_node(Sleeper, seconds=Float(-1))
    with pytest.raises(EngineError, match="inside an async def step"):
        run_get_node(PlainSleeper)


async def _launch_and_wait_asleep(seconds: float) -> tuple[Runner, asyncio.Task, int]:
    runner = Runner.for_loop()
    task = asyncio.ensure_future(runner.arun_get_node(Sleeper, {"seconds": Float(seconds)}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pks = [pk for pk, p in runner._processes.items() if isinstance(p, Sleeper)]
        if pks and await asyncio.to_thread(_asleep, pks[0]):
            return runner, task, pks[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the chain never went to sleep")


def test_a_paused_sleeping_chain_does_not_wake_until_played():
    async def scenario() -> tuple[int, float, float]:
        runner, task, pk = await _launch_and_wait_asleep(0.3)
        wake_at = (await asyncio.to_thread(_row, pk))["wake_at"]
        runner.pause(pk)
        while time.time() < wake_at + 0.3:  # its time passes while it is paused
            await asyncio.sleep(0.05)
        row = await asyncio.to_thread(_row, pk)
        assert row["paused"] and not task.done()
        played_at = time.time()
        runner.play(pk)
        outputs, node = await task
        assert node.is_finished_ok
        return pk, played_at, outputs["woke"].value

    _, played_at, woke = asyncio.run(scenario())
    assert woke >= played_at  # it woke after the play, not at its time while paused


def test_a_sleeping_chain_is_killed_at_once():
    async def scenario() -> int:
        runner, task, pk = await _launch_and_wait_asleep(600)
        runner.kill(pk, "not needed any more")
        with pytest.raises(ProcessKilledError):
            await task
        return pk

    pk = asyncio.run(scenario())
    node = load_node(pk)
    assert node.is_killed and "woke" not in node.outputs


SCRIPT = """
import sys
from plait import run
from plait.orm import Float
from engine.test_durable_timers import Sleeper
run(Sleeper, seconds=Float(float(sys.argv[1])))
"""


def test_a_sleep_survives_a_crash_and_resumes_for_the_time_left(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, "3"], env=env)
    try:
        deadline = time.monotonic() + 60
        pk = None
        while time.monotonic() < deadline and pk is None:
            found = QueryBuilder().append(WorkChainNode, project=["id"]).all(flat=True)
            if found and _asleep(found[0]):
                pk = found[0]
            time.sleep(0.05)
        assert pk is not None, "the chain never went to sleep"
        wake_at = _row(pk)["wake_at"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert load_node(pk).process_state.value == "waiting"  # it died asleep
    time.sleep(1.5)  # some of its time passes while nothing runs it
    resumed_at = time.time()
    outputs, node = resume(pk, force=True)
    assert node.is_finished_ok
    assert _row(pk)["wake_at"] == wake_at  # the same timer, not a new one
    assert outputs["woke"].value >= wake_at  # not before its time
    # only the time left: a new full sleep of 3 s would wake at resumed_at + 3 at the earliest
    assert outputs["woke"].value < resumed_at + 3
