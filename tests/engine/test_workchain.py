"""Work chains: outline, context, children, checkpoints, outputs, errors, kill."""

from __future__ import annotations

import asyncio

import pytest

import wf_library
from plait import (
    ExitCode,
    InputValidationError,
    ProcessKilledError,
    WorkChain,
    arun_get_node,
    run,
    run_get_node,
)
from plait.engine.runner import Runner
from plait.orm import Int, LinkType, ProcessState, Str, WorkChainNode, load_node
from plait.storage import get_backend
from wf_library import (
    AsyncNested,
    BadContext,
    Branches,
    Counter,
    Forever,
    Gather,
    MissingOutput,
    Nested,
    Raises,
    Slow,
)


def test_while_loop_reports_and_output(any_profile):
    outputs, node = run_get_node(Counter, n=Int(3))
    assert isinstance(node, WorkChainNode) and node.is_finished_ok
    assert outputs["count"].value == 3
    reports = [r["message"] for r in node.get_report() if r["level"] == "REPORT"]
    assert reports == ["count is now 1", "count is now 2", "count is now 3"]
    # the output was created by a calcfunction the chain called, then returned
    assert outputs["count"].creator.caller.pk == node.pk
    assert [kind for _, kind, _ in node.get_outgoing()] == [LinkType.CALL_CALC, LinkType.RETURN]
    # a successful chain keeps no step checkpoints
    assert node.get_checkpoints() == []


def test_exit_code_from_a_step():
    outputs, node = run_get_node(Counter, n=Int(5), fail_at=Int(2))
    assert node.is_finished and not node.is_finished_ok
    assert node.exit_status == 400 and node.exit_message == "stopped at 2"
    assert outputs == {}
    # a failed chain keeps its step checkpoints for a later restart
    assert [c["step"] for c in node.get_checkpoints()][:2] == ["setup", "inc"]


@pytest.mark.parametrize(("value", "status", "kind"), [(-1, 310, None), (0, 0, "zero"), (5, 0, "positive")])
def test_if_elif_else_and_return(value, status, kind):
    outputs, node = run_get_node(Branches, value=Int(value))
    assert node.exit_status == status
    if kind:
        assert outputs["kind"].value == kind
    else:
        assert node.exit_message == "the value is negative"


def test_children_run_concurrently_and_land_in_context():
    wf_library.EVENTS.clear()
    outputs, node = run_get_node(Gather, count=Int(3))
    assert node.is_finished_ok
    assert outputs["tags"].get_list() == ["c0", "c1", "c2"]
    assert sorted(outputs["children"]) == ["c0", "c1", "c2"]
    events = wf_library.EVENTS
    # every child started before any of the slow ones ended: they overlapped
    last_start = max(i for i, e in enumerate(events) if e.startswith("start"))
    first_slow_end = min(i for i, e in enumerate(events) if e in ("end c0", "end c1", "end c2"))
    assert last_start < first_slow_end
    called = node.called
    assert len(called) == 4 + 1  # 4 Slow children and make_list
    assert all(c.caller.pk == node.pk for c in called)
    assert {c.process_label for c in called} == {"Slow", "make_list"}
    # nested output namespaces are links with '__'
    labels = sorted(label for label, kind, _ in node.get_outgoing() if kind == LinkType.RETURN)
    assert labels == ["children__c0", "children__c1", "children__c2", "tags"]


def test_nested_run_inside_plain_step_and_workfunction():
    outputs, node = run_get_node(Nested)
    assert outputs["count"].value == 2 and outputs["product"].value == 9
    labels = [c.process_label for c in node.called]
    assert labels == ["Counter", "add_multiply"]
    assert node.called[0].caller.pk == node.pk


async def test_arun_inside_async_step_and_from_running_loop():
    outputs, node = await arun_get_node(AsyncNested)
    assert node.is_finished_ok and outputs["count"].value == 2
    assert [c.process_label for c in node.called] == ["Counter"]


def test_exception_in_step_marks_excepted_and_keeps_checkpoint():
    with pytest.raises(RuntimeError, match="boom in step"):
        run(Raises)
    row = get_backend().list_processes(states=["excepted"])[0]
    node = load_node(row["id"])
    assert node.is_excepted and "RuntimeError: boom in step" in node.exception
    assert "def boom" in node.exception or "boom" in node.exception
    checkpoints = node.get_checkpoints()
    assert checkpoints and checkpoints[-1]["data"]["ctx"] == {"x": 1}


def test_context_refuses_non_json_values_at_the_step():
    with pytest.raises(TypeError, match=r"ctx\.lock holds a _thread\.lock"):
        run(BadContext)
    node = load_node(get_backend().list_processes(states=["excepted"])[0]["id"])
    assert "CheckpointError" in node.exception


def test_missing_required_output_gives_exit_code():
    _, node = run_get_node(MissingOutput)
    assert node.exit_status == 11
    assert "needed" in node.exit_message


def test_input_validation_names_ports():
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError) as info:
        run(Counter, n=Str("x"), unknown=Int(1))
    message = str(info.value)
    assert "input 'n': expected Int, got Str" in message
    assert "input 'unknown': is not an input of this process" in message
    assert get_backend().count_nodes() == before


def test_plain_python_values_are_wrapped_for_node_ports():
    outputs, node = run_get_node(Counter, n=2)
    assert outputs["count"].value == 2
    assert isinstance(node.inputs.n, Int) and node.inputs.n.value == 2


def test_exit_code_format_error():
    with pytest.raises(ValueError, match="needs the value 'at'"):
        Counter.spec().exit_codes.ERROR_TOO_FAR.format()
    assert ExitCode(0).status == 0


def test_builder_checks_names():
    builder = Counter.get_builder()
    builder.n = Int(2)
    with pytest.raises(AttributeError, match="'nn' is not an input"):
        builder.nn = 3
    builder.metadata.label = "from builder"
    outputs, node = run_get_node(builder)
    assert outputs["count"].value == 2 and node.label == "from builder"


async def test_kill_kills_the_chain_and_its_children():
    runner = Runner.for_loop()
    task = asyncio.ensure_future(arun_get_node(Forever))
    for _ in range(200):
        await asyncio.sleep(0.02)
        rows = get_backend().list_processes(states=["waiting"])
        if rows:
            break
    parent_pk = rows[0]["id"]
    children = get_backend().get_children(parent_pk)
    assert len(children) == 1
    assert runner.kill(parent_pk, "enough")
    with pytest.raises(ProcessKilledError, match="enough"):
        await task
    parent = load_node(parent_pk)
    child = load_node(children[0]["node_id"])
    assert parent.process_state is ProcessState.KILLED and parent.exit_message == "enough"
    assert child.process_state is ProcessState.KILLED
    assert "was killed" in child.exit_message


def test_workchain_without_outline_is_refused():
    class NoOutline(WorkChain):
        pass

    with pytest.raises(TypeError, match=r"must declare spec\.outline"):
        run(NoOutline)


def test_step_returning_garbage_excepts():
    class Garbage(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.outline(cls.step)

        def step(self):
            return "42"  # a plain int is an exit status (issue 10); a str is not

    with pytest.raises(TypeError, match="returned str"):
        run(Garbage)


def test_slow_child_alone():
    outputs, _ = run_get_node(Slow, tag=Str("x"), delay=0.01)
    assert outputs["tag"].value == "x"
