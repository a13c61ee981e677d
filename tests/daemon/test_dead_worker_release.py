"""A worker killed with SIGKILL: the supervisor frees its leases at once, another worker continues.

Without that, the processes it held would wait for their leases to expire (30 s by default; 60 s
here), and only then would another worker claim them.
"""

from __future__ import annotations

import os
import signal

from plait import submit
from plait.orm import Str, load_node
from plait.storage import get_backend

from .conftest import wait_for

LEASE = 60.0
#: far below LEASE: the processes must be taken over because their leases were released, not expired
TAKE_OVER_WITHIN = 20.0


def test_a_killed_workers_leases_are_released_at_once(daemon, any_profile, tmp_path):
    from wf_library import Gate

    gate = tmp_path / "gate"
    handle = daemon(workers=2, lease=LEASE)
    pks = [submit(Gate, path=Str(str(gate))).pk for _ in range(4)]
    backend = get_backend()

    def rows() -> list[dict]:
        return backend.list_processes(pks=pks)

    wait_for(
        lambda: all(r["state"] == "running" and r["lease_owner"] for r in rows()),
        60,
        "every gate held by a worker, waiting at its await",
    )
    victim = rows()[0]["lease_owner"]
    victim_pid = int(victim.split(":")[1])
    orphaned = backend.held_by(victim)
    assert orphaned and victim_pid in handle.worker_pids(), (victim, handle.worker_pids())
    os.kill(victim_pid, signal.SIGKILL)

    def taken_over() -> bool:
        owners = [r["lease_owner"] for r in backend.list_processes(pks=orphaned)]
        return all(owner and owner != victim for owner in owners)

    wait_for(
        taken_over,
        TAKE_OVER_WITHIN,
        f"another worker to hold the {len(orphaned)} process(es) of the killed worker "
        f"(their {LEASE:g} s leases must have been released, not left to expire)",
        interval=0.1,
    )
    assert all(w["pid"] != victim_pid for w in backend.list_workers())  # its worker row went too

    gate.touch()
    wait_for(lambda: all(r["state"] == "finished" for r in rows()), 60, "every gate to open", interval=0.1)
    for pk in pks:
        node = load_node(pk)
        assert node.is_finished_ok, (pk, node.process_state, node.exception)
        assert node.outputs.opened.value == str(gate)
    log = backend.profile.daemon_path / "log" / "supervisor.log"
    said = f"released the lease(s) of {len(orphaned)} process(es) held by worker pid {victim_pid}"
    # logged once the bell is rung too, which may come a moment after the release itself
    wait_for(lambda: said in log.read_text(), 30, "the supervisor to log the release")
