"""Work chains behave as AiiDA users expect (issue 10, "Behaviours to match"): read-only inputs,
what a step may return, predicates that do not return a bool, the on_terminated hook; and the
deliberate strictness (no unstored nodes in the context, no data created by a workflow) says
what to do."""

from __future__ import annotations

import asyncio
import time

import pytest

from plait import ExitCode, ProcessKilledError, ToContext, WorkChain, calcfunction, run_get_node
from plait.engine import control
from plait.engine.workchain import if_, while_
from plait.orm import Int, ProcessState, load_node
from plait.storage import get_backend


class MutatesInputs(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.input("how", valid_type=Int)
        spec.input_namespace("nested", dynamic=True)
        spec.outline(cls.step)

    def step(self):
        how = self.inputs.how.value
        if how == 0:
            self.inputs.x = Int(2)
        elif how == 1:
            self.inputs["x"] = Int(2)
        elif how == 2:
            del self.inputs["x"]
        elif how == 3:
            self.inputs.nested.y = Int(1)


@pytest.mark.parametrize("how", [0, 1, 2, 3])
def test_inputs_are_read_only_in_steps(how):
    with pytest.raises(TypeError, match=r"inputs are read-only.*self\.ctx"):
        run_get_node(MutatesInputs, x=Int(1), how=Int(how), nested={"a": Int(1)})


@calcfunction
def make_int(value):
    return Int(value.value)


class Returns(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("kind", valid_type=Int)
        spec.exit_code(401, "ERROR_DECLARED", "a declared failure")
        spec.outline(cls.first, cls.second)

    def first(self):
        kind = self.inputs.kind.value
        if kind == 0:
            return None
        if kind == 1:
            return ToContext()
        if kind == 2:
            return self.exit_codes.ERROR_DECLARED
        if kind == 3:
            return 402  # a plain status, not declared
        if kind == 4:
            return 401  # a plain status that is declared: its message is used
        if kind == 5:
            return 0  # zero is success: go on
        return ExitCode(0)

    def second(self):
        self.ctx.reached = True


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [(0, 0, None), (1, 0, None), (2, 401, "a declared failure"), (3, 402, None),
     (4, 401, "a declared failure"), (5, 0, None), (6, 0, None)],
)  # fmt: skip
def test_what_a_step_may_return(kind, status, message):
    _, node = run_get_node(Returns, kind=Int(kind))
    assert node.process_state is ProcessState.FINISHED
    assert node.exit_status == status
    if message:
        assert node.exit_message == message


class ReturnsBool(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.step)

    def step(self):
        return True


def test_a_step_returning_a_bool_is_an_error_that_says_what_to_return():
    with pytest.raises(TypeError, match="returns None, ToContext"):
        run_get_node(ReturnsBool)


class LoosePredicate(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.setup, while_(cls.remaining)(cls.count), if_(cls.empty)(cls.count))

    def setup(self):
        self.ctx.queue = [1, 2]

    def remaining(self):
        return self.ctx.queue  # a list, not a bool

    def empty(self):
        return not self.ctx.queue

    def count(self):
        self.ctx.queue = self.ctx.queue[1:]


def test_a_predicate_not_returning_a_bool_gets_a_warning():
    with pytest.warns(UserWarning, match=r"predicate remaining.*returned list.*bool"):
        _, node = run_get_node(LoosePredicate)
    assert node.is_finished_ok


# -- on_terminated ---------------------------------------------------------------------------------


def _record(node, what):
    calls = node.get_extra("on_terminated", [])
    node.set_extra("on_terminated", [*calls, what])


class Hooked(WorkChain):
    """Ends as its ``how`` input says; its on_terminated hook records each call in an extra."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("how", valid_type=Int)
        spec.outline(cls.step)

    async def step(self):
        how = self.inputs.how.value
        if how == 1:
            raise RuntimeError("boom")
        if how == 2:
            await asyncio.sleep(120)
        return None

    def on_terminated(self):
        super().on_terminated()
        _record(self.node, self.node.process_state.value)


def test_on_terminated_runs_once_when_finished(any_profile):
    _, node = run_get_node(Hooked, how=Int(0))
    assert load_node(node.pk).get_extra("on_terminated") == ["finished"]


def test_on_terminated_runs_once_when_excepted():
    with pytest.raises(RuntimeError, match="boom"):
        run_get_node(Hooked, how=Int(1))
    (row,) = get_backend().list_processes()
    assert load_node(row["node_id"]).get_extra("on_terminated") == ["excepted"]


def test_on_terminated_runs_once_when_killed_through_control():
    from plait import arun_get_node

    async def main():
        task = asyncio.ensure_future(arun_get_node(Hooked, how=Int(2)))
        for _ in range(400):
            rows = get_backend().list_processes()
            if rows and load_node(rows[0]["node_id"]).process_state is ProcessState.RUNNING:
                break
            await asyncio.sleep(0.05)
        (row,) = get_backend().list_processes()
        replies = await control.akill([row["node_id"]], message="enough")
        assert replies[row["node_id"]] == "killed"
        with pytest.raises(ProcessKilledError):
            await task
        return row["node_id"]

    pk = asyncio.run(main())
    assert load_node(pk).get_extra("on_terminated") == ["killed"]


def test_on_terminated_runs_when_killed_under_the_daemon(daemon_handle):
    from plait import submit

    node = submit(Hooked, how=Int(2))
    deadline = time.monotonic() + 60
    while (
        get_backend().get_process(node.pk)["state"] != "running"
        or not get_backend().get_process(node.pk)["lease_owner"]
    ):
        assert time.monotonic() < deadline, "the daemon did not start the chain"
        time.sleep(0.05)
    assert control.kill([node.pk], message="enough")[node.pk] == "killed"
    while load_node(node.pk).get_extra("on_terminated", None) is None:
        assert time.monotonic() < deadline, "the hook did not run"
        time.sleep(0.05)
    assert load_node(node.pk).get_extra("on_terminated") == ["killed"]


def test_on_terminated_runs_when_killed_before_anyone_ran_it():
    """Submitted with no daemon (created, unheld): the kill is written by the killer, who runs the hook."""
    from plait import submit

    node = submit(Hooked, how=Int(0))
    assert control.kill([node.pk], message="enough")[node.pk] == "killed"
    assert load_node(node.pk).get_extra("on_terminated") == ["killed"]


class HookedParent(WorkChain):
    """Waits on a child that sleeps; its hook records its state and what its context held."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.launch, cls.done)

    def launch(self):
        self.ctx.launched = "yes"
        return ToContext(child=self.submit(Hooked, how=Int(2)))

    def done(self):
        return None

    def on_terminated(self):
        super().on_terminated()
        _record(self.node, f"{self.node.process_state.value}:{self.ctx.get('launched')}")


def test_on_terminated_runs_when_killed_while_parked(daemon_handle):
    """A parent parked in the database (nobody holds it) is killed: its hook runs, with its context."""
    from plait import submit

    node = submit(HookedParent)
    deadline = time.monotonic() + 60
    while not ((row := get_backend().get_process(node.pk))["state"] == "waiting" and not row["lease_owner"]):
        assert time.monotonic() < deadline, "the daemon did not park the parent"
        time.sleep(0.05)
    assert control.kill([node.pk], message="enough")[node.pk] == "killed"
    assert load_node(node.pk).get_extra("on_terminated") == ["killed:yes"]


@pytest.fixture
def daemon_handle(monkeypatch):
    import os

    from daemon.conftest import TESTS, DaemonHandle  # the real daemon of tests/daemon

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    handle = DaemonHandle(1)
    try:
        yield handle
    finally:
        handle.stop()


# -- deliberate strictness says what to do ------------------------------------------------------------


class UnstoredInContext(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.step)

    def step(self):
        self.ctx.value = Int(1)


class CreatesData(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output("value", valid_type=Int)
        spec.outline(cls.step)

    def step(self):
        self.out("value", Int(1))


def test_unstored_node_in_the_context_says_what_to_do():
    with pytest.raises(Exception, match=r"ctx\.value.*(calcfunction|store)"):
        run_get_node(UnstoredInContext)


def test_a_workflow_creating_data_says_what_to_do():
    with pytest.raises(Exception, match="create the node with a calcfunction"):
        run_get_node(CreatesData)
