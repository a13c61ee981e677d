"""Durable workflows under a real daemon (issue 13).

While its launches wait for an unfinished child the workflow is parked (no lease, no slot);
kill -9 of the worker and the replay on wake run nothing again that had finished; a durable
timer parks it until its time; a pause keeps a sleeping workflow asleep, a kill ends it.
"""

from __future__ import annotations

import os
import signal
import time

from plait import submit
from plait.engine import control
from plait.orm import Float, Int, Str, load_node
from plait.storage import get_backend

from .conftest import wait_for

TERMINAL = ("finished", "excepted", "killed")


def _count(label: str) -> int:
    return sum(1 for r in get_backend().list_processes() if r["process_label"] == label)


def _parked(pk: int, status: str) -> bool:
    row = get_backend().get_process(pk)
    return (
        row["lease_owner"] is None and row["state"] == "waiting" and (row["status"] or "").startswith(status)
    )


def test_workflow_parks_survives_kill_9_and_replays_only_new_work(daemon, tmp_path):
    from durable_library import gated_pipeline, sleepy

    handle = daemon(workers=1)
    gate = tmp_path / "gate"
    flow = submit(gated_pipeline, n=Int(3), gate=Str(str(gate)), nap=Float(1.0))
    asleep = submit(sleepy, nap=Float(600))
    paused = submit(sleepy, nap=Float(0.5))
    # it waits for the gated child holding no lease: parked, not in a slot
    wait_for(lambda: _parked(flow.pk, "waiting for 1 process"), 60, "the workflow to park on its child")
    assert _count("square") == 3
    for node in (asleep, paused):
        wait_for(lambda n=node: _parked(n.pk, "sleeping until"), 60, f"{node.pk} to park asleep")
    assert control.pause([paused.pk])[paused.pk]
    assert control.kill([asleep.pk])[asleep.pk]

    (worker,) = handle.worker_pids()
    os.kill(worker, signal.SIGKILL)  # the worker dies while the workflow is parked
    wait_for(lambda: any(p != worker for p in handle.worker_pids()), 60, "a new worker")
    gate.touch()
    wait_for(lambda: _parked(flow.pk, "sleeping until"), 60, "the replayed workflow to sleep")
    wait_for(lambda: get_backend().get_process(flow.pk)["state"] in TERMINAL, 60, "the workflow to end")
    node = load_node(flow.pk)
    assert node.is_finished_ok, node.get_report()  # type: ignore[attr-defined]
    assert node.outputs.sum.value == 0 + 1 + 4 + 1
    assert _count("square") == 3 and _count("total") == 1  # the replays ran nothing again

    assert load_node(asleep.pk).is_killed
    time.sleep(1.0)  # the paused sleeper's time has passed: it does not wake
    row = get_backend().get_process(paused.pk)
    assert row["paused"] and row["state"] == "waiting"
    assert control.play([paused.pk])[paused.pk] == "played"
    wait_for(lambda: get_backend().get_process(paused.pk)["state"] in TERMINAL, 60, "the played one to end")
    row = get_backend().get_process(paused.pk)
    assert load_node(paused.pk).is_finished_ok, {k: row[k] for k in ("state", "status", "exception")}
