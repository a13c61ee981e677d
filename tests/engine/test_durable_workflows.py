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
from plait import run
from plait.orm import Int
from durable_library import sum_of_squares
run(sum_of_squares, n=Int(3))
print("not reached")
"""


def _crash_after_squares(tmp_env: dict[str, str]) -> int:
    """Run the workflow in a subprocess that dies (os._exit) after its three squares finished."""
    import os
    import subprocess
    import sys

    from durable_library import CRASH_AFTER
    from plait.storage import get_backend

    env = dict(os.environ, PYTHONPATH=str(TESTS), **{CRASH_AFTER: "3"}, **tmp_env)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stdout + proc.stderr
    rows = [r for r in get_backend().list_processes() if r["process_label"] == "sum_of_squares"]
    assert len(rows) == 1
    return rows[0]["id"]


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


def test_replay_with_other_inputs_raises_non_determinism_error(monkeypatch):
    from durable_library import SHIFT
    from plait.engine.durable import NonDeterminismError

    pk = _crash_after_squares({})
    monkeypatch.setenv(SHIFT, "1")  # the "changed code": launch 0 now squares 1, not 0
    with pytest.raises(NonDeterminismError, match=r"launch 0 was square \(process \d+\)"):
        plait.resume(pk)
    assert _count("square") == 3  # nothing new was launched at the recorded position
