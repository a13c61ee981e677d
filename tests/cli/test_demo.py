"""``plait demo`` and the demo workflow: real provenance in the database, not just text."""

from __future__ import annotations

import itertools
import math

import plait.storage
from plait.orm import CalcFunctionNode, Float, Int, LinkType, WorkChainNode, load_node
from plait.workflows.demo import NewtonSqrtWorkChain

from .helpers import assert_one_line_error


def test_demo_records_the_whole_provenance(invoke):
    result = invoke("demo")
    backend = plait.storage.get_backend()
    chains = [row for row in backend.list_processes() if row["process_label"] == "NewtonSqrtWorkChain"]
    assert len(chains) == 1
    chain = load_node(chains[0]["id"])
    assert isinstance(chain, WorkChainNode) and chain.is_finished_ok

    # inputs: a, tolerance, max_iterations (defaults stored as nodes too)
    inputs = {label: node for label, kind, node in chain.get_incoming() if kind is LinkType.INPUT_WORK}
    assert (
        inputs["a"] == 2.0
        and isinstance(inputs["tolerance"], Float)
        and isinstance(inputs["max_iterations"], Int)
    )

    # five iterations, each a residual and a newton_step submitted side by side
    called = chain.get_outgoing((LinkType.CALL_CALC,))
    assert [label for label, _, _ in called] == [
        f"{kind}_iteration_{i}" for i in range(1, 6) for kind in ("residual", "step")
    ]
    for _, _, child in called:
        assert isinstance(child, CalcFunctionNode) and child.is_finished_ok
        assert child.caller == chain
        assert sorted(label for label, _, _ in child.get_incoming((LinkType.INPUT_CALC,))) == ["a", "x"]
        created = child.get_outgoing((LinkType.CREATE,))
        assert [label for label, _, _ in created] == ["result"]
        assert isinstance(created[0][2], Float)

    # each step's x is the previous step's result: a chain of creations
    steps = [child for label, _, child in called if label.startswith("step_")]
    for previous, following in itertools.pairwise(steps):
        assert following.inputs.x == previous.outputs.result
        assert following.inputs.x.pk == previous.outputs.result.pk

    # outputs returned by the chain were created by its children
    outputs = {label: node for label, kind, node in chain.get_outgoing((LinkType.RETURN,))}
    assert set(outputs) == {"root", "residual"}
    assert math.isclose(outputs["root"].value, math.sqrt(2), rel_tol=1e-9)
    assert outputs["residual"].value < 1e-6
    assert outputs["root"].creator.process_label == "newton_step"
    assert outputs["residual"].creator.process_label == "residual"

    # 3 inputs + 1 chain + 10 calcfunctions + 10 results
    assert backend.count_nodes() == 24
    links = backend.all_links(range(1, 25))
    assert len(links) == 3 + 10 + 20 + 10 + 2  # inputs, calls, calc inputs, creates, returns

    report = [record["message"] for record in chain.get_report()]
    assert report[0].startswith("computing sqrt(2.0)")
    assert report[-1].startswith("converged after 5 iterations")

    out = result.stdout
    assert f"NewtonSqrtWorkChain (pk {chain.pk})  finished [0]" in out
    assert "residual_iteration_1: residual" in out and "step_iteration_5: newton_step" in out
    assert f"root: Float (pk {outputs['root'].pk})" in out
    assert f"plait process show {chain.pk}" in out and f"plait node graph {chain.pk}" in out
    assert f"plait node show {outputs['root'].pk}" in out
    assert result.stderr == ""


def test_demo_that_fails_to_converge_exits_non_zero(invoke):
    result = invoke("demo", "--max-iterations", "2", code=1)
    line = assert_one_line_error(
        result, "did not succeed", "exit status 300", "no convergence after 2 iterations"
    )
    pk = int(line.split("work chain ")[1].split()[0])
    node = load_node(pk)
    assert node.is_finished and node.exit_status == 300
    assert len(node.called) == 4
    assert "outputs" in result.stdout


def test_demo_refuses_bad_input_before_storing_anything(invoke):
    result = invoke("demo", "--number", "-3", code=1)
    assert_one_line_error(result, "input 'a': must be a positive number")
    assert plait.storage.get_backend().count_nodes() == 0


def test_demo_runs_on_the_selected_profile(invoke):
    invoke("profile", "setup", "main")
    invoke("profile", "setup", "side")
    invoke("-P", "side", "demo", "-n", "9")
    plait.storage.load_profile("main")
    assert plait.storage.get_backend().count_nodes() == 0
    plait.storage.load_profile("side")
    assert plait.storage.get_backend().count_nodes() > 0


def test_demo_workflow_is_importable_by_a_daemon():
    assert NewtonSqrtWorkChain.check_importable() is None
    assert NewtonSqrtWorkChain.process_type_string() == "plait.workflows.demo:NewtonSqrtWorkChain"
