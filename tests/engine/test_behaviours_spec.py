"""Ports and spec behave as AiiDA/plumpy users expect (issue 10, "Behaviours to match")."""

from __future__ import annotations

import pytest

from plait import InputValidationError, WorkChain, run_get_node
from plait.engine.spec import ProcessSpec
from plait.orm import Int, Str


def test_outline_with_a_non_callable_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"'not a step'.*outline"):

        class Broken(WorkChain):
            @classmethod
            def define(cls, spec):
                super().define(spec)
                spec.outline(cls.step, "not a step")

            def step(self):
                pass


def test_predicate_with_the_wrong_signature_is_refused_when_the_class_is_defined():
    from plait.engine.workchain import while_

    with pytest.raises(TypeError, match=r"predicate.*needs.*self"):

        class Broken(WorkChain):
            @classmethod
            def define(cls, spec):
                super().define(spec)
                spec.outline(while_(cls.again)(cls.step))

            def again(self, extra):
                return False

            def step(self):
                pass


def test_define_without_super_is_refused():
    with pytest.raises(TypeError, match=r"super\(\).define\(spec\)"):

        class Forgetful(WorkChain):
            @classmethod
            def define(cls, spec):
                spec.input("x", valid_type=Int)
                spec.outline(cls.step)

            def step(self):
                pass


class TopValidated(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("a", valid_type=Int)
        spec.input("b", valid_type=Int)
        spec.inputs.validator = cls.check_all
        spec.outline(cls.step)

    @staticmethod
    def check_all(inputs, _ctx=None):
        if inputs["a"].value > inputs["b"].value:
            return "a must not exceed b"
        return None

    def step(self):
        pass


def test_validator_of_the_top_level_inputs_namespace_is_called():
    from plait.storage import get_backend

    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError, match="a must not exceed b"):
        run_get_node(TopValidated, a=Int(3), b=Int(1))
    assert get_backend().count_nodes() == before
    _, node = run_get_node(TopValidated, a=Int(1), b=Int(3))
    assert node.is_finished_ok


@pytest.mark.parametrize("name", ["1x", "x_", "a__b", "_x", "with-dash", "a b", ""])
def test_port_names_must_be_identifiers_without_edge_or_double_underscores(name):
    spec = ProcessSpec()
    for declare in (spec.input, spec.output, spec.input_namespace, spec.output_namespace):
        with pytest.raises(ValueError, match="port name"):
            declare(name)
    with pytest.raises(ValueError, match="port name"):
        spec.input(f"ns.{name}" if name else "ns.")


def test_good_port_names_are_accepted():
    spec = ProcessSpec()
    spec.input("x1")
    spec.input("ns.inner_name")
    spec.output("result_2")


@pytest.mark.parametrize(
    ("status", "label", "message", "what"),
    [
        ("400", "ERROR_X", "msg", "status"),
        (400.0, "ERROR_X", "msg", "status"),
        (True, "ERROR_X", "msg", "status"),
        (400, 4, "msg", "label"),
        (400, "ERROR_X", 5, "message"),
    ],
)
def test_exit_code_declaration_types_are_checked(status, label, message, what):
    spec = ProcessSpec()
    with pytest.raises(TypeError, match=what):
        spec.exit_code(status, label, message)


def test_a_default_of_the_wrong_type_is_refused_when_declared():
    spec = ProcessSpec()
    with pytest.raises(TypeError, match=r"'x'.*default.*Int"):
        spec.input("x", valid_type=Int, default=Str("no"))
    with pytest.raises(TypeError, match=r"'flag'.*default"):
        spec.input("flag", valid_type=bool, default="yes", non_db=True)
    spec.input("y", valid_type=Int, default=5)  # a plain value the port wraps is fine
    spec.input("z", valid_type=Int, default=lambda: Int(1))  # callables are called per launch


class MixedNamespace(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace("settings", non_db=True)
        spec.input("settings.plain", valid_type=int, default=2)
        spec.input("settings.node", valid_type=Int, non_db=False)
        spec.outline(cls.step)

    def step(self):
        assert self.inputs.settings.plain == 7
        assert self.inputs.settings.node.value == 3


def test_explicit_non_db_false_in_a_non_db_namespace_is_honoured():
    ports = MixedNamespace.spec().inputs["settings"].ports
    assert ports["plain"].non_db is True and ports["node"].non_db is False
    _, node = run_get_node(MixedNamespace, settings={"plain": 7, "node": Int(3)})
    assert node.is_finished_ok
    assert [label for label, _, _ in node.get_incoming()] == ["settings__node"]
    assert node.get_attribute("non_db_inputs") == {"settings": {"plain": 7}}


class Optional(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int, required=False)
        spec.input("y", valid_type=Int, default=lambda: Int(9))
        spec.input("z", valid_type=Int)
        spec.outline(cls.step)

    def step(self):
        assert "x" not in self.inputs
        assert self.inputs.y.value == 9


def test_an_optional_port_accepts_none_as_not_given():
    _, node = run_get_node(Optional, x=None, y=None, z=Int(1))
    assert node.is_finished_ok
    assert sorted(label for label, _, _ in node.get_incoming()) == ["y", "z"]
    with pytest.raises(InputValidationError, match="'z': is required"):
        run_get_node(Optional, z=None)
