"""Launching as AiiDA users expect (issue 10, "Behaviours to match"): an inputs dict and keyword
inputs together are refused, the bare WorkChain and CalcJob base classes are refused, and a
builder shows the defaults of the ports not set; every refusal before anything is stored."""

from __future__ import annotations

import asyncio

import pytest

from plait import CalcJob, WorkChain, arun, calcfunction, run, run_get_node, submit
from plait.orm import Int, List
from plait.storage import get_backend
from wf_library import Counter


@calcfunction
def add(x, y):
    return Int(x.value + y.value)


def _count() -> int:
    return get_backend().count_nodes()


@pytest.mark.parametrize("launch", ["run", "submit", "arun", "function"])
def test_inputs_dict_and_keywords_together_are_refused(any_profile, launch):
    before = _count()
    with pytest.raises(ValueError, match=r"both an inputs dict \(.*\) and keyword inputs"):
        if launch == "run":
            run(Counter, {"n": Int(1)}, fail_at=Int(3))
        elif launch == "submit":
            submit(Counter, {"n": Int(1)}, fail_at=Int(3))
        elif launch == "arun":
            asyncio.run(arun(Counter, {"n": Int(1)}, fail_at=Int(3)))
        else:
            run(add, {"x": Int(1)}, y=Int(2))
    assert _count() == before


def test_inputs_dict_or_keywords_alone_are_fine():
    assert run(add, {"x": Int(1), "y": Int(2)}).value == 3
    assert run(add, x=Int(1), y=Int(2)).value == 3


class ChildAddsTwice(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.outline(cls.step)

    def step(self):
        self.submit(Counter, {"n": Int(1)}, fail_at=Int(3))


def test_inputs_dict_and_keywords_together_are_refused_in_a_step():
    with pytest.raises(ValueError, match=r"both an inputs dict \(.*\) and keyword inputs"):
        run(ChildAddsTwice)


@pytest.mark.parametrize("base", [WorkChain, CalcJob])
@pytest.mark.parametrize("launch", [run, submit])
def test_the_bare_base_classes_are_refused_before_anything_is_stored(any_profile, base, launch):
    before = _count()
    with pytest.raises(TypeError, match=rf"{base.__name__} is a base class.*subclass"):
        launch(base)
    assert _count() == before


class NoOutline(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int, required=False)


def test_a_work_chain_without_an_outline_is_refused_before_anything_is_stored():
    before = _count()
    with pytest.raises(TypeError, match=r"NoOutline.*spec\.outline"):
        run(NoOutline, x=Int(1))
    assert _count() == before


class Defaults(WorkChain):
    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("plain", valid_type=Int, default=lambda: Int(5))
        spec.input("flag", valid_type=bool, default=True, non_db=True)
        spec.input("unset", valid_type=Int, required=False)
        spec.outline(cls.step)

    def step(self):
        pass


def test_a_builder_shows_the_defaults_of_unset_ports():
    builder = Defaults.get_builder()
    assert builder.plain.value == 5
    assert builder.flag is True
    assert builder.unset is None
    assert builder.metadata.call_link_label == "CALL"
    text = repr(builder)
    assert "'plain'" in text and "'flag': True" in text
    builder.plain = Int(7)
    assert builder.plain.value == 7
    assert run(builder) == {}


# -- calculation jobs ---------------------------------------------------------------------------------


def test_an_unknown_parser_name_is_refused_before_anything_is_stored(any_profile):
    from plait import InputValidationError
    from plait.calculations.shell import ShellJob
    from plait.orm import Str

    before = _count()
    inputs = {"command": Str("true"), "metadata": {"options": {"parser_name": "no-such-parser"}}}
    with pytest.raises(
        InputValidationError,
        match=r"metadata\.options\.parser_name.*no plugin named 'no-such-parser' in 'plait.parsers'",
    ):
        run(ShellJob, inputs)
    assert _count() == before


class Nested(CalcJob):
    """Writes files in nested folders and retrieves them with (source, target, depth) tuples."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("retrieve", valid_type=List)

    def prepare_for_submission(self, folder):
        from plait import CalcInfo, CodeInfo

        script = (
            "mkdir -p out/sub/deeper out/other && echo a > out/sub/a.txt && echo b > out/sub/b.txt "
            "&& echo c > out/other/c.dat && echo d > out/sub/deeper/d.dat && echo e > top.log"
        )
        return CalcInfo(
            codes_info=[CodeInfo(executable="/bin/sh", cmdline_params=["-c", script])],
            retrieve_list=[
                tuple(item) if isinstance(item, list) else item for item in self.inputs.retrieve.get_list()
            ],
        )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (["out/sub/*.txt", "flat", 1], ["flat/a.txt", "flat/b.txt"]),
        (["out/sub/*.txt", "deep", None], ["deep/out/sub/a.txt", "deep/out/sub/b.txt"]),
        (["out/sub/a.txt", "two", 2], ["two/sub/a.txt"]),
        (["out/sub/a.txt", "renamed.txt", 0], ["renamed.txt"]),
        (["out/*/*.dat", ".", 2], ["other/c.dat"]),
        (["out/*/*/*.dat", "", 1], ["d.dat"]),
        (["out/sub/deeper", "folder", 1], ["folder/deeper/d.dat"]),
        (["missing/*.txt", "none", 1], []),
        ("top.log", ["top.log"]),
    ],
)
def test_retrieve_list_accepts_source_target_depth_tuples(item, expected):
    outputs, node = run_get_node(Nested, retrieve=List([item]))
    assert node.is_finished_ok, node.exit_message
    kept = sorted(p for p in outputs["retrieved"].list_file_paths() if not p.startswith("_scheduler-"))
    assert kept == expected


def test_a_malformed_retrieve_item_is_refused_at_launch():
    from plait import InputValidationError

    before = _count()
    with pytest.raises(InputValidationError, match=r"additional_retrieve_list.*depth"):
        run(Nested, retrieve=List([]), metadata={"options": {"additional_retrieve_list": [["a", "b", -1]]}})
    assert _count() == before


def test_a_source_target_depth_item_in_additional_retrieve_list_is_accepted():
    """Defect guarded: the scheduler's option check refused every non-string item of
    ``additional_retrieve_list``, so the ``(source, target, depth)`` form the port accepts could not be
    given there."""
    outputs, node = run_get_node(
        Nested,
        retrieve=List([]),
        metadata={"options": {"additional_retrieve_list": [["out/sub/*.txt", "flat", 1]]}},
    )
    assert node.is_finished_ok, node.exit_message
    kept = sorted(p for p in outputs["retrieved"].list_file_paths() if p.startswith("flat/"))
    assert kept == ["flat/a.txt", "flat/b.txt"]
