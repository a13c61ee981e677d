"""Exactly once across crashes of the interpreter that runs a work chain.

Each crash is real: a subprocess runs the chain and ``os._exit``s at the
chosen place (``PLAIT_TEST_CRASH_AT``, see tests/wf_crash.py); the chain is
then resumed — again in a crashing subprocess where the test crashes twice,
finally in the test process.  Every call a step makes has a call key
(``caller:index``); the resumed step must find the calls the interrupted
attempt made by those keys and never make them twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter as Tally
from pathlib import Path

from plait import resume, run_get_node
from plait.orm import Int, load_node
from plait.storage import get_backend

TESTS = Path(__file__).resolve().parents[1]
TERMINAL = ("finished", "excepted", "killed")

RUN = """
import sys
from plait import run
from plait.orm import Int
import wf_crash
run(getattr(wf_crash, sys.argv[1]), x=Int(int(sys.argv[2])))
print("not reached")
"""

RESUME = """
import sys
from plait import resume
resume(int(sys.argv[1]))
print("not reached")
"""


def _subprocess(script: str, *args: str, crash_at: str) -> None:
    env = dict(os.environ, PLAIT_TEST_CRASH_AT=crash_at, PYTHONPATH=str(TESTS))
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, f"the interpreter did not crash where told:\n{proc.stdout}{proc.stderr}"


def _the_chain(label: str) -> int:
    rows = [r for r in get_backend().list_processes() if r["process_label"] == label]
    assert len(rows) == 1, rows
    return rows[0]["id"]


def _assert_exactly_once(root: int) -> None:
    """No call key used twice, and nothing left active below ``root``."""
    backend = get_backend()
    rows = [backend.get_process(root), *backend.get_descendants(root)]
    keys = Tally((r["caller_id"], r["call_key"]) for r in rows if r["call_key"])
    assert all(n == 1 for n in keys.values()), keys
    active = [(r["node_id"], r["process_label"], r["state"]) for r in rows if r["state"] not in TERMINAL]
    assert not active, f"left active: {active}"


def test_a_crash_in_the_first_step_launches_no_child_twice(monkeypatch):
    """The defect: with no checkpoint yet, the resumed chain counted every recorded child as done,
    so the re-run first step launched its calculation and its child again."""
    monkeypatch.syspath_prepend(str(TESTS))
    _subprocess(RUN, "FirstStepChain", "5", crash_at="first-step")
    pk = _the_chain("FirstStepChain")
    before = [c.process_label for c in load_node(pk).called]
    assert sorted(before) == ["Counter", "plus_one"], before  # the step got as far as both launches

    outputs, node = resume(pk)
    assert node.is_finished_ok, node.exception
    assert outputs["result"].value == (5 + 1) + 1 + 1
    assert sorted(c.process_label for c in node.called) == ["Counter", "plus_one", "plus_one"]
    _assert_exactly_once(pk)


def test_call_keys_stay_stable_over_two_crashes_in_one_step(monkeypatch):
    """The defect: re-running an interrupted inline calcfunction stored its replacement under the next
    call key, so after a second crash in the same step a call ran twice and another stayed `running`."""
    monkeypatch.syspath_prepend(str(TESTS))
    _subprocess(RUN, "ThreeCalls", "10", crash_at="inside-calcfunction")
    pk = _the_chain("ThreeCalls")
    _subprocess(RESUME, str(pk), crash_at="inside-calcfunction")  # the same call crashes again

    outputs, node = resume(pk)
    assert node.is_finished_ok, node.exception
    assert outputs["result"].value == 10 + 1 + 2 + 1
    called = sorted((c.process_label, c.process_state.value) for c in node.called)
    assert called == [("plus_one", "finished"), ("plus_one", "finished"), ("plus_two_crashing", "finished")]
    keys = sorted(get_backend().get_process(c.pk)["call_key"] for c in node.called)
    assert keys == [f"{pk}:0", f"{pk}:1", f"{pk}:2"]
    _assert_exactly_once(pk)
    _, reference = run_get_node(__import__("wf_crash").ThreeCalls, x=Int(10))
    from engine.test_resume import shape

    assert shape(node) == shape(reference)


def test_an_interrupted_process_function_runs_again_in_place(monkeypatch):
    """A process function has no state to lose: resuming one that its interpreter left running runs it
    again, once, as the same node (it used to be refused: "a process function cannot be resumed")."""
    monkeypatch.syspath_prepend(str(TESTS))
    script = """
import sys
from plait.orm import Int
import wf_crash
wf_crash.plus_two_crashing(Int(1))
"""
    _subprocess(script, crash_at="inside-calcfunction")
    pk = _the_chain("plus_two_crashing")
    assert load_node(pk).process_state.value == "running"
    nodes_before = get_backend().count_nodes()

    outputs, node = resume(pk)
    assert node.pk == pk and node.is_finished_ok
    assert outputs["result"].value == 3
    assert get_backend().count_nodes() == nodes_before + 1  # only its output was added
    outputs_again, _ = resume(pk)  # finished: its outputs, nothing run
    assert outputs_again["result"].pk == outputs["result"].pk
