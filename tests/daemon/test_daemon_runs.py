"""Work the daemon runs: the README demo, calculation jobs, process functions submitted by work chains."""

from __future__ import annotations

from plait import submit
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.engine import control
from plait.orm import CalcFunctionNode, Computer, Float, InstalledCode, Int, LinkType, Str, load_node
from plait.storage import get_backend

from .conftest import wait_for

TERMINAL = ("finished", "excepted", "killed")


def terminated(pk: int) -> bool:
    return get_backend().get_process(pk)["state"] in TERMINAL


def test_the_demo_runs_through_the_daemon(daemon):
    from plait.workflows.demo import NewtonSqrtWorkChain

    daemon(workers=1)
    node = submit(NewtonSqrtWorkChain, a=Float(2.0))
    wait_for(lambda: terminated(node.pk), 60, "the demo to finish")
    node = load_node(node.pk)
    assert node.is_finished_ok, (node.exit_message, node.exception)
    called = node.called
    assert called and all(isinstance(c, CalcFunctionNode) and c.is_finished_ok for c in called)
    assert all(kind is LinkType.CALL_CALC for _, kind, _ in node.get_outgoing((LinkType.CALL_CALC,)))
    assert abs(node.outputs.root.value - 2**0.5) < 1e-6


def test_calculation_jobs_through_the_daemon(daemon):
    daemon(workers=1)
    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()
    pks = [submit(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1)).pk for i in range(10)]
    wait_for(lambda: all(terminated(pk) for pk in pks), 90, "the jobs to finish", interval=0.1)
    for i, pk in enumerate(pks):
        node = load_node(pk)
        assert node.is_finished_ok, node.exit_message
        assert node.outputs.sum.value == i + 1


def test_pause_is_kept_in_the_database_and_play_resumes(daemon):
    from wf_library import BehindGate

    handle = daemon(workers=1)
    gate = get_backend().profile.path / "gate"
    parent = submit(BehindGate, path=Str(str(gate)))
    wait_for(lambda: get_backend().get_children(parent.pk), 30, "the child to be launched")
    child = get_backend().get_children(parent.pk)[0]["node_id"]
    wait_for(lambda: get_backend().get_process(child)["lease_owner"] is not None, 30, "the child to run")
    assert control.pause([child])[child] in (
        "paused",
        "pause requested: it takes effect at the next safe point",
    )
    wait_for(lambda: get_backend().get_process(child)["paused"], 30, "the pause to be recorded")
    handle.client.stop()
    handle = daemon(workers=1)
    gate.write_text("open")
    assert load_node(child).paused  # still paused after the restart: nobody runs it
    assert control.play([child])[child] == "played"
    wait_for(lambda: terminated(parent.pk), 60, "the parent to finish after play")
    assert load_node(parent.pk).is_finished_ok


def test_kill_of_a_parked_work_chain_kills_its_children(daemon):
    from wf_library import BehindGate

    daemon(workers=1)
    gate = get_backend().profile.path / "never"
    parent = submit(BehindGate, path=Str(str(gate)))
    wait_for(
        lambda: (
            get_backend().get_process(parent.pk)["state"] == "waiting"
            and get_backend().get_process(parent.pk)["lease_owner"] is None
        ),
        30,
        "the parent to park",
    )
    result = control.kill([parent.pk], message="enough")
    assert result[parent.pk] == "killed"
    child = get_backend().get_children(parent.pk)[0]["node_id"]
    wait_for(lambda: terminated(child), 30, "the child to be killed")
    assert load_node(parent.pk).is_killed and load_node(child).is_killed


def test_two_workers_on_postgresql_share_the_work(daemon, postgres_profile):
    """The multi-machine set-up: PostgreSQL storage, LISTEN/NOTIFY bells, SKIP LOCKED claims."""
    from wf_library import Batch

    daemon(workers=2)
    pks = [submit(Batch, seed=Int(i)).pk for i in range(8)]
    wait_for(lambda: all(terminated(pk) for pk in pks), 90, "the batch to finish on PostgreSQL", interval=0.1)
    assert all(load_node(pk).is_finished_ok for pk in pks)
    claimed = [(w["info"] or {}).get("claimed", 0) for w in get_backend().list_workers()]
    wait_for(
        lambda: (
            len(get_backend().list_workers()) == 2
            and all((w["info"] or {}).get("claimed", 0) > 0 for w in get_backend().list_workers())
        ),
        30,
        f"both workers to report claimed work (now {claimed})",
    )
