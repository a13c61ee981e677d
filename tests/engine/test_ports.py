"""Ports on work chains: validators, nested and dynamic namespaces, required ports inside namespaces."""

from __future__ import annotations

import pytest

from plait import InputValidationError, WorkChain, run_get_node
from plait.orm import Dict, Float, Int, Str
from plait.storage import get_backend


def positive(value):
    return None if value.value > 0 else "must be positive"


def consistent(namespace, _all=None):
    if "low" in namespace and "high" in namespace and namespace["low"].value > namespace["high"].value:
        return "low must not exceed high"
    return None


class Ported(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("count", valid_type=Int, validator=positive, help="how many")
        spec.input("settings.cutoff", valid_type=Float)  # a namespace made by the dotted name
        spec.input("settings.label", valid_type=Str, required=False)
        spec.input_namespace("bounds", validator=consistent, required=False)
        spec.input("bounds.low", valid_type=Int, default=lambda: Int(0))
        spec.input("bounds.high", valid_type=Int, default=lambda: Int(10))
        spec.input_namespace("extras", dynamic=True, valid_type=(Int, Str))
        spec.output("summary", valid_type=Dict)
        spec.outline(cls.summarise)

    def summarise(self):
        from wf_library import make_dict

        self.ctx.extras = sorted(self.inputs.extras)
        self.out("summary", make_dict(Int(len(self.ctx.extras))))


def test_valid_inputs_with_defaults_and_dynamic_namespace():
    outputs, node = run_get_node(
        Ported, count=3, settings={"cutoff": 40.0}, extras={"a": Int(1), "b": Str("x")}
    )
    assert node.is_finished_ok
    assert outputs["summary"].get_dict()["children"] == 2
    labels = sorted(label for label, *_ in node.get_incoming())
    assert labels == ["bounds__high", "bounds__low", "count", "extras__a", "extras__b", "settings__cutoff"]
    assert node.inputs.settings.cutoff.value == 40.0 and node.inputs.bounds.high.value == 10


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"count": -1, "settings": {"cutoff": 1.0}}, "input 'count': must be positive"),
        ({"count": 1}, "input 'settings.cutoff': is required but was not given"),
        ({"count": 1, "settings": {}}, "input 'settings.cutoff': is required but was not given"),
        ({"count": 1, "settings": {"cutoff": "x"}}, "input 'settings.cutoff': expected Float, got str"),
        (
            {"count": 1, "settings": {"cutoff": 1.0, "extra": Int(1)}},
            "input 'settings.extra': is not an input",
        ),
        (
            {"count": 1, "settings": {"cutoff": 1.0}, "bounds": {"low": 5, "high": 2}},
            "input 'bounds': low must not exceed high",
        ),
        (
            {"count": 1, "settings": {"cutoff": 1.0}, "extras": {"f": Float(1.0)}},
            "input 'extras.f': expected Int or Str",
        ),
        ({"count": 1, "settings": 3}, "input 'settings': is a namespace and needs a mapping"),
    ],
)
def test_bad_inputs_are_refused_naming_the_port(inputs, message):
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError) as info:
        run_get_node(Ported, **inputs)
    assert message in str(info.value)
    assert get_backend().count_nodes() == before


def test_a_missing_input_reads_as_a_missing_input():
    class Reads(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.input("maybe", valid_type=Int, required=False)
            spec.outline(cls.read)

        def read(self):
            return self.inputs.maybe

    with pytest.raises(AttributeError, match=r"no input 'maybe' was given \(given here: metadata\)"):
        run_get_node(Reads)
