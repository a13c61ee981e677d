"""Fix and continue for durable workflows: a new run of the fixed function reuses the old run's launches."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import plait
from plait.engine.restart_from import RestartError, restart
from plait.orm import CalcFunctionNode, Int, LinkType, QueryBuilder, WorkFunctionNode, load_node

WORKFLOW = """
import asyncio
import os

import plait
from plait.orm import Int


@plait.calcfunction
def square(x: Int) -> Int:
    return Int(x.value * x.value)


@plait.calcfunction
def total(**values: Int) -> Int:
    return Int(sum(v.value for v in values.values()))


@plait.workflow
async def pipeline(n: Int):
    first = await plait.call(square, x=Int(0))  # launch 0, alone
    rest = await asyncio.gather(*(plait.call(square, x=Int(i + {shift})) for i in range(1, n.value)))
    squares = [first, *rest]
    summed = await plait.call(total, **{values})
    if os.environ.get("PLAIT_TEST_RESTART_CRASH"):
        os._exit(17)  # the interpreter dies after the sum was launched
    return {{"sum": summed}}
"""

BUG = '{f"v{i}": q for i, q in squares}'  # unpacks an Int: TypeError after the three squares
FIX = '{f"v{i}": q for i, q in enumerate(squares)}'


def _write(path: Path, name: str, values: str = BUG, shift: int = 0) -> ModuleType:
    (path / f"{name}.py").write_text(textwrap.dedent(WORKFLOW.format(values=values, shift=shift)))
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def _squares() -> int:
    return sum(
        1 for n in QueryBuilder().append(CalcFunctionNode).all(flat=True) if n.process_label == "square"
    )


def _totals() -> int:
    return sum(
        1 for n in QueryBuilder().append(CalcFunctionNode).all(flat=True) if n.process_label == "total"
    )


def _called(node: WorkFunctionNode) -> list[tuple[str, int]]:
    """(label, x) of the children ``node`` called itself, in pk order."""
    children = sorted((c for _, _, c in node.get_outgoing((LinkType.CALL_CALC,))), key=lambda c: c.pk)
    return [(c.process_label, c.inputs["x"].value if "x" in c.inputs else -1) for c in children]


@pytest.fixture
def broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[str, WorkFunctionNode, Path]]:
    """A durable workflow that excepted after its three launches; yields (module name, node, dir)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"restart_durable_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    module = _write(tmp_path, name)
    with pytest.raises(TypeError, match="cannot unpack"):
        plait.run_get_node(module.pipeline, n=Int(3))
    node = QueryBuilder().append(WorkFunctionNode).all(flat=True)[-1]
    assert node.is_excepted and node.get_attribute("durable_workflow") is True
    assert _squares() == 3 and _totals() == 0
    yield name, node, tmp_path
    sys.modules.pop(name, None)


def test_fixed_workflow_restarts_and_its_three_children_ran_once_in_total(any_profile, broken):
    name, old, path = broken
    old_children = [c.pk for c in sorted(old.called, key=lambda c: c.pk)]
    _write(path, name, values=FIX)
    new = restart(old.pk)
    assert new.is_finished_ok, new.exception
    assert new.outputs["sum"].value == 0 + 1 + 4
    assert _squares() == 3 and _totals() == 1  # the three squares ran once in total
    assert new.process_type == old.process_type and new.get_attribute("durable_workflow") is True
    assert new.get_attribute("restarted_from") == old.pk
    assert new.get_attribute("restarted_from_uuid") == old.uuid
    assert new.get_attribute("restarted_from_step", None) is None  # no step: it replayed from the top
    assert new.get_attribute("restart_reused") == old_children  # in launch order
    assert new.get_attribute("restart_changed_inputs") == []
    # provenance: the reused children keep their one caller; the new workflow called only the sum
    assert all(load_node(pk).caller.pk == old.pk for pk in old_children)
    assert _called(new) == [("total", -1)]
    found = QueryBuilder().append(WorkFunctionNode, filters={"attributes.restarted_from": old.pk})
    assert [n.pk for n in found.all(flat=True)] == [new.pk]
    old = load_node(old.pk)
    assert old.is_excepted and old.get_attribute("restarted_from", None) is None
    assert [c.pk for c in old.called] == old_children


