"""spec.expose_inputs/expose_outputs, self.exposed_inputs/exposed_outputs, self.out(namespace, {...})."""

from __future__ import annotations

import pytest

from plait import (
    InputValidationError,
    OutputValidationError,
    ToContext,
    WorkChain,
    calcfunction,
    run_get_node,
)
from plait.engine.spec import ProcessSpec
from plait.orm import Dict, Float, Int, Str


def _positive(value):
    return None if value.value > 0 else "must be positive"


@calcfunction
def make(x: Int, y: Int) -> Int:
    return Int(x.value + y.value)


class Child(WorkChain):
    """A child with a namespace, a default, a validator, help and an optional port."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int, validator=_positive, help="the value")
        spec.input("y", valid_type=Int, default=lambda: Int(2), help="added to x")
        spec.input("label", valid_type=Str, required=False)
        spec.input_namespace("options", help="knobs")
        spec.input("options.scale", valid_type=Int, default=lambda: Int(1))
        spec.input("options.extra", valid_type=Dict, required=False)
        spec.output("sum", valid_type=Int)
        spec.output("info.doubled", valid_type=Int, required=False)
        spec.outline(cls.run)

    def run(self):
        total = make(self.inputs.x, self.inputs.y)
        self.out("sum", total)
        if self.inputs.options.scale.value == 2:
            self.out("info", {"doubled": make(total, total)})


class Parent(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(Child, namespace="child")
        spec.expose_inputs(Child, namespace="other", exclude=("label", "options.extra"))
        spec.expose_outputs(Child)
        spec.expose_outputs(Child, namespace="again", include=("sum",))
        spec.outline(cls.launch, cls.collect)

    def launch(self):
        return ToContext(
            first=self.submit(Child, self.exposed_inputs(Child, "child")),
            second=self.submit(Child, **self.exposed_inputs(Child, namespace="other")),
        )

    def collect(self):
        self.out_many(self.exposed_outputs(self.ctx.first, Child))
        self.out_many(self.exposed_outputs(self.ctx.second, Child, namespace="again"))


class Shared(WorkChain):
    """``x`` at the top level, the rest in ``inner.deep``: agglomerate gathers both levels."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(Child, include=("x",))
        spec.expose_inputs(Child, namespace="inner.deep", exclude=("x",))
        spec.expose_outputs(Child, namespace="inner.deep")
        spec.outline(cls.launch, cls.collect)

    def launch(self):
        self.ctx.gathered = sorted(self.exposed_inputs(Child, "inner.deep"))
        self.ctx.alone = sorted(self.exposed_inputs(Child, "inner.deep", agglomerate=False))
        return ToContext(child=self.submit(Child, self.exposed_inputs(Child, "inner.deep")))

    def collect(self):
        self.report(f"gathered={self.ctx.gathered} alone={self.ctx.alone}")
        self.out_many(self.exposed_outputs(self.ctx.child, Child, "inner.deep"))


def test_exposed_ports_keep_type_default_help_validator_and_required():
    inputs = Parent.spec().inputs
    x = inputs.get_port("child.x")
    assert x.valid_type == (Int,) and x.required and x.help == "the value" and x.validator is _positive
    y = inputs.get_port("child.y")
    assert not y.required and y.get_default().value == 2 and y.help == "added to x"
    assert not inputs.get_port("child.label").required
    assert inputs.get_port("child.options").help == "knobs"
    assert inputs.get_port("child.options.scale").get_default().value == 1
    assert "label" not in inputs.get_port("other") and "extra" not in inputs.get_port("other.options")
    assert "scale" in inputs.get_port("other.options")
    # the child's metadata comes along inside a namespace, never over the parent's own
    assert "call_link_label" in inputs.get_port("child.metadata")
    assert Shared.spec().inputs.get_port("metadata") is not Child.spec().inputs.get_port("metadata")
    outputs = Parent.spec().outputs
    assert outputs.get_port("sum").valid_type == (Int,) and outputs.get_port("sum").required
    assert not outputs.get_port("info.doubled").required
    assert list(outputs.get_port("again").ports) == ["sum"]


def test_exposed_inputs_go_to_the_child_and_outputs_come_back(any_profile):
    outputs, node = run_get_node(
        Parent,
        child={"x": Int(3), "options": {"scale": Int(2)}, "label": Str("a")},
        other={"x": Int(10), "y": Int(5)},
    )
    assert node.is_finished_ok, node.exit_message
    assert outputs["sum"].value == 5 and outputs["info"]["doubled"].value == 10
    assert outputs["again"]["sum"].value == 15 and "info" not in outputs["again"]
    first, second = sorted(node.called, key=lambda n: n.pk)
    assert first.inputs["x"].value == 3 and first.inputs["label"].value == "a"
    assert first.inputs["options__scale"].value == 2
    assert second.inputs["y"].value == 5 and "label" not in second.inputs
    assert second.inputs["options__scale"].value == 1  # the default, filled in the parent


def test_validators_and_required_of_exposed_ports_hold_in_the_parent(any_profile):
    with pytest.raises(InputValidationError, match=r"input 'child\.x': must be positive"):
        run_get_node(Parent, child={"x": Int(-1)}, other={"x": Int(1)})
    with pytest.raises(InputValidationError, match=r"input 'other\.x': is required"):
        run_get_node(Parent, child={"x": Int(1)})
    with pytest.raises(InputValidationError, match=r"'other\.label': is not an input"):
        run_get_node(Parent, child={"x": Int(1)}, other={"x": Int(1), "label": Str("no")})


