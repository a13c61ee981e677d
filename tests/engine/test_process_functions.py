"""calcfunction / workfunction: provenance links, validation, errors."""

from __future__ import annotations

import pytest

from plait import InputValidationError, calcfunction, run_get_node, workfunction
from plait.orm import CalcFunctionNode, Dict, Float, Int, LinkType, Str, WorkFunctionNode, load_node
from plait.storage import get_backend
from wf_library import add, add_multiply, fail, multiply


def links_of(node):
    return sorted((label, kind.value) for label, kind, _ in node.get_incoming())


def test_calcfunction_records_inputs_creates_output(any_profile):
    result = add(Int(2), Int(3))
    assert isinstance(result, Int) and result.value == 5 and result.is_stored
    calc = result.creator
    assert isinstance(calc, CalcFunctionNode)
    assert calc.is_finished_ok and calc.process_label == "add"
    assert links_of(calc) == [("x", "input_calc"), ("y", "input_calc")]
    assert [(label, kind.value) for label, kind, _ in calc.get_outgoing()] == [("result", "create")]
    assert calc.inputs.x.value == 2 and calc.outputs.result.pk == result.pk
    assert calc.process_type == "wf_library:add"
    assert calc.node_hash and result.node_hash
    reloaded = load_node(calc.pk)
    assert reloaded.is_finished_ok and reloaded.exit_status == 0


def test_plain_values_are_wrapped_and_defaults_apply():
    @calcfunction
    def scale(x: int, factor: float = 2.0, label: str = "s"):
        return {"value": x * factor, "label": label.value}

    outputs, node = run_get_node(scale, x=3)
    assert outputs["value"].value == 6.0 and isinstance(outputs["value"], Float)
    assert outputs["label"].value == "s" and isinstance(outputs["label"], Str)
    assert sorted(node.inputs) == ["factor", "label", "x"]
    assert isinstance(node.inputs.x, Int)


def test_workfunction_links_calls_and_returns():
    result, node = run_get_node(add_multiply, Int(1), Int(2), Int(3))
    assert result.value == 9
    assert isinstance(node, WorkFunctionNode) and node.is_finished_ok
    called = node.called
    assert [c.process_label for c in called] == ["add", "multiply"]
    assert all(c.caller.pk == node.pk for c in called)
    kinds = {kind for _, kind, _ in node.get_outgoing()}
    assert kinds == {LinkType.CALL_CALC, LinkType.RETURN}
    # the returned node was created by multiply, returned by the workfunction
    assert result.creator.pk == called[1].pk
    assert [(label, kind) for label, kind, _ in result.get_incoming()] == [
        ("result", LinkType.CREATE),
        ("result", LinkType.RETURN),
    ]


def test_bad_inputs_are_refused_before_anything_is_stored():
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError) as info:
        add(Int(1), Str("a"))
    assert "input 'y': expected Int, got Str" in str(info.value)
    with pytest.raises(InputValidationError, match="input 'y': is required"):
        add(x=Int(1))
    with pytest.raises(TypeError, match="add"):
        add(Int(1), Int(2), z=Int(3))
    assert get_backend().count_nodes() == before


def test_exception_marks_excepted_with_traceback():
    with pytest.raises(ValueError, match="cannot handle 4"):
        fail(Int(4))
    rows = get_backend().list_processes(states=["excepted"])
    assert len(rows) == 1
    node = load_node(rows[0]["id"])
    assert node.is_excepted
    assert "ValueError: cannot handle 4" in node.exception
    assert "wf_library.py" in node.exception
    assert node.inputs.x.value == 4  # the inputs stay recorded


def test_calcfunction_cannot_return_stored_node_and_workfunction_cannot_create():
    @calcfunction
    def passthrough(x):
        return x

    @workfunction
    def creates(x):
        return Int(x.value + 1)

    stored = Int(1).store()
    with pytest.raises(ValueError, match="already stored"):
        passthrough(stored)
    with pytest.raises(ValueError, match="workflow returns data that exists already"):
        creates(stored)


def test_kwargs_make_dynamic_inputs_and_nested_outputs():
    @calcfunction
    def total(**values):
        return {"sum": sum(v.value for v in values.values()), "stats": {"n": len(values)}}

    outputs, node = run_get_node(total, a=Int(1), b=Int(2), c=Int(3))
    assert outputs["sum"].value == 6
    assert outputs["stats"]["n"].value == 3
    assert sorted(node.inputs) == ["a", "b", "c"]
    assert node.outputs.stats.n.value == 3


def test_metadata_label_and_description():
    result = add(Int(1), Int(1), metadata={"label": "one plus one", "description": "d"})
    assert result.creator.label == "one plus one"
    assert result.creator.description == "d"


def test_multiply_and_dict_values():
    assert multiply(Int(3), Int(4)).value == 12

    @calcfunction
    def keys(d: Dict):
        return List_of(d)

    def List_of(d):
        from plait.orm import List

        return List(sorted(d.keys()))

    assert keys(Dict({"b": 1, "a": 2})).get_list() == ["a", "b"]
