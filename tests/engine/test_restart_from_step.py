"""Fix and continue: a work chain that excepts at step 4 because of a bug, fixed, then restarted."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from plait.engine.restart_from import RestartError, restart
from plait.orm import CalcFunctionNode, CalcJobNode, LinkType, Node, QueryBuilder, WorkChainNode, load_node

WORKFLOW = """
from plait import ToContext, WorkChain, calcfunction
from plait.calculations.shell import ShellJob
from plait.orm import Int, List, Str


@calcfunction
def add_one(x):
    return Int(x.value + 1)


@calcfunction
def double(x):
    return Int(x.value * 2)


class Pipeline(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("result", valid_type=Int)
        spec.outline(cls.first, cls.second, cls.third, cls.{fourth}, cls.finish)

    def first(self):
        self.ctx.a = add_one(self.inputs.x)

    def second(self):
        self.ctx.b = double(self.ctx.a)

    def third(self):
        job = self.submit(ShellJob, command=Str("echo"), arguments=List(["ran"]))
        return ToContext(job=job)

    def {fourth}(self):
        assert self.ctx.job.is_finished_ok
        self.ctx.c = add_one({bug})

    def finish(self):
        self.out("result", self.ctx.c)
"""


def _write(path: Path, name: str, fourth: str = "fourth", bug: str = "self.ctx.missing") -> ModuleType:
    (path / f"{name}.py").write_text(textwrap.dedent(WORKFLOW.format(fourth=fourth, bug=bug)))
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def _count(cls: type[Node]) -> int:
    return QueryBuilder().append(cls).count()


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A chain that excepted at its fourth step; yields (module name, node, the module dir)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"restart_wf_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    module = _write(tmp_path, name)
    from plait import run_get_node
    from plait.orm import Int

    with pytest.raises(AttributeError):
        run_get_node(module.Pipeline, x=Int(1))
    node = QueryBuilder().append(WorkChainNode).all(flat=True)[-1]
    assert node.is_excepted
    yield name, node, tmp_path
    sys.modules.pop(name, None)


def test_fixed_chain_restarts_at_the_failed_step_and_reuses_steps_one_to_three(any_profile, broken):
    name, old, path = broken
    assert (_count(CalcFunctionNode), _count(CalcJobNode)) == (2, 1)
    _write(path, name, bug="self.ctx.b")  # the fix
    new = restart(old.pk)
    assert new.is_finished_ok, new.exception
    assert new.outputs.result.value == 5  # (1 + 1) * 2 + 1
    # steps 1-3 ran once in total: only the fixed fourth step made a new calcfunction, no new job
    assert (_count(CalcFunctionNode), _count(CalcJobNode)) == (3, 1)
    assert new.get_attribute("restarted_from") == old.pk
    assert new.get_attribute("restarted_from_step") == "fourth"
    reused = new.get_attribute("restart_reused")
    job = QueryBuilder().append(CalcJobNode).first(flat=True)
    assert job.pk in reused
    # provenance: the reused children keep their one caller; the new chain called only the new step
    assert job.caller.pk == old.pk
    called = [n for _, _, n in new.get_outgoing((LinkType.CALL_CALC, LinkType.CALL_WORK))]
    assert [type(n) for n in called] == [CalcFunctionNode]
    # queryable, and the old node is unchanged
    found = QueryBuilder().append(WorkChainNode, filters={"attributes.restarted_from": old.pk}).all(flat=True)
    assert [n.pk for n in found] == [new.pk]
    assert load_node(old.pk).is_excepted and load_node(old.pk).get_attribute("restarted_from", None) is None


def test_restart_from_an_earlier_step_with_changed_inputs(broken):
    name, old, path = broken
    _write(path, name, bug="self.ctx.b")
    from plait.orm import Int

    new = restart(old.pk, from_step="second", inputs={"x": Int(10)})
    assert new.is_finished_ok
    # ctx.a (2) from the old first step is reused; second and third run again
    assert new.outputs.result.value == 5
    assert new.get_attribute("restart_changed_inputs") == ["x"]
    assert new.inputs.x.value == 10
    assert (_count(CalcFunctionNode), _count(CalcJobNode)) == (4, 2)


def test_a_renamed_step_needs_a_map_and_a_missing_step_is_refused(broken):
    name, old, path = broken
    _write(path, name, fourth="check", bug="self.ctx.b")
    before = _count(WorkChainNode)
    with pytest.raises(RestartError, match=r"'fourth'.*no such step.*--map fourth=NEW"):
        restart(old.pk)
    with pytest.raises(RestartError, match="no checkpoint before step 'nowhere'"):
        restart(old.pk, from_step="nowhere")
    assert _count(WorkChainNode) == before  # nothing stored
    new = restart(old.pk, step_map={"fourth": "check"})
    assert new.is_finished_ok and new.get_attribute("restarted_from_step") == "check"


def test_a_chain_that_finished_ok_is_not_restarted(broken):
    name, old, path = broken
    _write(path, name, bug="self.ctx.b")
    new = restart(old.pk)
    with pytest.raises(RestartError, match="finished ok"):
        restart(new.pk)


PARSER = """
from plait import Parser
from plait.orm import Int


class CountWords(Parser):
    def parse(self, **kwargs):
        text = self.retrieved.get_object_content("stdout")
        self.out("words", Int(len(text.split()) {bug}))
"""


def test_a_calculation_job_is_parsed_again_with_a_fixed_parser_without_running_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from plait.calculations.shell import ShellJob
    from plait.engine.launch import run_get_node
    from plait.orm import List, Str

    monkeypatch.syspath_prepend(str(tmp_path))
    runs = tmp_path / "runs"
    (tmp_path / "restart_parser_mod.py").write_text(PARSER.format(bug="+ None"))
    importlib.import_module("restart_parser_mod")
    command = f"echo ran >> {runs}; echo three little words"
    with pytest.raises(TypeError):
        run_get_node(
            ShellJob,
            command=Str("bash"),
            arguments=List(["-c", command]),
            metadata={"options": {"parser_name": "restart_parser_mod:CountWords"}},
        )
    old = QueryBuilder().append(CalcJobNode).first(flat=True)
    assert old.is_excepted and runs.read_text().count("ran") == 1
    with pytest.raises(RestartError, match="only from 'parse', not 'upload'"):
        restart(old.pk, from_step="upload")
    (tmp_path / "restart_parser_mod.py").write_text(PARSER.format(bug=""))
    importlib.reload(sys.modules["restart_parser_mod"])
    try:
        new = restart(old.pk, from_step="parse")
    finally:
        sys.modules.pop("restart_parser_mod", None)
    assert new.is_finished_ok, (new.process_state, new.exit_status, new.exit_message)
    assert new.outputs.words.value == 3
    assert runs.read_text().count("ran") == 1  # the job did not run again
    retrieved = old.outputs.retrieved
    assert new.get_attribute("restart_retrieved") == retrieved.pk
    assert retrieved.creator.pk == old.pk  # one creator: the old job
    assert new.get_attribute("restarted_from_step") == "parse"
    # the history kept the parse stage's checkpoint alone (the one a restart reads)
    assert [c["data"]["stage"] for c in old.get_checkpoints()] == ["parse"]


async def test_a_calculation_job_killed_before_its_parse_stage_names_the_stage_it_reached():
    """A job killed while its scheduler job runs has no parse-stage checkpoint: the restart is
    refused and names the last stage it checkpointed (from its process row, since the history
    keeps parse-stage checkpoints only)."""
    import asyncio

    from plait.calculations.shell import ShellJob
    from plait.engine.control import akill
    from plait.engine.launch import arun_get_node
    from plait.engine.lifecycle import ProcessKilledError
    from plait.orm import List, Str
    from plait.storage import get_backend

    task = asyncio.ensure_future(arun_get_node(ShellJob, command=Str("sleep"), arguments=List(["30"])))
    try:
        for _ in range(600):
            rows = get_backend().list_processes(states=None)
            if rows and rows[0]["job_stage"] == "queued":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the job was never queued: {rows}")
        pk = rows[0]["id"]
        assert await akill([pk], message="not needed") == {pk: "killed"}
        with pytest.raises(ProcessKilledError):
            await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    old = load_node(pk)
    assert old.process_state.value == "killed" and old.get_checkpoints() == []
    reason = r"never reached its parse stage .*the last stage it checkpointed: update"
    with pytest.raises(RestartError, match=reason):
        restart(old.pk)


def test_the_command_restarts_with_inputs_and_a_map_and_refuses_bad_input(broken):
    from click.testing import CliRunner

    from plait.cli.main import cli

    name, old, path = broken
    _write(path, name, fourth="check", bug="self.ctx.b")
    runner = CliRunner()

    def plait(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    before = _count(WorkChainNode)
    for args, fragment in [
        (("--input", "x"), "is not NAME=VALUE"),
        (("--input", "x=oops"), "neither pk:N, uuid:U nor JSON"),
        (("--map", "fourth"), "is not OLD=NEW"),
        ((), "no such step"),
        (("--from", "nowhere"), "no checkpoint before step 'nowhere'"),
    ]:
        code, _, err = plait("process", "restart", str(old.pk), *args)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and fragment in lines[0] and "Traceback" not in err, err
    assert _count(WorkChainNode) == before  # nothing stored
    code, out, err = plait("process", "restart", str(old.pk), "--map", "fourth=check", "--input", "x=1")
    assert code == 0, err
    assert "at step check" in out and "finished" in out
    new = QueryBuilder().append(WorkChainNode).all(flat=True)[-1]
    assert new.get_attribute("restarted_from") == old.pk and new.outputs.result.value == 5
    code, out, _ = plait("process", "show", str(new.pk))
    assert code == 0 and "restarted from" in out and f"{old.pk} at step check" in out
    code, out, _ = plait("node", "graph", str(new.pk), "-o", "-")
    assert code == 0 and f'n{old.pk} -> n{new.pk} [label="restarted"' in out
    assert f"restarted from {old.pk} at check" in out


def test_a_chain_killed_while_it_slept_restarts_at_that_step():
    import asyncio

    from engine.test_durable_timers import _launch_and_wait_asleep
    from plait.engine.lifecycle import ProcessKilledError
    from plait.orm import Float

    async def kill_asleep() -> int:
        runner, task, pk = await _launch_and_wait_asleep(600)
        runner.kill(pk, "the service moved")
        with pytest.raises(ProcessKilledError):
            await task
        return pk

    old = load_node(asyncio.run(kill_asleep()))
    assert old.is_killed
    new = restart(old.pk, inputs={"seconds": Float(0.05)})  # a new, shorter sleep
    assert new.is_finished_ok
    assert new.get_attribute("restarted_from_step") == "nap"
    assert new.get_attribute("restart_changed_inputs") == ["seconds"]
