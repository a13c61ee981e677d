"""Fencing: a runner whose lease another took commits nothing more for that process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from plait import arun
from plait.engine import lifecycle
from plait.engine.lifecycle import LeaseLostError
from plait.engine.runner import Runner
from plait.orm import Int
from plait.storage import get_backend

TESTS = Path(__file__).resolve().parents[1]


def test_a_runner_that_lost_its_lease_lets_go_and_writes_nothing(monkeypatch, tmp_path):
    """Another runner took the process over while this one was cut off (its lease expired): on its
    next renewal this one notices, interrupts the process without a commit, and ``arun`` says so."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PLAIT_TEST_GATE", str(tmp_path / "gate"))
    from wf_crash import AwaitsForever

    backend = get_backend()

    async def main():
        runner = Runner.for_loop()
        runner.lease_seconds = 0.6  # renewals every 0.2 s
        task = asyncio.ensure_future(arun(AwaitsForever, gate=Int(1)))
        for _ in range(200):
            await asyncio.sleep(0.02)
            rows = [r for r in backend.list_processes() if r["process_label"] == "AwaitsForever"]
            if rows and rows[0]["state"] == "running":
                break
        pk = rows[0]["id"]
        before = backend.get_process(pk)
        other = "elsewhere:1:worker:taken"
        assert lifecycle.take_lease(pk, other, 60, force=True)  # the take-over
        with pytest.raises(LeaseLostError, match="taken over"):
            await asyncio.wait_for(task, 10)
        (tmp_path / "gate").write_text("open")
        await asyncio.sleep(0.5)  # a runner that did not let go would commit its end now
        after = backend.get_process(pk)
        return before, after

    before, after = asyncio.run(main())
    assert after["lease_owner"] == "elsewhere:1:worker:taken"
    assert after["state"] == before["state"] == "running"
    assert after["checkpoint_seq"] == before["checkpoint_seq"]


def test_a_stale_runner_cannot_commit_a_step(monkeypatch):
    """The lifecycle refuses every write from an owner that no longer holds the process."""
    monkeypatch.syspath_prepend(str(TESTS))
    from wf_library import Counter

    process = Counter(Counter.prepare_inputs({"n": Int(1)}))
    process._store_new(state=lifecycle.S.RUNNING, parent=None, owner="me:1:run:a", lease_seconds=60)
    assert lifecycle.take_lease(process.pk, "you:2:run:b", 60, force=True)
    with pytest.raises(LeaseLostError):
        process._commit(lifecycle.S.WAITING, checkpoint=process._make_checkpoint())
    assert get_backend().get_process(process.pk)["state"] == "running"
    assert not lifecycle.kill(process.node, "me:1:run:a", "late")
    assert get_backend().get_process(process.pk)["state"] == "running"


def test_a_stale_runner_cannot_end_an_abandoned_child(monkeypatch):
    """``end_abandoned`` (a re-run step ending the calls it did not repeat) is fenced by the caller's
    lease: a runner that lost the caller to a take-over ends none of its children."""
    monkeypatch.syspath_prepend(str(TESTS))
    from wf_library import Counter

    caller = Counter(Counter.prepare_inputs({"n": Int(1)}))
    caller._store_new(state=lifecycle.S.RUNNING, parent=None, owner="me:1:run:a", lease_seconds=60)
    child = Counter(Counter.prepare_inputs({"n": Int(1)}))
    child._store_new(state=lifecycle.S.RUNNING, parent=caller, owner="me:1:run:a", lease_seconds=60)
    assert lifecycle.take_lease(caller.pk, "you:2:run:b", 60, force=True)
    ended = lifecycle.end_abandoned(child.pk, caller.pk, "me:1:run:a", lifecycle.S.EXCEPTED, log="late")
    assert not ended
    assert get_backend().get_process(child.pk)["state"] == "running"
    ended = lifecycle.end_abandoned(
        child.pk, caller.pk, "you:2:run:b", lifecycle.S.EXCEPTED, log="not repeated"
    )
    assert ended
    assert get_backend().get_process(child.pk)["state"] == "excepted"
    assert [log["message"] for log in get_backend().get_logs(child.pk)][-1] == "not repeated"
