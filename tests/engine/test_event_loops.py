"""The blocking API never re-enters a loop: plain scripts, running loops, step threads, async steps."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import threading
import time

import pytest

from plait import WorkChain, arun, calcfunction, run, run_get_node
from plait.engine.loop_thread import engine_loop
from plait.orm import Int
from wf_library import Bench, Counter, Nested, add, add_multiply, slow_python


def test_run_without_a_loop_leaves_no_loop_behind():
    assert run(Counter, n=Int(2))["count"].value == 2
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_run_in_a_thread_whose_loop_is_running_does_not_touch_that_loop():
    """What Jupyter does: a cell calls the blocking run while the kernel's loop runs."""
    seen = {}

    async def cell():
        loop = asyncio.get_running_loop()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        outputs, node = run_get_node(Counter, n=Int(2))
        seen["count"] = outputs["count"].value
        seen["loop_untouched"] = asyncio.get_running_loop() is loop
        seen["node_ok"] = node.is_finished_ok
        task.cancel()
        # and the async API works on this same loop afterwards
        seen["arun"] = (await arun(Counter, n=Int(1)))["count"].value
        return ticks

    asyncio.run(cell())
    assert seen == {"count": 2, "loop_untouched": True, "node_ok": True, "arun": 1}
    assert engine_loop().is_running()


def test_process_functions_run_straight_through_even_inside_a_running_loop():
    async def cell():
        return add(Int(1), Int(2)).value, add_multiply(Int(1), Int(1), Int(5)).value

    assert asyncio.run(cell()) == (3, 10)


def test_blocking_run_inside_an_async_step_is_refused_clearly():
    class BadAsync(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.go)

        async def go(self):
            run(Counter, n=Int(1))

    with pytest.raises(RuntimeError, match=r"use `await plait\.arun"):
        run(BadAsync)


def test_nested_blocking_runs_do_not_deadlock_when_many_wait_at_once():
    """More nested blocking runs than step threads may run at once: blocked threads give their place up."""

    class Fan(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.fan, cls.done)

        def fan(self):
            for _ in range(12):
                self.to_context(nested=self.submit(Nested))

        def done(self):
            pass

    # Fan is defined locally: it runs in this interpreter only, which is fine for run()
    _, node = run_get_node(Fan)
    assert node.is_finished_ok
    assert len(node.called) == 12 and all(c.is_finished_ok for c in node.called)


@pytest.mark.parametrize(
    ("kind", "limit"),
    [
        # waiting user code (I/O, a lock, sleep) holds no GIL: the loop must not notice it at all
        ("sleep", 0.1),
        # CPU-bound user code competes with the loop for the GIL (CPython), so a callback can be
        # slowed, but the 0.3 s step itself must never run on the loop
        ("burn", 0.25),
    ],
)
def test_slow_plain_steps_do_not_block_the_loop(caplog, kind, limit):
    """A plain step taking 0.3 s runs in a thread: no loop callback takes that long."""

    class Busy(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.work)

        def work(self):
            if kind == "sleep":
                time.sleep(0.3)
            else:
                slow_python(0.3)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = limit
        await arun(Busy)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio.run(main())
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert not slow, slow


def _gc_pauses() -> tuple[list[tuple[float, float]], object]:
    """Record every garbage-collector pass as a (start, end) window in time.time()."""
    windows: list[tuple[float, float]] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.time())
        elif started:
            windows.append((started.pop(), time.time()))

    gc.callbacks.append(on_gc)
    return windows, on_gc


def _time_outside_gc(record: logging.LogRecord, windows: list[tuple[float, float]]) -> float:
    took = float(re.search(r"took ([0-9.]+) seconds", record.getMessage()).group(1))
    end = record.created
    start = end - took
    in_gc = sum(max(0.0, min(end, b) - max(start, a)) for a, b in windows)
    return took - in_gc


def test_five_hundred_work_chains_in_debug_mode_without_slow_callbacks(caplog):
    """500 concurrent work chains on one loop in asyncio debug mode: no callback may take > 50 ms.

    The time CPython's cyclic garbage collector runs inside a callback is not
    the engine's doing (it scales with the whole interpreter's heap, pytest's
    included), so each GC pass is timed and subtracted; the objects that exist
    before the test are frozen out of the collector first, as the daemon
    worker does at start.  Everything else a callback spends counts.
    """
    gc.collect()
    gc.freeze()
    windows, hook = _gc_pauses()

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.05
        results = await asyncio.gather(*(arun(Bench, i=Int(i)) for i in range(500)))
        return [r["result"].value for r in results]

    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            values = asyncio.run(main())
    finally:
        gc.callbacks.remove(hook)
        gc.unfreeze()
    assert values == [i + 2 for i in range(500)]
    slow = [
        f"{_time_outside_gc(r, windows):.3f}s outside GC: {r.getMessage()[:300]}"
        for r in caplog.records
        if "took" in r.getMessage() and _time_outside_gc(r, windows) > 0.05
    ]
    assert not slow, slow[:5]


def test_calcfunction_from_another_thread_uses_its_own_connection():
    @calcfunction
    def double(x: Int):
        return x * 2

    results = []

    def work(i):
        results.append(double(Int(i)).value)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [2 * i for i in range(8)]


def test_the_slow_callback_check_catches_a_blocking_async_step(caplog):
    """The detector above is not blind: an async step that blocks the loop 80 ms is caught."""

    class Blocking(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.block)

        async def block(self):
            time.sleep(0.08)

    windows, hook = _gc_pauses()

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.05
        await arun(Blocking)

    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            asyncio.run(main())
    finally:
        gc.callbacks.remove(hook)
    slow = [r for r in caplog.records if "took" in r.getMessage() and _time_outside_gc(r, windows) > 0.05]
    assert len(slow) == 1


def test_awaiting_a_process_leaves_no_plait_task_on_the_callers_loop():
    """A notebook's loop keeps nothing of plait running once its processes are done."""

    async def cell():
        await arun(Counter, n=Int(2))
        await asyncio.sleep(0)
        return sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    assert asyncio.run(cell()) == []


def test_slow_user_steps_do_not_hold_up_other_processes_commits():
    """Two chains sleeping in plain steps; a quick chain launched after them still ends first."""
    finished: list[str] = []

    class Sleepy(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.nap, cls.done)

        def nap(self):
            time.sleep(1.5)

        def done(self):
            finished.append("sleepy")

    class Quick(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.one, cls.two, cls.three)

        def one(self):
            pass

        def two(self):
            pass

        def three(self):
            finished.append("quick")

    async def main():
        sleepers = [asyncio.ensure_future(arun(Sleepy)) for _ in range(2)]
        await asyncio.sleep(0.2)  # both are asleep in their steps now
        await arun(Quick)
        await asyncio.gather(*sleepers)

    asyncio.run(main())
    assert finished == ["quick", "sleepy", "sleepy"]


def test_a_calculation_job_checks_its_options_off_the_loop(monkeypatch):
    """Validating a calculation job's inputs loads its computer (a database read, a plugin lookup): with
    1,000 jobs launched at once that stalled the loop for 1.8 s; it runs in a thread now."""
    from plait import arun_get_node
    from plait.calculations.shell import ShellJob
    from plait.engine import job_options

    threads: list[int] = []
    check = job_options.check_job_options

    def recording(*args, **kwargs):
        threads.append(threading.get_ident())
        return check(*args, **kwargs)

    monkeypatch.setattr(job_options, "check_job_options", recording)

    async def main() -> int:
        _, node = await arun_get_node(ShellJob, command="true")
        assert node.is_finished_ok, node.exit_message
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads and loop_thread not in threads
