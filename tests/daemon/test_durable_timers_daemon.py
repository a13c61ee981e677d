"""Issue 13 under the daemon.

Durable timers: a sleeping chain is parked (no lease), survives a daemon restart and wakes at its
time, not before; a paused one does not wake until played; a kill ends it asleep.  Fix and
continue: a restart submitted to the daemon starts at the failed step and reuses steps 1-3.
"""

from __future__ import annotations

import time

from plait import submit
from plait.engine import control
from plait.orm import Float, load_node
from plait.storage import get_backend

from .conftest import wait_for

TERMINAL = ("finished", "excepted", "killed")


def _parked_asleep(pk: int) -> bool:
    row = get_backend().get_process(pk)
    return (row["status"] or "").startswith("sleeping until") and row["lease_owner"] is None


def test_sleepers_survive_a_daemon_restart_and_honour_pause_and_kill(daemon):
    from engine.test_durable_timers import Sleeper

    handle = daemon(workers=1)
    woken = submit(Sleeper, seconds=Float(6))
    paused = submit(Sleeper, seconds=Float(1))
    killed = submit(Sleeper, seconds=Float(600))
    for node in (woken, paused, killed):
        wait_for(lambda n=node: _parked_asleep(n.pk), 60, f"process {node.pk} to park asleep")
    wake_at = get_backend().get_process(woken.pk)["wake_at"]

    assert control.pause([paused.pk])[paused.pk]
    assert control.kill([killed.pk])[killed.pk]
    handle.stop()  # the daemon restarts while they sleep
    daemon(workers=1)
    assert time.time() < wake_at, "the restart took longer than the sleep: nothing is measured"

    # the paused one's time passes: it does not wake
    wait_for(lambda: time.time() > get_backend().get_process(paused.pk)["wake_at"] + 1, 30, "its time")
    row = get_backend().get_process(paused.pk)
    assert row["paused"] and row["state"] == "waiting"
    played_at = time.time()
    assert control.play([paused.pk])[paused.pk] == "played"

    for node in (woken, paused):
        wait_for(lambda n=node: get_backend().get_process(n.pk)["state"] in TERMINAL, 60, "it to finish")
    woke = load_node(woken.pk).outputs.woke.value
    assert wake_at <= woke <= wake_at + 1  # at its time (within a second), never before
    assert load_node(paused.pk).is_finished_ok
    assert load_node(paused.pk).outputs.woke.value >= played_at
    assert load_node(killed.pk).is_killed and "woke" not in load_node(killed.pk).outputs


def test_a_restart_submitted_to_the_daemon_starts_at_the_failed_step(daemon, tmp_path, monkeypatch):
    """Fix and continue through the daemon: the worker starts the new chain at its checkpoint."""
    import os

    from engine.test_restart_from_step import _count, _write
    from plait import run_get_node
    from plait.engine.restart_from import restart
    from plait.orm import CalcFunctionNode, CalcJobNode, Int

    monkeypatch.syspath_prepend(str(tmp_path))
    module = _write(tmp_path, "restart_wf_daemon")
    try:
        try:
            run_get_node(module.Pipeline, x=Int(1))
        except AttributeError:
            pass
        from plait.orm import QueryBuilder, WorkChainNode

        old = QueryBuilder().append(WorkChainNode).all(flat=True)[-1]
        assert old.is_excepted
        _write(tmp_path, "restart_wf_daemon", bug="self.ctx.b")  # the fix
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
        daemon(workers=1)
        new = restart(old.pk, submit=True)
        wait_for(lambda: get_backend().get_process(new.pk)["state"] in TERMINAL, 60, "the restart to end")
    finally:
        import sys

        sys.modules.pop("restart_wf_daemon", None)
    new = load_node(new.pk)
    assert new.is_finished_ok, new.exception
    assert new.outputs.result.value == 5
    assert (_count(CalcFunctionNode), _count(CalcJobNode)) == (3, 1)
