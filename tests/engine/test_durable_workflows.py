"""Durable async workflows (issue 13): a plain async def with asyncio.gather, recorded and replayed."""

from __future__ import annotations

from pathlib import Path

import pytest

import plait
from durable_library import square, sum_of_squares
from plait.engine.durable import workflow
from plait.orm import Int, LinkType, WorkFunctionNode

TESTS = Path(__file__).resolve().parents[1]


def test_gather_of_calcfunctions_runs_as_recorded_children(any_profile):
    outputs, node = plait.run_get_node(sum_of_squares, n=Int(4))
    assert outputs["sum"].value == 0 + 1 + 4 + 9
    assert isinstance(node, WorkFunctionNode)
    assert node.is_finished_ok
    assert node.get_attribute("durable_workflow") is True
    called = [child for _, link, child in node.get_outgoing((LinkType.CALL_CALC,))]
    assert len(called) == 5  # four squares and the total, each a recorded child


def test_plain_function_is_refused():
    with pytest.raises(TypeError, match="async def"):
        workflow(lambda: None)  # type: ignore[arg-type]


def test_call_outside_a_workflow_is_refused(any_profile):
    from plait.engine.durable import call
    from plait.engine.lifecycle import EngineError

    with pytest.raises(EngineError, match=r"inside a running @plait\.workflow"):
        import asyncio

        asyncio.run(call(square, x=Int(2)))


CRASH_SCRIPT = """
import sys
from plait import run
from plait.orm import Int
from durable_library import sum_of_squares
run(sum_of_squares, n=Int(int(sys.argv[1])))
print("not reached")
"""


def _crash_after_squares(tmp_env: dict[str, str], n: int = 3) -> int:
    """Run the workflow in a subprocess that dies (os._exit) after its ``n`` squares finished."""
    import os
    import subprocess
    import sys

    from durable_library import CRASH_AFTER
    from plait.storage import get_backend

    env = dict(os.environ, PYTHONPATH=str(TESTS), **{CRASH_AFTER: str(n)}, **tmp_env)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(n)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stdout + proc.stderr
    rows = [r for r in get_backend().list_processes() if r["process_label"] == "sum_of_squares"]
    return rows[-1]["id"]  # the newest


def _count(label: str) -> int:
    from plait.storage import get_backend

    return sum(1 for r in get_backend().list_processes() if r["process_label"] == label)


def test_resume_after_crash_replays_and_runs_only_new_work():
    pk = _crash_after_squares({})
    assert _count("square") == 3 and _count("total") == 0
    outputs, node = plait.resume(pk)
    assert node.pk == pk and node.is_finished_ok
    assert outputs["sum"].value == 0 + 1 + 4
    assert _count("square") == 3  # replayed from the record, not run again
    assert _count("total") == 1


def _wait_for(condition, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_non_determinism_pauses_and_play_after_the_fix_finishes(monkeypatch):
    """A replay that launches other inputs pauses the workflow (reported); fixed and played, it ends."""
    import threading

    from durable_library import SHIFT
    from plait.engine import control
    from plait.orm import load_node
    from plait.storage import get_backend

    pk = _crash_after_squares({})
    monkeypatch.setenv(SHIFT, "1")  # the "changed code": launch 0 now squares 1, not 0
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(plait.resume(pk)), daemon=True)
    thread.start()
    _wait_for(lambda: get_backend().get_process(pk)["paused"], 30, "the workflow to pause")
    row = get_backend().get_process(pk)
    assert row["state"] in ("running", "waiting")
    assert "non-determinism" in row["status"] and "launch 0 was square" in row["status"]
    reports = " ".join(r["message"] for r in load_node(pk).get_report())  # type: ignore[attr-defined]
    assert "launch 0 was square" in reports
    assert _count("square") == 3  # nothing new was launched at the recorded position

    monkeypatch.delenv(SHIFT)  # the fix
    assert control.play([pk])[pk]
    thread.join(60)
    assert not thread.is_alive()
    outputs, node = done[0]  # type: ignore[misc]
    assert node.is_finished_ok and outputs["sum"].value == 0 + 1 + 4
    assert _count("square") == 3 and _count("total") == 1


def test_arun_and_sleep_inside_a_workflow(tmp_path):
    """plait.arun means plait.call inside a workflow; plait.sleep commits its wake time first."""
    import time

    from durable_library import gated_pipeline
    from plait.orm import Float, Str
    from plait.storage import get_backend

    gate = tmp_path / "gate"
    gate.touch()
    before = time.time()
    outputs, node = plait.run_get_node(gated_pipeline, n=Int(2), gate=Str(str(gate)), nap=Float(0.2))
    assert outputs["sum"].value == 0 + 1 + 1
    assert time.time() - before >= 0.2
    row = get_backend().get_process(node.pk)
    assert row["wake_at"] is not None and row["wake_at"] >= before + 0.2
    called = {child.process_label for _, _, child in node.get_outgoing((LinkType.CALL_CALC,))}
    assert {"square", "gated", "total"} <= called


def test_sleep_is_refused_outside_a_workflow_and_checks_seconds():
    import asyncio

    from plait.engine.lifecycle import EngineError

    with pytest.raises(EngineError, match=r"plait\.sleep"):
        asyncio.run(plait.sleep(1))
    with pytest.raises(ValueError, match="seconds"):
        asyncio.run(plait.sleep(-1))


