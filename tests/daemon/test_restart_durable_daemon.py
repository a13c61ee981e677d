"""Fix and continue for a durable workflow under a real daemon (issue 13).

The restart is submitted (``plait.restart(pk, submit=True)``); a worker that imports the fixed code
runs it, it parks on its first new child and, woken, replays: the launches of the old run are
offered again on every replay, so none of them runs a second time.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plait import submit
from plait.engine.restart_from import restart
from plait.orm import Str, load_node
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
    first = await plait.call(square, x=Int(3))  # launch 0
    door = await plait.call(opened, path=gate)  # launch 1
    {rest}
"""

BUG = 'raise RuntimeError("a bug after two launches")'
FIX = """second = await plait.call(opened, path=Str(gate.value + ".2"))  # launch 2: parks on it
    return {"sum": await plait.call(total, a=first, b=door, c=second)}"""


def _rows(label: str) -> list[dict[str, Any]]:
    return [r for r in get_backend().list_processes() if r["process_label"] == label]


def _row(pk: int) -> dict[str, Any]:
    return get_backend().get_process(pk)


def _write(module: Path, rest: str) -> None:
    module.write_text(textwrap.dedent(FLOW).format(rest=rest))


def _new_worker(handle: DaemonHandle) -> None:
    (worker,) = handle.worker_pids()
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: any(p != worker for p in handle.worker_pids()), 60, "a new worker")


def test_a_submitted_restart_parks_and_its_replays_reuse_the_old_launches(
    daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    module = tmp_path / "restart_flow.py"
    _write(module, BUG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # every worker reads the file as it is now
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    import restart_flow

    try:
        handle = daemon(workers=1)
        gate = tmp_path / "gate"
        gate.touch()
        old = submit(restart_flow.flow, gate=Str(str(gate)))
        wait_for(lambda: _row(old.pk)["state"] in TERMINAL, 60, "the buggy workflow to end")
        assert load_node(old.pk).is_excepted
        assert len(_rows("square")) == 1 and len(_rows("opened")) == 1

        _write(module, FIX)  # the fix, imported here and by the next worker
        importlib.reload(restart_flow)
        _new_worker(handle)
        new = restart(old.pk, submit=True)
        assert new.get_attribute("restarted_from") == old.pk
        assert len(new.get_attribute("restart_reused")) == 2
        wait_for(
            lambda: (
                len(_rows("opened")) == 2
                and _row(new.pk)["lease_owner"] is None
                and (_row(new.pk)["status"] or "").startswith("waiting for 1 process")
            ),
            60,
            "the restarted workflow to park on its new child",
        )
        assert len(_rows("square")) == 1  # launches 0 and 1 were reused, not run
        Path(f"{gate}.2").touch()  # the new child ends: the workflow is woken and replays
        wait_for(lambda: _row(new.pk)["state"] in TERMINAL, 60, "the restarted workflow to end")
        done = load_node(new.pk)
        assert done.is_finished_ok, {k: _row(new.pk)[k] for k in ("state", "status", "exception")}
        assert done.outputs.sum.value == 9 + 1 + 1
        assert len(_rows("square")) == 1 and len(_rows("opened")) == 2 and len(_rows("total")) == 1
        assert {c.process_label for c in done.called} == {"opened", "total"}  # what it ran itself
    finally:
        sys.modules.pop("restart_flow", None)
