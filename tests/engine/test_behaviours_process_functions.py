"""Process functions behave as AiiDA users expect (issue 10, "Behaviours to match"), and nodes
passed or returned twice are stored once and linked twice."""

from __future__ import annotations

import pytest

from plait import WorkChain, calcfunction, run_get_node, workfunction
from plait.orm import Int, LinkType, ProcessState, Str, load_node
from plait.storage import get_backend


def incoming(node):
    return sorted((label, kind.value, value.pk) for label, kind, value in node.get_incoming())


def test_callable_default_is_called_per_launch(any_profile):
    calls = []

    def fresh():
        calls.append(1)
        return Int(len(calls))

    @calcfunction
    def echo(x=fresh):
        return Int(x.value)

    first, node1 = run_get_node(echo)
    second, node2 = run_get_node(echo)
    assert (first.value, second.value) == (1, 2)
    assert node1.inputs.x.pk != node2.inputs.x.pk


def test_explicit_none_for_a_none_default_is_accepted():
    @calcfunction
    def maybe(x: Int, y: Int | None = None):
        return Int(x.value + (y.value if y is not None else 100))

    assert maybe(Int(1), None).value == 101
    assert maybe(Int(1), y=None).value == 101
    assert maybe(Int(1), Int(2)).value == 3
    _, node = run_get_node(maybe, x=Int(1), y=None)
    assert [label for label, _, _ in node.get_incoming()] == ["x"]


def test_var_positional_arguments_recorded_in_order():
    @calcfunction
    def total(first, *rest):
        return Int(first.value * 1000 + sum((i + 1) * r.value for i, r in enumerate(rest)))

    result, node = run_get_node(total, Int(1), Int(2), Int(3), Int(4))
    assert result.value == 1000 + 2 + 6 + 12  # the order reached the function
    labels = [label for label, _, _ in sorted(node.get_incoming(), key=lambda t: t[0])]
    assert labels == ["first", "rest_0", "rest_1", "rest_2"]
    assert [node.inputs[f"rest_{i}"].value for i in range(3)] == [2, 3, 4]
    # plain values are wrapped as for named arguments
    assert total(1, 5).value == 1005


def test_var_positional_label_clash_is_refused_before_storing():
    @calcfunction
    def clash(*args, **kwargs):
        return Int(1)

    before = get_backend().count_nodes()
    with pytest.raises(ValueError, match="args_0"):
        clash(Int(1), args_0=Int(3))
    assert get_backend().count_nodes() == before


def test_metadata_default_is_honoured():
    @workfunction
    def labelled(metadata={"label": "from-default", "description": "described"}):  # noqa: B006
        return None

    _, node = run_get_node(labelled)
    assert (node.label, node.description) == ("from-default", "described")
    _, node = run_get_node(labelled, metadata={"label": "given"})
    assert node.label == "given"


def test_label_defaults_to_the_function_name():
    @calcfunction
    def named_after_me():
        return Int(1)

    _, node = run_get_node(named_after_me)
    assert node.label == "named_after_me"
    _, node = run_get_node(named_after_me, metadata={"label": "custom"})
    assert node.label == "custom"


def test_port_help_from_the_docstring():
    @calcfunction
    def documented(x, y=None):
        """Add things.

        :param x: the first number
        :param y: the second number,
            over two lines
        """
        return x

    ports = documented.spec().inputs.ports
    assert ports["x"].help == "the first number"
    assert ports["y"].help == "the second number, over two lines"
    assert documented.spec().inputs.help == "Add things."


# -- the same unstored node twice ------------------------------------------------------------------


def test_same_unstored_node_to_two_input_ports(any_profile):
    @calcfunction
    def add(x, y):
        return Int(x.value + y.value)

    shared = Int(4)
    result, node = run_get_node(add, x=shared, y=shared)
    assert result.value == 8 and node.is_finished_ok
    assert shared.is_stored
    assert incoming(node) == [("x", "input_calc", shared.pk), ("y", "input_calc", shared.pk)]


def test_same_unstored_node_returned_under_two_labels(any_profile):
    @calcfunction
    def twice():
        value = Int(7)
        return {"a": value, "b": value}

    outputs, node = run_get_node(twice)
    assert node.is_finished_ok
    assert outputs["a"].pk == outputs["b"].pk
    assert sorted((label, kind) for label, kind, _ in node.get_outgoing()) == [
        ("a", LinkType.CREATE),
        ("b", LinkType.CREATE),
    ]


class SameInputTwice(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("a", valid_type=Int)
        spec.input("b", valid_type=Int)
        spec.outline(cls.check)

    def check(self):
        assert self.inputs.a.pk == self.inputs.b.pk


def test_same_unstored_node_to_two_ports_of_a_work_chain(any_profile):
    shared = Int(1)
    _, node = run_get_node(SameInputTwice, a=shared, b=shared)
    assert node.is_finished_ok
    assert incoming(node) == [("a", "input_work", shared.pk), ("b", "input_work", shared.pk)]


def test_a_storage_error_on_outputs_ends_the_process_excepted(any_profile, monkeypatch):
    """Any error while the outputs are stored ends the process excepted; it is never left running."""
    from plait.orm import node as node_module

    @calcfunction
    def make():
        return Int(1)

    real = node_module.store_nodes

    def failing(nodes):
        if any(n.__class__ is Int for n in nodes):
            raise RuntimeError("disk full")
        return real(nodes)

    import plait.engine.process as process_module

    monkeypatch.setattr(process_module, "store_nodes", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        make()
    (row,) = [r for r in get_backend().list_processes() if r["process_label"] == "make"]
    node = load_node(row["node_id"])
    assert node.process_state is ProcessState.EXCEPTED
    assert "disk full" in (node.exception or "")


def test_an_integrity_error_on_outputs_ends_the_process_excepted(any_profile):
    """A real IntegrityError from the database (an output whose uuid is taken) ends the process
    excepted on both databases; it is never left running."""
    existing = Int(1).store()

    @calcfunction
    def clashing():
        value = Int(2)
        value._uuid = existing.uuid
        return value

    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        clashing()
    (row,) = [r for r in get_backend().list_processes() if r["process_label"] == "clashing"]
    assert row["state"] == ProcessState.EXCEPTED.value
    assert load_node(row["node_id"]).process_state is ProcessState.EXCEPTED


class ReturnsClash(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("uuid", valid_type=Str)
        spec.output("value", valid_type=Int)
        spec.outline(cls.step)

    def step(self):
        self.out("value", _clash(self.inputs.uuid))


@calcfunction
def _clash(uuid):
    value = Int(3)
    value._uuid = uuid.value
    return value


def test_an_integrity_error_in_a_work_chain_step_ends_both_excepted(any_profile):
    existing = Int(1).store()
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        run_get_node(ReturnsClash, uuid=Str(existing.uuid))
    states = {r["process_label"]: r["state"] for r in get_backend().list_processes()}
    assert states == {"ReturnsClash": "excepted", "_clash": "excepted"}