def test_agglomerate_gathers_the_parent_namespaces_too(any_profile):
    outputs, node = run_get_node(Shared, x=Int(4), inner={"deep": {"y": Int(1)}})
    assert node.is_finished_ok, node.exit_message
    assert outputs["inner"]["deep"]["sum"].value == 5
    lines = [r["message"] for r in node.get_report()]
    assert "gathered=['metadata', 'options', 'x', 'y'] alone=['metadata', 'options', 'y']" in lines


def test_namespace_options_and_an_optional_namespace(any_profile):
    class Optional_(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.expose_inputs(
                Child, namespace="maybe", namespace_options={"required": False, "populate_defaults": False}
            )
            spec.outline(cls.run)

        def run(self):
            self.report(f"given={sorted(self.exposed_inputs(Child, 'maybe'))}")

    port = Optional_.spec().inputs.get_port("maybe")
    assert not port.required and not port.populate_defaults
    _, node = run_get_node(Optional_)
    assert node.is_finished_ok
    assert "given=[]" in [r["message"] for r in node.get_report()]


def test_out_fills_a_namespace_and_checks_its_ports(any_profile):
    class Filler(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.input("x", valid_type=Int)
            spec.output("info.doubled", valid_type=Int)
            spec.output("info.name", valid_type=Str, required=False)
            spec.input("bad", valid_type=Int, default=lambda: Int(0))
            spec.outline(cls.run)

        def run(self):
            if self.inputs.bad.value:
                self.out("info", {"doubled": self.inputs.x, "nope": self.inputs.x})
            else:
                self.out("info", {"doubled": self.inputs.x})

    outputs, node = run_get_node(Filler, x=Int(3))
    assert node.is_finished_ok and outputs["info"]["doubled"].value == 3
    with pytest.raises(OutputValidationError, match=r"output 'info\.nope' is not declared"):
        run_get_node(Filler, x=Int(3), bad=Int(1))


def test_bad_uses_are_refused_when_the_class_is_defined():
    def define_with(**kwargs):
        class Bad(WorkChain):
            @classmethod
            def define(cls, spec):
                super().define(spec)
                spec.expose_inputs(Child, **kwargs)
                spec.outline(cls.run)

            def run(self):
                pass

        return Bad

    with pytest.raises(ValueError, match="include and exclude are mutually exclusive"):
        define_with(namespace="c", include=("x",), exclude=("y",))
    with pytest.raises(ValueError, match=r"include names 'z', which is not a port of Child \(its inputs: "):
        define_with(namespace="c", include=("z",))
    with pytest.raises(ValueError, match=r"exclude names 'options\.nope'"):
        define_with(namespace="c", exclude=("options.nope",))
    with pytest.raises(TypeError, match="exclude must be a list or tuple of port names"):
        define_with(namespace="c", exclude="x")
    with pytest.raises(ValueError, match=r"namespace_options \['colour'\] are not namespace properties"):
        define_with(namespace="c", namespace_options={"colour": "red"})
    with pytest.raises(ValueError, match="namespace_options need a namespace"):
        define_with(namespace_options={"required": False})
    with pytest.raises(TypeError, match="needs a process class, got 42"):
        ProcessSpec().expose_inputs(42)  # type: ignore[arg-type]


def test_exposed_inputs_of_a_class_not_exposed_is_a_clear_error(any_profile):
    class Asks(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.expose_inputs(Child, namespace="child")
            spec.outline(cls.run)

        def run(self):
            self.exposed_inputs(Parent, "child")

    with pytest.raises(
        ValueError, match=r"Asks did not expose the inputs of Parent in namespace 'child' \(exposed: "
    ):
        run_get_node(Asks, child={"x": Int(1)})


def test_a_process_function_is_exposed_by_its_class(any_profile):
    class Wraps(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.expose_inputs(make, namespace="make")
            spec.expose_outputs(make)
            spec.outline(cls.run)

        def run(self):
            from plait import run_get_node as run_child

            _, child = run_child(make, **self.exposed_inputs(make, "make"))
            self.out_many(self.exposed_outputs(child, make))

    outputs, node = run_get_node(Wraps, make={"x": Int(1), "y": Int(2)})
    assert node.is_finished_ok, node.exit_message
    assert outputs["result"].value == 3


def test_float_ports_keep_their_auto_wrapping():
    class Takes(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.input("f", valid_type=Float)
            spec.outline(cls.run)

        def run(self):
            pass

    class Exposes(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.expose_inputs(Takes, namespace="t")
            spec.outline(cls.run)

        def run(self):
            pass

    processed = Exposes.prepare_inputs({"t": {"f": 1.5}})
    assert isinstance(processed["t"]["f"], Float) and processed["t"]["f"].value == 1.5


def test_include_reaches_into_a_namespace_of_the_child():
    class Picks(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.expose_inputs(Child, namespace="c", include=("x", "options.scale"))
            spec.expose_outputs(Child, exclude=("info",))
            spec.outline(cls.run)

        def run(self):
            pass

    inputs = Picks.spec().inputs
    assert sorted(inputs.get_port("c").ports) == ["options", "x"]
    assert list(inputs.get_port("c.options").ports) == ["scale"]
    assert inputs.get_port("c.options").help == "knobs"  # the namespace keeps its properties
    assert list(Picks.spec().outputs.ports) == ["sum"]
    assert Picks.spec()._exposed_inputs == {"c": {Child: ["x", "options"]}}
