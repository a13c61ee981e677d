"""Bad input gets one clear line, before anything is stored (issue 11).

Each test tries one bad value through the public API and checks that it is
refused with an error naming the option or value, and that the database did
not change (the node count is the same before and after).
"""

from __future__ import annotations

import pytest

from plait import InputValidationError
from plait.calculations.shell import run_shell_job
from plait.orm import Computer, Dict, InstalledCode, Int, List, NotExistentError, load_node
from plait.orm.errors import StoringNotAllowed
from plait.schedulers import InvalidJobOptionError
from plait.schedulers.direct import DirectScheduler
from plait.storage import get_backend


def _count() -> int:
    return get_backend().count_nodes()


# -- calculation options, at launch -------------------------------------------------------------------

BAD_OPTIONS = [
    ({"max_wallclock_seconds": 0}, "max_wallclock_seconds", "0"),
    ({"max_wallclock_seconds": -5}, "max_wallclock_seconds", "-5"),
    ({"max_memory_kb": -1}, "max_memory_kb", "-1"),
    ({"environment_variables": {"1BAD": "x"}}, "environment_variables", "1BAD"),
    ({"environment_variables": {"A-B": "x"}}, "environment_variables", "A-B"),
    ({"environment_variables": {"OK": "a\0b"}}, "environment_variables['OK']", "a\\x00b"),
    ({"scheduler_stdout": "out\nput"}, "scheduler_stdout", "out\\nput"),
    ({"scheduler_stderr": "err\0"}, "scheduler_stderr", "err\\x00"),
    ({"additional_retrieve_list": ["a\nb"]}, "additional_retrieve_list", "a\\nb"),
    ({"queue_name": "q\n#SBATCH --x"}, "queue_name", "q\\n#SBATCH --x"),
    ({"resources": {"num_machines": 2, "num_mpiprocs_per_machine": 1}}, "resources.num_machines", "2"),
]


@pytest.mark.parametrize(("options", "option", "shown"), BAD_OPTIONS)
def test_calc_options_refused_at_launch(options, option, shown):
    before = _count()
    with pytest.raises(InputValidationError) as info:
        run_shell_job("echo", arguments=["hi"], options=options)
    message = str(info.value)
    assert f"metadata.options.{option}" in message and shown in message, message
    assert "\n" not in message
    assert _count() == before


def test_nul_in_an_argument_refused_at_launch():
    before = _count()
    with pytest.raises(InputValidationError, match=r"arguments.*NUL"):
        run_shell_job("echo", arguments=["a\0b"])
    assert _count() == before


def test_a_plugin_extends_the_option_check():
    class Picky(DirectScheduler):
        def validate_job_options(self, options):
            super().validate_job_options(options)
            if options.get("queue_name") == "forbidden":
                raise InvalidJobOptionError("queue_name", "forbidden", "is not a queue here")

    with pytest.raises(InvalidJobOptionError, match="queue_name='forbidden' is not a queue here"):
        Picky().validate_job_options({"queue_name": "forbidden"})
    with pytest.raises(InvalidJobOptionError, match="max_wallclock_seconds=True"):
        Picky().validate_job_options({"max_wallclock_seconds": True})
    Picky().validate_job_options({"queue_name": "fine", "max_wallclock_seconds": 60})


@pytest.mark.parametrize("timeout", ["abc", -1, 0, True, [1]])
def test_non_numeric_command_timeout_refused_at_setup(timeout):
    with pytest.raises(ValueError, match="command_timeout"):
        DirectScheduler(command_timeout=timeout)
    before = _count()
    with pytest.raises(ValueError, match=r"computer 'c1': scheduler_options: .*command_timeout"):
        Computer("c1", scheduler_options={"command_timeout": timeout})
    assert _count() == before
    assert all(c.label != "c1" for c in Computer.list())


# -- computer and code setup -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"label": "x" * 256}, "at most 255"),
        ({"label": "a\0b"}, "no NUL"),
        ({"label": "c", "work_dir": "relative/dir"}, "work_dir='relative/dir' must be an absolute path"),
        ({"label": "c", "work_dir": "/tmp/a\nb"}, "work_dir="),
        ({"label": "c", "hostname": "h" * 300}, "hostname="),
        ({"label": "c", "retry_max_attempts": "3"}, "option retry_max_attempts must be of type int"),
        ({"label": "c", "prepend_text": 5}, "option prepend_text must be of type str"),
        ({"label": "c", "mpirun_command": "mpirun -np 2"}, "option mpirun_command"),
        ({"label": "c", "mpirun_command": ["mpirun", 2]}, "mpirun_command must be a list of strings"),
        ({"label": "c", "scheduler_options": "x"}, "option scheduler_options must be of type dict"),
        ({"label": "c", "minimum_poll_interval": True}, "minimum_poll_interval"),
    ],
)
def test_computer_setup_refusals(kwargs, words):
    with pytest.raises(ValueError) as info:
        Computer(**kwargs)
    assert words in str(info.value)


def test_computer_set_refuses_a_relative_work_dir():
    computer = Computer("c2").store()
    with pytest.raises(ValueError, match="absolute path"):
        computer.set(work_dir="scratch")
    assert Computer.get("c2").work_dir.startswith("/")