def test_changed_inputs_reuse_what_matches_and_run_the_rest(broken):
    name, old, path = broken
    _write(path, name, values=FIX)
    new = restart(old.pk, inputs={"n": Int(4)})
    assert new.is_finished_ok
    assert new.outputs["sum"].value == 0 + 1 + 4 + 9
    assert new.get_attribute("restart_changed_inputs") == ["n"]
    assert _called(new) == [("square", 3), ("total", -1)]  # launches 0-2 reused, 3 and the sum new


def test_a_launch_that_differs_runs_anew_and_so_does_every_later_one(broken):
    name, old, path = broken
    _write(path, name, values=FIX, shift=10)  # the fix also changes what launches 1 and 2 square
    new = restart(old.pk)
    assert new.is_finished_ok
    assert new.outputs["sum"].value == 0 + 11 * 11 + 12 * 12
    assert _called(new) == [("square", 11), ("square", 12), ("total", -1)]  # only launch 0 reused
    assert _squares() == 5
    reports = [log["message"] for log in plait_logs(new.pk)]
    assert any("launch 1 differs" in line and "run anew" in line for line in reports), reports


def test_the_prefix_stops_at_a_changed_launch_even_if_a_later_one_matches(tmp_path, monkeypatch):
    """Launch 1 differs, launch 2 is identical to the recorded one: it runs again all the same."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "restart_durable_prefix"
    module = _write(tmp_path, name)
    with pytest.raises(TypeError):
        plait.run_get_node(module.pipeline, n=Int(3))
    old = QueryBuilder().append(WorkFunctionNode).all(flat=True)[-1]
    fixed = FIX
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(WORKFLOW.format(values=fixed, shift=0)).replace(
            "Int(i + 0)", "Int(i if i != 1 else 7)"
        )
    )
    importlib.reload(sys.modules[name])
    try:
        new = restart(old.pk)
    finally:
        sys.modules.pop(name, None)
    assert new.is_finished_ok
    assert _called(new) == [("square", 7), ("square", 2), ("total", -1)]


def test_from_a_launch_position_reuses_only_the_launches_before_it(broken):
    name, old, path = broken
    _write(path, name, values=FIX)
    new = restart(old.pk, from_step="1")
    assert new.is_finished_ok
    assert len(new.get_attribute("restart_reused")) == 1
    assert _called(new) == [("square", 1), ("square", 2), ("total", -1)]


def test_a_restart_that_fails_again_can_be_restarted(broken):
    name, old, path = broken
    with pytest.raises(TypeError, match="cannot unpack"):
        restart(old.pk)  # not fixed yet: the restart excepts too, reusing the three squares
    first = QueryBuilder().append(WorkFunctionNode).all(flat=True)[-1]
    assert first.is_excepted and first.get_attribute("restarted_from") == old.pk
    assert _squares() == 3 and first.called == []
    _write(path, name, values=FIX)
    second = restart(first.pk)
    assert second.is_finished_ok
    assert second.get_attribute("restart_reused") == first.get_attribute("restart_reused")
    assert _squares() == 3 and _totals() == 1


def test_refusals_name_why_and_store_nothing(broken):
    name, old, path = broken
    module = _write(path, name, values=FIX)
    before = QueryBuilder().append(WorkFunctionNode).count()
    for kwargs, pattern in [
        ({"from_step": "second"}, r"has no step 'second': a workflow has no steps.*launch position"),
        ({"from_step": "4"}, r"from launch 4: only launches 0 to 2 finished ok"),
        ({"step_map": {"a": "b"}}, r"has no steps, so there is nothing to map"),
    ]:
        with pytest.raises(RestartError, match=pattern):
            restart(old.pk, **kwargs)
    waiting = plait.submit(module.pipeline, n=Int(3))  # stored for a daemon: created, not terminated
    with pytest.raises(RestartError, match=r"is created \(not terminated: kill it first"):
        restart(waiting.pk)
    _, done = plait.run_get_node(module.pipeline, n=Int(2))
    with pytest.raises(RestartError, match="is finished ok"):
        restart(done.pk)
    assert QueryBuilder().append(WorkFunctionNode).count() == before + 2  # the two launched here


def test_a_restarted_workflow_that_crashes_replays_with_the_old_launches(broken):
    """The replay of the new node (here after its interpreter died) is offered the old run's launches
    again: the three squares do not run a second time."""
    name, old, path = broken
    _write(path, name, values=FIX)
    env = dict(os.environ, PLAIT_TEST_RESTART_CRASH="1", PYTHONPATH=os.pathsep.join([str(path), *sys.path]))
    script = f"import plait; plait.restart({old.pk})"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stdout + proc.stderr
    new = QueryBuilder().append(WorkFunctionNode).all(flat=True)[-1]
    assert new.get_attribute("restarted_from") == old.pk and not new.is_terminated
    assert _squares() == 3 and _totals() == 1
    _, node = plait.resume(new.pk)
    assert node.is_finished_ok and node.outputs["sum"].value == 5
    assert _squares() == 3 and _totals() == 1  # nothing ran again


def test_the_command_restarts_a_workflow_and_refuses_a_step(broken):
    from click.testing import CliRunner

    from plait.cli.main import cli

    name, old, path = broken
    _write(path, name, values=FIX)
    runner = CliRunner()

    def run_cli(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    before = QueryBuilder().append(WorkFunctionNode).count()
    for args, fragment in [
        (("--from", "relax"), "has no step 'relax': a workflow has no steps"),
        (("--map", "a=b"), "nothing to map"),
    ]:
        code, _, err = run_cli("process", "restart", str(old.pk), *args)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and fragment in lines[0] and "Traceback" not in err, err
    assert QueryBuilder().append(WorkFunctionNode).count() == before
    code, out, err = run_cli("process", "restart", str(old.pk), "--input", "n=4")
    assert code == 0, err
    assert "from the top" in out and "3 recorded launches" in out and "finished" in out, out
    new = QueryBuilder().append(WorkFunctionNode).all(flat=True)[-1]
    assert new.get_attribute("restarted_from") == old.pk and new.outputs["sum"].value == 14
    code, out, _ = run_cli("process", "show", str(new.pk))
    assert code == 0 and f"{old.pk}, replayed from the top" in " ".join(out.split()), out
    code, out, _ = run_cli("node", "graph", str(new.pk), "-o", "-")
    assert code == 0 and f'n{old.pk} -> n{new.pk} [label="restarted"' in out
    assert f"restarted from {old.pk} (replayed)" in out


def plait_logs(pk: int) -> list[dict]:
    from plait.storage import get_backend

    return get_backend().get_logs(pk)


def test_a_workflow_killed_while_asleep_restarts_reusing_what_finished(tmp_path):
    """Killed on a durable timer after its launches: the restart reuses them, with a shorter nap."""
    import asyncio
    import time

    from durable_library import gated_pipeline
    from plait.engine.lifecycle import ProcessKilledError
    from plait.engine.runner import Runner
    from plait.orm import Float, Str
    from plait.storage import get_backend

    gate = tmp_path / "gate"
    gate.touch()

    async def kill_asleep() -> int:
        runner = Runner.for_loop()
        inputs = {"n": Int(2), "gate": Str(str(gate)), "nap": Float(600)}
        task = asyncio.ensure_future(runner.arun_get_node(gated_pipeline.process_class, inputs))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pks = list(runner._processes)
            rows = [await asyncio.to_thread(get_backend().get_process, pk) for pk in pks]
            asleep = [r["node_id"] for r in rows if r and (r["status"] or "").startswith("sleeping until")]
            if asleep:
                runner.kill(asleep[0], "the service moved")
                with pytest.raises(ProcessKilledError):
                    await task
                return asleep[0]
            await asyncio.sleep(0.02)
        raise AssertionError("the workflow never went to sleep")

    old = load_node(asyncio.run(kill_asleep()))
    assert old.is_killed
    launched = sorted(old.called, key=lambda c: c.pk)
    assert [c.process_label for c in launched] == ["square", "square", "gated"]
    new = restart(old.pk, inputs={"nap": Float(0.01)})
    assert new.is_finished_ok, new.exception
    assert new.outputs["sum"].value == 0 + 1 + 1
    assert new.get_attribute("restart_reused") == [c.pk for c in launched]
    assert new.get_attribute("restart_changed_inputs") == ["nap"]
    assert [c.process_label for c in new.called] == ["total"]  # the squares and the gate ran once
