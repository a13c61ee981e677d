"""The daemon under faults: a worker killed with SIGKILL, a broker restart, load on one SQLite file,
thousands of processes waiting for children with few slots."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.test_resume import shape
from plait import run_get_node, submit
from plait.orm import Int, Str, load_node
from plait.storage import get_backend

from .conftest import wait_for

TERMINAL = ("finished", "excepted", "killed")


def all_done(pks: list[int]) -> bool:
    rows = get_backend().list_processes(pks=pks)
    return len(rows) == len(pks) and all(r["state"] in TERMINAL for r in rows)


def test_worker_killed_with_sigkill_mid_batch_everything_still_finishes_once(daemon):
    from wf_library import Batch

    handle = daemon(workers=2, lease=2.0)
    pks = [submit(Batch, seed=Int(i)).pk for i in range(6)]
    backend = get_backend()

    def busy_worker():
        holders = {
            r["lease_owner"]
            for r in backend.list_processes(states=["running", "waiting"])
            if r["lease_owner"]
        }
        return next((h for h in holders if ":worker:" in h), None)

    wait_for(lambda: busy_worker() is not None, 30, "a worker holding processes")
    victim = busy_worker()
    victim_pid = int(victim.split(":")[1])
    time.sleep(0.2)  # let it get into the middle of slow steps
    os.kill(victim_pid, signal.SIGKILL)
    orphaned = backend.held_by(victim)
    assert orphaned, "the killed worker held nothing: the test proves nothing"

    wait_for(lambda: all_done(pks), 90, "every work chain to finish after the crash", interval=0.2)
    assert {r["state"] for r in backend.list_processes(pks=orphaned)} == {"finished"}
    for i, pk in enumerate(pks):
        node = load_node(pk)
        assert node.is_finished_ok, (pk, node.process_state, node.exit_message, node.exception)
        assert node.outputs.total.value == 3 + i
        slow = [c for c in node.called if c.process_label == "Slow"]
        assert len(slow) == 3, [c.process_label for c in node.called]  # no child launched twice
        assert all(len([lbl for lbl, *_ in c.get_outgoing() if lbl == "tag"]) == 1 for c in slow)
        _, reference = run_get_node(Batch, seed=Int(i))  # the same work, without a crash
        assert shape(node) == shape(reference)
    # the supervisor replaced the dead worker
    wait_for(
        lambda: victim_pid not in handle.worker_pids() and len(handle.worker_pids()) == 2, 30, "a new worker"
    )


SUBMITTER = """
import os, sys
sys.path.insert(0, sys.argv[1])
from plait import submit
from plait.orm import Int
from wf_library import Counter
# keeps the workers busy until the test has done its CLI rounds (at least 30, at most 3,000)
for count in range(3000):
    if count >= 30 and os.path.exists(sys.argv[2]):
        break
    submit(Counter, n=Int(3))
