"""Waiting from scripts: ``submit(wait=True)``, ``await_processes`` (blocking and async), ``run_get_pk``.

The waiting tests run a real daemon (supervisor and worker subprocesses) on the test's profile.
"""

from __future__ import annotations

import pytest

import plait
from daemon.conftest import daemon  # noqa: F401 - the fixture
from plait import aawait_processes, await_processes, calcfunction, run_get_node, run_get_pk, submit
from plait.daemon.client import daemon_paths
from plait.engine.lifecycle import EngineError
from plait.orm import Int, Str, load_node
from plait.storage import get_backend, get_profile
from wf_library import Counter, Gate, add


def worker_log_text() -> str:
    folder = daemon_paths(get_profile()).logs
    return "".join(path.read_text(errors="replace") for path in sorted(folder.glob("worker-*.log")))


def test_submit_wait_blocks_until_the_daemon_ran_it(daemon):  # noqa: F811
    daemon(workers=1)
    node = submit(Counter, n=Int(2), wait=True, wait_interval=0.05)
    # the node returned is the terminated one, not the snapshot taken at submission
    assert node.is_finished_ok, (node.process_state, node.exit_message, node.exception)
    assert node.outputs.count.value == 2
    # the worker logged each report line once, in its own log
    log = worker_log_text()
    assert log.count(f"[{node.pk}|Counter|inc]: count is now 1") == 1, log[-2000:]
    assert log.count(f"[{node.pk}|Counter|inc]: count is now 2") == 1, log[-2000:]


def test_await_processes_times_out_naming_the_running_ones_then_waits_for_all(daemon, tmp_path):  # noqa: F811
    daemon(workers=1)
    gate = tmp_path / "gate"
    counters = [submit(Counter, n=Int(n)) for n in (1, 2)]
    await_processes(counters, wait_interval=0.05)
    assert all(c.is_finished_ok for c in counters)  # the nodes passed in are refreshed
    blocked = submit(Gate, path=Str(str(gate)))
    with pytest.raises(TimeoutError) as caught:
        await_processes([*counters, blocked], timeout=0.3, wait_interval=0.05)
    message = str(caught.value)
    assert message.endswith(f"still running: {blocked.pk}") and "1 of 3" in message, message
    gate.write_text("open")
    await_processes([blocked, *counters], timeout=60, wait_interval=0.05)
    assert blocked.is_finished_ok and blocked.outputs.opened.value == str(gate)


async def test_aawait_processes_keeps_the_loop_going(daemon, tmp_path):  # noqa: F811
    import asyncio

    daemon(workers=1)
    gate = tmp_path / "gate"
    node = submit(Gate, path=Str(str(gate)))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 5:
                gate.write_text("open")  # only a loop that goes on while waiting opens the gate
            await asyncio.sleep(0.02)

    ticker = asyncio.ensure_future(tick())
    try:
        await aawait_processes([node], timeout=60, wait_interval=0.05)
    finally:
        ticker.cancel()
    assert node.is_finished_ok and ticks >= 5
    # the blocking variant works in a thread whose loop runs (a notebook cell): no loop is re-entered
    await_processes([node], wait_interval=0.05)


def test_await_processes_without_a_runner_times_out():
    node = submit(Gate, path=Str("/nonexistent/never"))  # no daemon: nothing runs it
    with pytest.raises(TimeoutError, match=rf"still running: {node.pk}$"):
        await_processes([node], timeout=0.2, wait_interval=0.05)
    with pytest.raises(TimeoutError):
        plait.await_processes((node,), timeout=0)


def test_bad_arguments_are_refused_before_anything_is_stored():
    node = submit(Gate, path=Str("/nonexistent/never"))
    before = get_backend().count_nodes()
    with pytest.raises(ValueError, match="wait_interval must be a positive"):
        submit(Counter, n=Int(1), wait=True, wait_interval=0)
    assert get_backend().count_nodes() == before
    with pytest.raises(TypeError, match="a list of process nodes"):
        await_processes(node)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs process nodes"):
        await_processes([Int(1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="timeout must be None or"):
        await_processes([node], timeout=-1)
    with pytest.raises(ValueError, match="not stored"):
        from plait.orm import CalcFunctionNode

        await_processes([CalcFunctionNode()])


@calcfunction
def waits_inside(pk: Int) -> Int:
    await_processes([load_node(pk.value)])
    return Int(0)


def test_waiting_inside_a_process_is_refused_with_what_to_do():
    node = submit(Gate, path=Str("/nonexistent/never"))
    with pytest.raises(EngineError, match="ToContext"):
        run_get_node(waits_inside, Int(node.pk))


def test_run_get_pk_returns_the_outputs_and_the_pk():
    result, pk = run_get_pk(add, x=Int(1), y=Int(2))
    assert result.value == 3
    node = load_node(pk)
    assert node.is_finished_ok and node.outputs.result.pk == result.pk
    outputs, pk = run_get_pk(Counter, n=Int(1))
    assert outputs["count"].value == 1 and load_node(pk).is_finished_ok
