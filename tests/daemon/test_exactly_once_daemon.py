"""Exactly once under the daemon: a worker killed while it runs a submitted process function, and
slots that waiting processes do not hold."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from plait import submit
from plait.orm import Int, load_node
from plait.storage import get_backend

from .conftest import wait_for
from .test_daemon_faults import _start_with_slots, all_done

TESTS = Path(__file__).resolve().parents[1]


def test_a_submitted_process_function_whose_worker_dies_runs_again_once(daemon, monkeypatch):
    """The defect: the re-claimed calcfunction ended `excepted: ... is a process function, which cannot
    be resumed`, and failed its parent.  It has no state to lose: another worker runs it again."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PLAIT_TEST_SLOW", "3")
    handle = daemon(workers=2, lease=30.0)
    pks = [submit(__import__("wf_crash").SubmitsSlowFunction, x=Int(i)).pk for i in range(4)]
    backend = get_backend()

    def running_function():
        rows = backend.list_processes(states=["running"])
        return next((r for r in rows if r["process_label"] == "slow_double" and r["lease_owner"]), None)

    wait_for(lambda: running_function() is not None, 60, "a worker running the slow calcfunction")
    victim_row = running_function()
    victim = victim_row["lease_owner"]
    os.kill(int(victim.split(":")[1]), signal.SIGKILL)
    lease_left = victim_row["lease_expires"] - time.time()
    assert lease_left > 10, "the lease is too short for this test to tell release from expiry"
    # the supervisor saw the worker die and releases its leases at once: not after the lease expires
    wait_for(
        lambda: (backend.get_process(victim_row["id"]) or {}).get("lease_owner") != victim,
        lease_left - 5,
        "the dead worker's lease to be released before it expires",
        interval=0.1,
    )

    wait_for(lambda: all_done(pks), 90, "every chain to finish after the kill", interval=0.2)
    for i, pk in enumerate(pks):
        node = load_node(pk)
        assert node.is_finished_ok, (pk, node.process_state, node.exit_message, node.exception)
        assert node.outputs.result.value == 2 * i + 1
        functions = [c for c in node.called if c.process_label == "slow_double"]
        assert len(functions) == 1 and functions[0].is_finished_ok  # run again as the same node, once
        assert len([lbl for lbl, *_ in functions[0].get_outgoing() if lbl == "result"]) == 1
    interrupted = load_node(victim_row["id"])
    assert interrupted.is_finished_ok
    assert "cannot be resumed" not in (interrupted.exception or "")
    handle.stop()


def test_processes_waiting_at_an_await_hold_no_slot(daemon, tmp_path, monkeypatch):
    """The defect: 200 children waiting at an `await` filled every slot, so parents submitted after
    them could not even start (and so could not park).  A slot is held only while step code runs."""
    from plait.daemon import client

    monkeypatch.syspath_prepend(str(TESTS))
    gate = tmp_path / "gate"
    monkeypatch.setenv("PLAIT_TEST_GATE", str(gate))
    monkeypatch.setattr(client, "start", _start_with_slots(client.start, 10))
    wf_crash = __import__("wf_crash")
    waiting = [submit(wf_crash.AwaitsForever, gate=Int(i)).pk for i in range(10)]
    daemon(workers=1)
    backend = get_backend()
    wait_for(
        lambda: all(
            r["state"] == "running" and r["lease_owner"] for r in backend.list_processes(pks=waiting)
        ),
        60,
        "ten processes waiting at an await in the worker's ten slots",
    )
    parents = [submit(wf_crash.Parent, x=Int(i)).pk for i in range(60)]
    wait_for(lambda: all_done(parents), 90, "every parent to finish while the slots wait", interval=0.2)
    assert {r["state"] for r in backend.list_processes(pks=parents)} == {"finished"}
    assert not all_done(waiting)  # the gate is still closed: they really held their place all along
    gate.write_text("open")
    wait_for(lambda: all_done(waiting), 60, "the waiting processes to finish", interval=0.2)