@pytest.mark.parametrize(
    ("label", "words"), [("pw@x", "no '@'"), ("a" * 256, "at most 255"), ("a\nb", "no newline")]
)
def test_code_label_refusals(label, words):
    before = _count()
    with pytest.raises(ValueError, match=words):
        InstalledCode(computer=Computer.get("localhost"), filepath_executable="/bin/true", label=label)
    code = InstalledCode(computer=Computer.get("localhost"), filepath_executable="/bin/true", label="ok")
    code.label = label  # set after construction: refused when stored
    with pytest.raises(StoringNotAllowed, match=words):
        code.store()
    assert _count() == before


# -- identifiers ---------------------------------------------------------------------------------------


@pytest.fixture
def three_nodes(any_profile):
    return [Int(i).store() for i in range(3)]


@pytest.mark.parametrize("identifier", [2**63, 2**64 + 3, "9" * 30, -(2**70), 0])
def test_a_pk_too_large_names_no_node(three_nodes, identifier):
    with pytest.raises(NotExistentError, match=f"pk {identifier}"):
        load_node(identifier)


def test_non_ascii_digits_are_not_a_pk(three_nodes):
    pk = three_nodes[0].pk
    arabic = chr(0x0660 + pk) if pk < 10 else "٣"
    with pytest.raises(NotExistentError, match=arabic):
        load_node(arabic)
    assert load_node(str(pk)).pk == pk


@pytest.mark.parametrize("prefix", ["%", "_", "____", "%%%%", "a%", "_" * 8, ""])
def test_like_wildcards_in_a_uuid_prefix_are_literal(three_nodes, prefix):
    with pytest.raises(NotExistentError):
        load_node(prefix)
    with pytest.raises(NotExistentError):
        load_node(uuid=prefix)


def test_a_real_prefix_still_loads(three_nodes):
    node = three_nodes[1]
    assert load_node(node.uuid[:8]).pk == node.pk
    assert load_node(node.uuid.upper()).pk == node.pk


@pytest.mark.parametrize("identifier", [True, 1.5, None, b"1"])
def test_wrong_identifier_types(identifier):
    with pytest.raises((TypeError, ValueError)):
        load_node(identifier)


# -- Dict and List values --------------------------------------------------------------------------


def _self_referencing_dict() -> dict:
    value: dict = {"a": 1}
    value["me"] = value
    return value


def _self_referencing_list() -> list:
    value: list = [1]
    value.append(value)
    return value


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Dict({1: 2}), "key 1 is not a string"),
        (lambda: Dict({"a": {2: "x"}}), "key 2 is not a string"),
        (lambda: Dict({(1, 2): 3}), "key (1, 2) is not a string"),
        (lambda: Dict(_self_referencing_dict()), "contains itself"),
        (lambda: List(_self_referencing_list()), "contains itself"),
        (lambda: List(_deep(5000)), "nested more than"),
        (lambda: Dict({"deep": _deep(5000)}), "nested more than"),
        (lambda: Dict({"x": float("nan")}), "NaN"),
    ],
)
def test_dict_and_list_refusals(make, words):
    before = _count()
    with pytest.raises(StoringNotAllowed) as info:
        make()
    assert words in str(info.value)
    assert _count() == before


def test_dict_key_is_refused_not_converted():
    node = Dict({"a": 1})
    with pytest.raises(StoringNotAllowed, match="key 1"):
        node[1] = 2  # type: ignore[index]
    node.store()
    assert load_node(node.pk).get_dict() == {"a": 1}


def test_list_needs_a_list():
    with pytest.raises(TypeError, match="List needs a list, not str"):
        List("abc")
    with pytest.raises(TypeError, match="Dict needs a dict"):
        Dict([("a", 1)])  # type: ignore[arg-type]
    assert List((1, 2)).get_list() == [1, 2]
    assert List(range(3)).get_list() == [0, 1, 2]


# -- the direct scheduler's wall time -------------------------------------------------------------------


def test_direct_job_over_its_wall_time_is_reported_as_wall_time():
    outputs, node = run_shell_job("sleep", arguments=["30"], options={"max_wallclock_seconds": 1})
    assert node.exit_status == 111, node.exit_message  # ERROR_SCHEDULER_OUT_OF_WALLTIME
    assert "wall-time" in (node.exit_message or "")
    stderr = outputs["retrieved"].get_content("_scheduler-stderr.txt")
    assert "exceeded its wall time of 1 s" in stderr


def test_direct_job_within_its_wall_time_is_fine():
    outputs, node = run_shell_job("echo", arguments=["hi"], options={"max_wallclock_seconds": 30})
    assert node.is_finished_ok, node.exit_message
    assert outputs["stdout"].get_content() == "hi\n"


# -- group identifiers --------------------------------------------------------------------------------


def test_group_identifiers_edge_values(any_profile):
    from plait.orm import Group, load_group

    groups = [Group(label=f"g{i}").store() for i in range(4)]
    pk = groups[-1].pk
    arabic = "".join(chr(0x0660 + int(d)) for d in str(pk))
    for identifier in (arabic, str(2**63), "9" * 30, "%%%%", "____"):
        with pytest.raises(NotExistentError):
            load_group(identifier)
    for kwargs in ({"pk": 2**64}, {"pk": -(2**70)}, {"uuid": "%"}, {"uuid": "____"}):
        with pytest.raises(NotExistentError):
            Group.get(**kwargs)
    assert load_group(str(pk)).pk == pk
    assert Group.get(uuid=groups[0].uuid[:8]).pk == groups[0].pk
