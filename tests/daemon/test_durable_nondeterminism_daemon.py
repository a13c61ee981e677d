"""Durable workflows parked on their children under a real daemon: non-determinism, pause and play.

A workflow parked on a child whose code is changed (a new worker imports the change) replays a
different launch at a recorded position when the child wakes it: it ends paused, with the
``NonDeterminismError`` naming the position and both launches as its status; with the code fixed
back, ``play`` finishes it.  And a workflow paused while parked does not run when its child ends,
until it is played.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plait import submit
from plait.engine import control
from plait.orm import Float, Int, Str, load_node
from plait.storage import get_backend

from .conftest import DaemonHandle, wait_for

TERMINAL = ("finished", "excepted", "killed")

FLOW = """
import os
import time

import plait
from plait.orm import Int, Str


@plait.calcfunction
def square(x: Int) -> Int:
    return Int(x.value * x.value)


@plait.calcfunction
def cube(x: Int) -> Int:
    return Int(x.value ** 3)


@plait.calcfunction
def opened(path: Str) -> Int:
    deadline = time.monotonic() + 60
    while not os.path.exists(path.value):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {{path.value}} never opened")
        time.sleep(0.05)
    return Int(1)


@plait.calcfunction
def total(**values: Int) -> Int:
    return Int(sum(v.value for v in values.values()))


@plait.workflow
async def flow(gate: Str):
    first = await plait.call({first}, x=Int(2))  # launch 0
    door = await plait.call(opened, path=gate)  # launch 1: parked on it
    return {{"sum": await plait.call(total, a=first, b=door)}}
"""


def _rows(label: str) -> list[dict[str, Any]]:
    return [r for r in get_backend().list_processes() if r["process_label"] == label]


def _row(pk: int) -> dict[str, Any]:
    return get_backend().get_process(pk)


def _parked(pk: int, status: str) -> bool:
    row = _row(pk)
    return (
        row["lease_owner"] is None and row["state"] == "waiting" and (row["status"] or "").startswith(status)
    )


def _new_worker(handle: DaemonHandle) -> None:
    """kill -9 the one worker and wait for its successor (which imports the code as it is now)."""
    (worker,) = handle.worker_pids()
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: any(p != worker for p in handle.worker_pids()), 60, "a new worker")


def test_changed_code_at_a_recorded_launch_pauses_the_parked_workflow_and_play_finishes_it_fixed(
    daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    module = tmp_path / "nd_flow.py"
    module.write_text(textwrap.dedent(FLOW.format(first="square")))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # every worker reads the file as it is now
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    import nd_flow

    try:
        handle = daemon(workers=1)
        gate = tmp_path / "gate"
        node = submit(nd_flow.flow, gate=Str(str(gate)))
        wait_for(
            lambda: bool(_rows("opened")) and _parked(node.pk, "waiting for 1 process"),
            60,
            "the workflow to park on its gated child",
        )
        (square,) = _rows("square")

        # the code changes while it is parked: launch 0 is now another class
        module.write_text(textwrap.dedent(FLOW.format(first="cube")))
        _new_worker(handle)
        gate.touch()  # the child ends and wakes the workflow, which replays with the changed code
        wait_for(lambda: bool(_row(node.pk)["paused"]), 60, "the workflow to pause on the non-determinism")
        row = _row(node.pk)
        assert row["state"] == "waiting" and row["lease_owner"] is None
        status = row["status"] or ""
        assert "non-determinism" in status, status
        # the reason names the position and both launches: the recorded one and the replay's
        assert "launch 0" in status and "square" in status and f"process {square['id']}" in status, status
        assert "cube" in status, status
        assert _rows("cube") == [] and _rows("total") == []  # nothing launched at or after it
        assert len(_rows("opened")) == 1 and len(_rows("square")) == 1
        report = " ".join(log["message"] for log in get_backend().get_logs(node.pk))
        assert "launch 0" in report and "cube" in report, report

        # fixed back, played: it replays from the top and finishes, running only the new work
        module.write_text(textwrap.dedent(FLOW.format(first="square")))
        _new_worker(handle)
        assert control.play([node.pk])[node.pk] == "played"
        wait_for(lambda: _row(node.pk)["state"] in TERMINAL, 60, "the played workflow to end")
        done = load_node(node.pk)
        assert done.is_finished_ok, {k: _row(node.pk)[k] for k in ("state", "status", "exception")}
        assert done.outputs.sum.value == 4 + 1
        assert len(_rows("square")) == 1 and len(_rows("opened")) == 1 and len(_rows("total")) == 1
        assert _rows("cube") == []
    finally:
        sys.modules.pop("nd_flow", None)


def test_pause_and_play_while_parked_on_a_child(daemon, tmp_path: Path):
    from durable_library import gated, gated_pipeline, square

    daemon(workers=1)
    gate = tmp_path / "gate"
    node = submit(gated_pipeline, n=Int(2), gate=Str(str(gate)), nap=Float(0.0))
    label = gated.process_class.process_label_string()
    wait_for(
        lambda: bool(_rows(label)) and _parked(node.pk, "waiting for 1 process"),
        60,
        "the workflow to park on its gated child",
    )
    (child,) = _rows(label)

    # paused and played while its child still runs: it stays parked on the child, holding nothing
    assert control.pause([node.pk])[node.pk]
    row = _row(node.pk)
    assert row["paused"] and row["state"] == "waiting" and row["lease_owner"] is None
    assert control.play([node.pk])[node.pk] == "played"
    assert not _row(node.pk)["paused"] and _parked(node.pk, "waiting for 1 process")

    # paused again, then the child ends: the wake does not run it
    assert control.pause([node.pk])[node.pk]
    gate.touch()
    wait_for(lambda: _row(child["id"])["state"] in TERMINAL, 60, "the child to end")
    marker = submit(square, x=Int(7))  # claimed after the wake, and after the workflow if it could run
    wait_for(lambda: _row(marker.pk)["state"] in TERMINAL, 60, "the marker to end")
    row = _row(node.pk)
    assert row["paused"] and row["state"] == "waiting" and row["lease_owner"] is None, row
    assert _rows("total") == []

    assert control.play([node.pk])[node.pk] == "played"
    wait_for(lambda: _row(node.pk)["state"] in TERMINAL, 60, "the played workflow to end")
    done = load_node(node.pk)
    assert done.is_finished_ok, {k: _row(node.pk)[k] for k in ("state", "status", "exception")}
    assert done.outputs.sum.value == 0 + 1 + 1
    assert len(_rows("square")) == 2 + 1 and len(_rows("total")) == 1  # the marker is the third square
