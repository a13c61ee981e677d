"""A restart chain that pauses itself in a daemon worker (an unhandled failure), is played once the
user fixed the cause, and goes on from its checkpoint in whichever worker picks it up."""

from __future__ import annotations

from plait import submit
from plait.engine import control
from plait.orm import Int, LinkType, Str, load_node
from plait.storage import get_backend

from .conftest import wait_for


def test_a_chain_paused_by_an_unhandled_failure_is_played_after_the_fix(daemon, tmp_path, monkeypatch):
    from engine.test_restart import Flaky

    blocker = tmp_path / "blocker"
    blocker.write_text("the cause, outside plait")
    monkeypatch.setenv("PLAIT_TEST_BLOCKER", str(blocker))  # the workers inherit it
    daemon(workers=1)
    node = submit(Flaky, x=Int(1), on_unhandled_failure=Str("pause"))
    wait_for(lambda: get_backend().get_process(node.pk)["paused"], 60, "the chain to pause itself")
    row = get_backend().get_process(node.pk)
    assert row["state"] not in ("finished", "excepted", "killed")
    assert any("plait process play" in r["message"] for r in load_node(node.pk).get_report())

    blocker.unlink()  # the user fixes the cause
    assert control.play([node.pk])[node.pk] == "played"
    wait_for(
        lambda: get_backend().get_process(node.pk)["state"] in ("finished", "excepted", "killed"),
        60,
        "the played chain to finish",
    )
    node = load_node(node.pk)
    assert node.is_finished_ok, (node.exit_message, node.exception)
    assert node.outputs.result.value == 2
    statuses = [child.exit_status for _, kind, child in node.get_outgoing() if kind == LinkType.CALL_CALC]
    assert sorted(statuses) == [0, 440]
