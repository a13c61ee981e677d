"""BaseRestartWorkChain and process handlers: real children that fail on purpose, and handlers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plait import (
    BaseRestartWorkChain,
    CheckpointError,
    ExitCode,
    InputValidationError,
    ProcessHandlerReport,
    arun_get_node,
    calcfunction,
    process_handler,
    resume,
    run_get_node,
    while_,
)
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.engine import control
from plait.orm import CalcJobNode, Computer, InstalledCode, Int, LinkType, RemoteData, Str, load_node
from plait.storage import get_backend

NEGATIVE = ExitCode(410, "the value is negative", "ERROR_NEGATIVE")
TOO_BIG = ExitCode(420, "the value is too big", "ERROR_TOO_BIG")
ODD = ExitCode(430, "the value is odd", "ERROR_ODD")


@calcfunction
def check(x: Int) -> Int:
    """Succeed with x * 10 when x is a small even non-negative int; fail with an exit code otherwise."""
    if x.value < 0:
        return NEGATIVE
    if x.value > 100:
        return TOO_BIG
    if x.value % 2:
        return ODD
    return Int(x.value * 10)


@calcfunction
def flaky(x: Int) -> Int:
    """Fails (exit 440) while the file named by $PLAIT_TEST_BLOCKER exists: a cause outside plait."""
    if os.path.exists(os.environ["PLAIT_TEST_BLOCKER"]):
        return ExitCode(440, "blocked", "ERROR_BLOCKED")
    return Int(x.value + 1)


class CheckBase(BaseRestartWorkChain):
    _process_class = check

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(check, namespace="check")
        spec.expose_outputs(check)
        spec.exit_code(500, "ERROR_GIVE_UP", "a handler gave up")
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = self.exposed_inputs(check, "check")

    @process_handler(priority=100, exit_codes=[NEGATIVE])
    def handle_negative(self, node):
        self.ctx.inputs.x = -node.inputs["x"].value  # a plain value: the child's port wraps it
        return ProcessHandlerReport()

    @process_handler(priority=50, exit_codes=TOO_BIG)
    def handle_too_big(self, node):
        return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_GIVE_UP)

    @process_handler(priority=10, enabled=False, exit_codes=[ODD])
    def handle_odd(self, node):
        self.ctx.inputs.x = node.inputs["x"].value + 1
        return ProcessHandlerReport()


class Ordered(CheckBase):
    """Three handlers on the same failure: they run highest priority first and record the order."""

    @process_handler(priority=1, exit_codes=[ODD])
    def low(self, node):
        self.ctx.order = [*self.ctx.get("order", []), "low"]

    @process_handler(priority=300, exit_codes=[ODD])
    def high(self, node):
        self.ctx.order = [*self.ctx.get("order", []), "high"]

    @process_handler(priority=200, exit_codes=[ODD])
    def middle(self, node):
        self.ctx.order = [*self.ctx.get("order", []), "middle"]
        self.ctx.inputs.x = node.inputs["x"].value + 1
        return ProcessHandlerReport(do_break=self.ctx.get("break_after_middle", False))

    def setup(self):
        super().setup()
        self.ctx.break_after_middle = self.inputs.check.x.value == 7

    def results(self):
        self.report(f"order: {','.join(self.ctx.order)}")
        return super().results()


class Flaky(BaseRestartWorkChain):
    _process_class = flaky

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(flaky)
        spec.expose_outputs(flaky)
        spec.outline(
            cls.setup, while_(cls.should_run_process)(cls.run_process, cls.inspect_process), cls.results
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = self.exposed_inputs(flaky)


class AddBase(BaseRestartWorkChain):
    """The real calculation job: a negative sum (exit 410) is fixed by flipping the sign of x."""

    _process_class = ArithmeticAddCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(ArithmeticAddCalculation, namespace="add")
        spec.expose_outputs(ArithmeticAddCalculation)
        spec.outline(
            cls.setup, while_(cls.should_run_process)(cls.run_process, cls.inspect_process), cls.results
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = self.exposed_inputs(ArithmeticAddCalculation, "add")

    @process_handler(exit_codes=ArithmeticAddCalculation.exit_codes.ERROR_NEGATIVE_NUMBER)
    def handle_negative_sum(self, node):
        self.ctx.inputs.x = -node.inputs["x"].value
        return ProcessHandlerReport()


class CrashBase(CheckBase):
    """Dies (``os._exit``) before launching its second iteration when $PLAIT_TEST_CRASH_AT says so."""

    def run_process(self):
        if self.ctx.iteration == 1 and os.environ.get("PLAIT_TEST_CRASH_AT") == "restart:second":
            os._exit(17)
        return super().run_process()

    def results(self):
        self.report(f"asked for x={self.inputs.check.x.value}")  # the inputs rebuilt on resume
        return super().results()


class NoClass(BaseRestartWorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.setup)


def _reports(node) -> list[str]:
    return [record["message"] for record in node.get_report()]


def _children(node):
    return [child for _, kind, child in node.get_outgoing() if kind == LinkType.CALL_CALC]


# -- the handlers ---------------------------------------------------------------------------------------


def test_success_on_first_try_attaches_the_outputs(any_profile):
    outputs, node = run_get_node(CheckBase, check={"x": Int(4)})
    assert node.is_finished_ok, node.exit_message
    assert outputs["result"].value == 40
    assert [label for label, kind, _ in node.get_outgoing() if kind == LinkType.CALL_CALC] == ["iteration_01"]
    assert any("completed after 1 iterations" in line for line in _reports(node))


def test_a_handler_fixes_the_inputs_and_the_child_runs_again(any_profile):
    outputs, node = run_get_node(CheckBase, check={"x": Int(-6)})
    assert node.is_finished_ok, node.exit_message
    assert outputs["result"].value == 60
    children = _children(node)
    assert [c.exit_status for c in children] == [410, 0]
    assert children[1].inputs["x"].value == 6
    lines = _reports(node)
    assert any("handler handle_negative (priority 100) acted on check<" in line for line in lines), lines
    assert any("dealt with the problem, restarting" in line for line in lines)


def test_a_handler_stops_the_chain_with_its_exit_code(any_profile):
    _, node = run_get_node(CheckBase, check={"x": Int(1000)})
    assert node.exit_status == 500 and len(_children(node)) == 1
    assert any("handle_too_big" in line and "stop with exit status 500" in line for line in _reports(node))


def test_an_unhandled_failure_aborts_by_default_with_402(any_profile):
    _, node = run_get_node(CheckBase, check={"x": Int(3)})  # odd: its handler is disabled
    assert node.exit_status == 402
    assert node.exit_message == "the process failed with an unhandled failure"
    assert len(_children(node)) == 1


def test_handler_overrides_enable_disable_and_reprioritise(any_profile):
    outputs, node = run_get_node(CheckBase, check={"x": Int(3)}, handler_overrides={"handle_odd": True})
    assert node.is_finished_ok and outputs["result"].value == 40
    _, node = run_get_node(
        CheckBase, check={"x": Int(-2)}, handler_overrides={"handle_negative": {"enabled": False}}
    )
    assert node.exit_status == 402
    # priorities: 'low' moved above 'high' by an override
    _, node = run_get_node(Ordered, check={"x": Int(5)}, handler_overrides={"low": {"priority": 1000}})
    assert node.is_finished_ok
    assert "order: low,high,middle" in _reports(node)


def test_handlers_run_by_priority_and_do_break_stops_the_rest(any_profile):
    _, node = run_get_node(Ordered, check={"x": Int(5)})
    assert node.is_finished_ok and "order: high,middle,low" in _reports(node)
    _, node = run_get_node(Ordered, check={"x": Int(7)})  # middle breaks: low is not called
    assert node.is_finished_ok and "order: high,middle" in _reports(node)
    # a handler returning None acts not: no report line for 'high' and 'low'
    assert not any("handler high" in line for line in _reports(node))


def test_max_iterations_gives_401(any_profile):
    _, node = run_get_node(
        CheckBase, check={"x": Int(1)}, handler_overrides={"handle_odd": True}, max_iterations=Int(1)
    )
    assert node.exit_status == 401 and node.exit_message == "the maximum number of iterations was exceeded"
    assert any("reached the maximum number of iterations (1)" in line for line in _reports(node))


def test_on_unhandled_failure_restart_once(any_profile):
    _, node = run_get_node(CheckBase, check={"x": Int(3)}, on_unhandled_failure="restart_once")
    assert node.exit_status == 402
    assert [c.exit_status for c in _children(node)] == [430, 430]
    assert any("for the second time in a row, aborting" in line for line in _reports(node))


def test_bad_inputs_are_refused_before_anything_is_stored(any_profile):
    before = len(get_backend().list_processes())
    with pytest.raises(InputValidationError, match=r"on_unhandled_failure.*'abandon' is not one of abort"):
        run_get_node(CheckBase, check={"x": Int(3)}, on_unhandled_failure=Str("abandon"))
    with pytest.raises(InputValidationError, match="'nope' is not a process handler of CheckBase"):
        run_get_node(CheckBase, check={"x": Int(3)}, handler_overrides={"nope": True})
    with pytest.raises(InputValidationError, match="only 'enabled' and 'priority'"):
        run_get_node(CheckBase, check={"x": Int(3)}, handler_overrides={"handle_odd": {"on": True}})
    with pytest.raises(ValueError, match=r"NoClass\._process_class must be the process class"):
        run_get_node(NoClass)
    assert len(get_backend().list_processes()) == before


def test_process_handler_refuses_bad_declarations():
    with pytest.raises(TypeError, match="must take \\(self, node\\)"):

        @process_handler
        def wrong(self):
            pass

    with pytest.raises(TypeError, match="priority must be an int"):
        process_handler(priority="high")(lambda self, node: None)
    with pytest.raises(TypeError, match="exit_codes must be an ExitCode"):
        process_handler(exit_codes=[410])(lambda self, node: None)
    with pytest.raises(TypeError, match="decorates a method"):
        process_handler(42)  # type: ignore[arg-type]


def test_a_handler_returning_something_else_excepts_the_chain(any_profile):
    class Bad(CheckBase):
        @process_handler(priority=1000)
        def bad(self, node):
            return True

    with pytest.raises(TypeError, match="process handler bad returned bool"):
        run_get_node(Bad, check={"x": Int(2)})


def test_an_unstored_node_in_ctx_inputs_is_refused_saying_what_to_do(any_profile):
    class Unstored(CheckBase):
        @process_handler(priority=1000, exit_codes=[NEGATIVE])
        def unstored(self, node):
            self.ctx.inputs.x = Int(2)  # a new node, neither stored nor made by a calcfunction
            return ProcessHandlerReport(do_break=True)

    with pytest.raises(CheckpointError, match=r"ctx\.inputs.*unstored Int: store it"):
        run_get_node(Unstored, check={"x": Int(-1)})
    # a plain value is fine: the child's port wraps it
    outputs, node = run_get_node(CheckBase, check={"x": Int(-1)}, handler_overrides={"handle_odd": True})
    assert node.is_finished_ok and outputs["result"].value == 20


# -- pausing for the user ----------------------------------------------------------------------------------


async def _wait_paused() -> int:
    for _ in range(600):
        rows = get_backend().list_processes(paused=True)
        if rows:
            return rows[0]["id"]
        await asyncio.sleep(0.05)
    raise AssertionError("the chain did not pause")


@pytest.mark.parametrize("mode", ["pause", "restart_and_pause"])
def test_paused_by_an_unhandled_failure_then_played_after_the_fix(any_profile, tmp_path, monkeypatch, mode):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("PLAIT_TEST_BLOCKER", str(blocker))

    async def main():
        task = asyncio.ensure_future(arun_get_node(Flaky, x=Int(1), on_unhandled_failure=mode))
        pk = await _wait_paused()
        node = load_node(pk)
        assert node.paused and not node.is_terminated
        assert any("plait process play" in line for line in _reports(node))
        blocker.unlink()  # the user fixes the cause
        replies = await control.aplay([pk])
        assert pk in replies
        return await asyncio.wait_for(task, 60)

    outputs, node = asyncio.run(main())
    assert node.is_finished_ok and outputs["result"].value == 2
    expected = [440, 0] if mode == "pause" else [440, 440, 0]
    assert [c.exit_status for c in _children(node)] == expected


def test_pause_on_max_iterations_starts_the_count_again(any_profile, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("PLAIT_TEST_BLOCKER", str(blocker))

    class Retrying(Flaky):
        @process_handler
        def retry(self, node):
            if node.is_failed:
                return ProcessHandlerReport()

    async def main():
        task = asyncio.ensure_future(
            arun_get_node(Retrying, x=Int(1), max_iterations=Int(2), pause_on_max_iterations=True)
        )
        pk = await _wait_paused()
        blocker.unlink()
        await control.aplay([pk])
        return await asyncio.wait_for(task, 60)

    _, node = asyncio.run(main())
    assert node.is_finished_ok
    assert [c.exit_status for c in _children(node)] == [440, 440, 0]


# -- a real calculation job on localhost, and clean_workdir --------------------------------------------


@pytest.fixture
def bash() -> InstalledCode:
    return InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()


@pytest.mark.parametrize("clean", [False, True])
def test_a_calculation_job_that_fails_first_and_its_work_folders(any_profile, bash, clean):
    outputs, node = run_get_node(AddBase, add={"code": bash, "x": Int(-5), "y": Int(3)}, clean_workdir=clean)
    assert node.is_finished_ok, node.exit_message
    assert outputs["sum"].value == 8
    jobs = [child for child in node.called_descendants() if isinstance(child, CalcJobNode)]
    assert [job.exit_status for job in jobs] == [410, 0]
    remotes = [job.outputs["remote_folder"] for job in jobs]
    assert all(isinstance(remote, RemoteData) for remote in remotes)
    assert [os.path.isdir(remote.remote_path) for remote in remotes] == [not clean, not clean]
    assert [remote.is_cleaned for remote in remotes] == [clean, clean]
    lines = _reports(node)
    assert any("cleaned remote folders of calculations" in line for line in lines) is clean


# -- a worker crash between iterations ----------------------------------------------------------------------

CRASH_SCRIPT = """
from plait import run
from plait.orm import Int
from engine.test_restart import CrashBase
run(CrashBase, check={"x": Int(-6)}, max_iterations=Int(2))
print("not reached")
"""


def test_the_loop_survives_a_crash_between_iterations(any_profile):
    """The fixed inputs, the iteration count and the children are in the checkpointed context: the
    resumed chain launches iteration 2 with the handler's fix, and the namespace's metadata (non_db,
    beside node inputs) comes back too."""
    tests = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PLAIT_TEST_CRASH_AT="restart:second", PYTHONPATH=str(tests))
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stdout + proc.stderr
    (row,) = [r for r in get_backend().list_processes() if r["process_label"] == "CrashBase"]
    crashed = load_node(row["id"])
    assert not crashed.is_terminated and len(_children(crashed)) == 1

    outputs, node = resume(row["id"])
    assert node.is_finished_ok, node.exit_message
    assert outputs["result"].value == 60
    links = sorted(
        (label, child.inputs["x"].value, child.exit_status)
        for label, kind, child in node.get_outgoing()
        if kind == LinkType.CALL_CALC
    )
    assert links == [("iteration_01", -6, 410), ("iteration_02", 6, 0)]
    assert "asked for x=-6" in _reports(node)