"""


def test_two_workers_and_the_cli_on_one_sqlite_file_never_see_database_locked(daemon, tmp_path):
    """Two workers run a batch while the CLI lists, pauses and plays, and another script submits."""
    from wf_library import Counter, Gather

    handle = daemon(workers=2)
    pks = [submit(Counter, n=Int(5)).pk for _ in range(300)] + [
        submit(Gather, count=Int(3)).pk for _ in range(40)
    ]
    env = dict(os.environ)
    stop = tmp_path / "stop-submitting"
    submitter = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, str(Path(__file__).resolve().parents[1]), str(stop)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    cli = [sys.executable, "-m", "plait.cli.main"]
    outputs = []
    deadline = time.monotonic() + 120
    round_ = busy_rounds = 0
    # three rounds of the CLI while the workers run (the submitter keeps feeding them until `stop`)
    while round_ < 3 and time.monotonic() < deadline:
        round_ += 1
        busy_rounds += not all_done(pks) or submitter.poll() is None
        target = str(pks[round_ % len(pks)])
        for args in (
            ["process", "list", "-a", "--limit", "50"],
            ["process", "pause", target],
            ["process", "play", target],
        ):
            result = subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=120)
            outputs.append((args, result.returncode, result.stdout + result.stderr))
    stop.touch()
    assert submitter.wait(timeout=120) == 0, submitter.stderr.read()
    assert "locked" not in submitter.stderr.read()
    # whatever a pause left paused is played; then everything must finish
    for row in get_backend().list_processes(paused=True):
        subprocess.run([*cli, "process", "play", str(row["id"])], capture_output=True, env=env, timeout=120)
    everything = [r["id"] for r in get_backend().list_processes(states=None)]
    wait_for(lambda: all_done(everything), 120, "every process to finish", interval=0.2)
    assert {r["state"] for r in get_backend().list_processes(pks=everything)} == {"finished"}
    assert len(everything) >= len(pks) + 30
    assert busy_rounds >= 2, "the CLI did not run while the workers were busy"
    locked = [out for _, _, out in outputs if "locked" in out]
    assert locked == []
    failed = [(args, out) for args, code, out in outputs if code != 0 and "already" not in out]
    assert failed == [], failed[:3]
    logs = (get_backend().profile.daemon_path / "log").glob("worker-*.log")
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "database is locked" not in text
    assert handle.worker_pids()


def test_many_waiting_parents_hold_no_slots_and_do_not_deadlock(daemon, tmp_path, monkeypatch):
    """Far more parents than slots wait for children: they park, the children run, all finish."""
    from plait.daemon import client
    from wf_library import BehindGate

    monkeypatch.setattr(client, "start", _start_with_slots(client.start, 20))
    gate = tmp_path / "gate"
    # a batch submitted before the worker starts: it claims oldest first, so every parent runs
    # (and parks) before the children, which then wait at the gate in its 20 slots.  (A child that
    # waits at an await holds its slot: parents submitted behind 20 such children wait their turn.)
    pks = [submit(BehindGate, path=Str(str(gate))).pk for _ in range(150)]
    daemon(workers=1)
    backend = get_backend()

    def parked() -> int:
        return sum(
            1 for r in backend.list_processes(pks=pks) if r["state"] == "waiting" and r["lease_owner"] is None
        )

    wait_for(lambda: parked() >= 100, 90, "parents parked in the database", interval=0.2)
    workers = backend.list_workers()
    assert max((w["info"] or {}).get("held", 0) for w in workers) <= 20
    gate.write_text("open")
    wait_for(lambda: all_done(pks), 120, "every parent to finish once the gate opens", interval=0.2)
    assert {r["state"] for r in backend.list_processes(pks=pks)} == {"finished"}


def _start_with_slots(start, slots):
    def wrapped(profile=None, workers=1, **kwargs):
        kwargs["worker_slots"] = slots
        return start(profile, workers, **kwargs)

    return wrapped


def _rabbitmq_ready() -> None:
    from conftest import require_server

    require_server("RabbitMQ", "127.0.0.1", 5672)
    if shutil.which("rabbitmqctl") is None:
        if os.environ.get("PLAIT_CI"):
            pytest.fail("rabbitmqctl is missing")
        pytest.skip("rabbitmqctl is missing")


def _work_bells_restored() -> bool:
    """True when a queue is bound to a plait work exchange and two clients (worker, test) are connected."""
    from plait.broker.rabbitmq import exchange_names
    from plait.storage import get_profile

    work_exchange, _ = exchange_names(get_profile())

    def rabbitmqctl(*args: str) -> list[str]:
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
        return done.stdout.splitlines() if done.returncode == 0 else []

    bound = any(line.split("\t")[0] == work_exchange for line in rabbitmqctl("list_bindings", "source_name"))
    running = [line for line in rabbitmqctl("list_connections", "state") if line.strip() == "running"]
    return bound and len(running) >= 2


@pytest.mark.rabbitmq
def test_rabbitmq_restarted_while_processes_run(daemon, monkeypatch):
    """RabbitMQ stops and starts while processes run: they finish, the worker survives (same pid),
    and its bell works again afterwards (its database poll is slowed to 60 s, so only a bell can
    make it pick new work up quickly)."""
    import plait.storage
    from conftest import RABBITMQ_URL
    from plait.storage import create_profile
    from wf_library import Batch, Counter

    _rabbitmq_ready()
    create_profile("rmq", broker_url=RABBITMQ_URL, options={"daemon": {"poll_interval": 60.0}})
    monkeypatch.setenv("PLAIT_PROFILE", "rmq")
    plait.storage.reset()
    handle = daemon(workers=1, lease=5.0)
    worker = handle.worker_pids()
    pks = [submit(Batch, seed=Int(i)).pk for i in range(4)]
    time.sleep(0.3)
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    try:
        time.sleep(1.0)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    wait_for(lambda: all_done(pks), 120, "every process to finish across the broker restart", interval=0.2)
    assert {r["state"] for r in get_backend().list_processes(pks=pks)} == {"finished"}
    assert handle.worker_pids() == worker  # the worker rode the outage out
    # the robust connections retry every 5 s: on a loaded machine the first tries after start_app can
    # fail too, so wait until the worker's work queue is bound again and both clients are connected
    wait_for(_work_bells_restored, 90, "the worker and this test to reconnect to RabbitMQ", interval=0.5)
    started = time.monotonic()
    late = [submit(Counter, n=Int(1)).pk for _ in range(2)]
    wait_for(
        lambda: all_done(late),
        30,
        "work submitted after the restart to be picked up by its bell",
        interval=0.1,
    )
    assert time.monotonic() - started < 30  # well inside the 60 s poll: the bell woke the worker