def test_a_workflow_launches_a_work_chain():
    from durable_library import through_a_chain

    outputs, node = plait.run_get_node(through_a_chain, x=Int(4))
    assert outputs["y"].value == 5
    (chain,) = [child for _, _, child in node.get_outgoing((LinkType.CALL_WORK,))]
    assert chain.process_label == "AddOne" and chain.is_finished_ok


def test_a_work_chain_launches_a_workflow():
    from durable_library import RunsAWorkflow

    outputs, node = plait.run_get_node(RunsAWorkflow, n=Int(3))
    assert outputs["sum"].value == 0 + 1 + 4
    (flow,) = [child for _, _, child in node.get_outgoing((LinkType.CALL_WORK,))]
    assert flow.get_attribute("durable_workflow") is True and flow.is_finished_ok


def test_query_finds_durable_workflows():
    from plait.orm import QueryBuilder

    plait.run(sum_of_squares, n=Int(1))
    found = (
        QueryBuilder().append(WorkFunctionNode, filters={"attributes.durable_workflow": True}).all(flat=True)
    )
    assert [n.process_label for n in found] == ["sum_of_squares"]


# -- replay reads its records in a few queries, off the loop -------------------------------------


def _statements_during(fn):  # type: ignore[no-untyped-def]
    """``(fn(), number of SQL statements the database ran meanwhile)``, the broker's and the state
    bell's left out."""
    from sqlalchemy import event

    from plait.storage import get_backend

    seen: list[str] = []
    engine = get_backend().database.engine

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        # not the replay's: the database broker's poll and, on PostgreSQL, the state bell's NOTIFY
        # (one per state change once a bell was started), whose numbers follow the clock
        if "broker_messages" not in statement and "pg_notify" not in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        result = fn()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return result, len(seen)


def test_replay_reads_the_recorded_launches_in_a_bounded_number_of_queries(any_profile):
    """Replaying 40 recorded launches runs as many statements as replaying 5: no per-launch loads.

    Loading each recorded child (its class, inputs and outputs) one by one made a replay of 1,000
    children take seconds; the records are read in a few queries before the replay starts.
    """
    counts = {}
    for n in (5, 40):
        pk = _crash_after_squares({}, n)
        before = _count("square")
        (outputs, node), counts[n] = _statements_during(lambda pk=pk: plait.resume(pk))
        assert node.is_finished_ok and outputs["sum"].value == sum(i * i for i in range(n))
        assert _count("square") == before  # replayed from the records, none run again
    assert counts[40] - counts[5] < 10, counts  # per-launch loads would add 35 x several statements


def test_replay_returns_the_recorded_output_nodes(any_profile):
    """The batched replay hands each launch the very nodes its child recorded (same pks, same values)."""
    from plait.orm import load_node

    pk = _crash_after_squares({}, 6)
    squares = {
        int(child.inputs.x.value): child.outputs.result  # type: ignore[union-attr]
        for _, _, child in load_node(pk).get_outgoing((LinkType.CALL_CALC,))
    }
    _, node = plait.resume(pk)
    (total_node,) = [c for _, _, c in node.get_outgoing((LinkType.CALL_CALC,)) if c.process_label == "total"]
    given = {label: value.pk for label, _, value in total_node.get_incoming((LinkType.INPUT_CALC,))}
    assert given == {f"v{i}": squares[i].pk for i in range(6)}


def test_a_stale_stored_hash_is_checked_against_the_inputs_themselves():
    """The replay compares stored input hashes first; one that differs is recomputed from the node,
    so a stored hash gone stale (another plait version, an import) is no false non-determinism."""
    from plait.orm import load_node
    from plait.storage import get_backend

    pk = _crash_after_squares({})
    (first,) = [
        c
        for _, _, c in load_node(pk).get_outgoing((LinkType.CALL_CALC,))
        if c.inputs.x.value == 0  # type: ignore[union-attr]
    ]
    get_backend().update_node(first.inputs.x.pk, node_hash="stale")  # type: ignore[union-attr]
    outputs, node = plait.resume(pk)
    assert node.is_finished_ok and outputs["sum"].value == 0 + 1 + 4
    assert _count("square") == 3


def test_replay_checks_and_submits_launches_off_the_event_loop(monkeypatch):
    """The replay's checks and submissions (database work) run in the database thread, never on the
    loop: 1,000 of them on the loop stalled it for seconds."""
    import asyncio

    from plait.engine.durable import DurableWorkflowProcess
    from plait.engine.runner import Runner

    on_loop: list[str] = []

    def watched(name, original):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            try:
                asyncio.get_running_loop()
                on_loop.append(name)
            except RuntimeError:
                pass
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        DurableWorkflowProcess, "_check_replay", watched("check", DurableWorkflowProcess._check_replay)
    )
    monkeypatch.setattr(Runner, "submit_child", watched("submit", Runner.submit_child))
    pk = _crash_after_squares({})
    outputs, node = plait.resume(pk)
    assert node.is_finished_ok and outputs["sum"].value == 0 + 1 + 4
    assert on_loop == []


def test_replay_reads_its_records_in_chunks(monkeypatch):
    """Records of more launches than one IN list holds are read chunk by chunk, with the same result."""
    from plait.engine import durable

    monkeypatch.setattr(durable, "_IDS_PER_QUERY", 2)
    pk = _crash_after_squares({}, 5)
    outputs, node = plait.resume(pk)
    assert node.is_finished_ok and outputs["sum"].value == 0 + 1 + 4 + 9 + 16
    assert _count("square") == 5
