"""A work chain whose interpreter dies continues from its last checkpoint with plait.resume.

The crash is real: a subprocess runs the chain and calls ``os._exit`` at a
chosen point (no clean-up, no exception handling).  The resumed chain must
end with the same provenance as an uninterrupted run with the same inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plait import resume, run_get_node
from plait.orm import LinkType, ProcessNode, load_node
from plait.storage import get_backend

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from plait import run
from plait.orm import Str
from wf_library import Crashy
run(Crashy, crash_at=Str(sys.argv[1]))
print("not reached")
"""


def crash_run(crash_at: str) -> int:
    env = dict(os.environ, PLAIT_TEST_CRASH="1", PYTHONPATH=str(TESTS))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, crash_at], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stdout + proc.stderr
    rows = [r for r in get_backend().list_processes() if r["process_label"] == "Crashy"]
    assert len(rows) == 1
    return rows[0]["id"]


def shape(node: ProcessNode) -> list:
    """The provenance below a process, independent of pks and timestamps."""

    def value_of(data):
        return getattr(data, "value", None) or data.attributes

    def walk(process):
        inputs = sorted(
            (label, kind.value, repr(value_of(n)))
            for label, kind, n in process.get_incoming()
            if kind not in (LinkType.CALL_CALC, LinkType.CALL_WORK)
        )
        outputs = sorted(
            (label, kind.value, repr(value_of(n)))
            for label, kind, n in process.get_outgoing()
            if kind not in (LinkType.CALL_CALC, LinkType.CALL_WORK)
        )
        return [
            process.process_label,
            process.process_state.value,
            process.exit_status,
            inputs,
            outputs,
            [walk(child) for child in process.called],
        ]

    return walk(node)


@pytest.mark.parametrize("crash_at", ["third:start", "second:during", "child"])
def test_resume_after_abrupt_exit_gives_same_provenance(crash_at, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    from plait.orm import Str
    from wf_library import Crashy

    pk = crash_run(crash_at)
    crashed = load_node(pk)
    assert not crashed.is_terminated
    assert crashed.process_state.value in ("running", "waiting")
    nodes_before = get_backend().count_nodes()

    outputs, node = resume(pk)
    assert node.pk == pk and node.is_finished_ok, node.exception
    assert outputs["total"].value == 3 + 1 + 2
    assert outputs["children"].get_dict() == {"children": 2, "when": "done"}
    # no child was launched twice: exactly two Counter children
    assert [c.process_label for c in node.called].count("Counter") == 2
    assert get_backend().count_nodes() > nodes_before

    _, reference = run_get_node(Crashy, crash_at=Str(crash_at))
    assert shape(node) == shape(reference)


def test_resume_of_finished_process_returns_outputs(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    from plait.orm import Int
    from wf_library import Counter

    _, node = run_get_node(Counter, n=Int(1))
    outputs, again = resume(node.pk)
    assert again.pk == node.pk and outputs["count"].value == 1


def test_resume_refuses_a_process_held_by_a_live_interpreter(monkeypatch):
    import time

    from plait.engine.runner import new_owner_id

    monkeypatch.syspath_prepend(str(TESTS))
    pk = crash_run("third:start")
    backend = get_backend()
    live_owner = new_owner_id().replace(f":{os.getpid()}:", ":1:")  # pid 1 is alive
    assert backend.take_lease(pk, live_owner, time.time() + 60, force=True)
    with pytest.raises(RuntimeError, match="is held by"):
        resume(pk)
    _, node = resume(pk, force=True)
    assert node.is_finished_ok
