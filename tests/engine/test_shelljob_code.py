"""ShellJob runs the code it records (issue 10): with a ``code`` input the job runs the code's
executable with the ``arguments``, on the code's computer; ``code`` and ``command`` together, or
neither, are refused before anything is stored."""

from __future__ import annotations

import pytest

from plait import InputValidationError, run_get_node
from plait.calculations.shell import ShellJob, run_shell_job
from plait.orm import Computer, InstalledCode, LinkType, List, PortableCode, SinglefileData, Str
from plait.storage import get_backend


@pytest.fixture
def echo_code(tmp_path):
    """An installed code on localhost whose executable says that it ran, and with what."""
    script = tmp_path / "bin" / "say-hello"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\necho "hello from the code: $*"\n')
    script.chmod(0o755)
    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable=str(script), label="say-hello"
    )
    return code.store()


def test_shelljob_runs_the_code_with_its_arguments(any_profile, echo_code):
    results, node = run_shell_job(
        code=echo_code,
        arguments=["{table}", "two"],
        nodes={"table": SinglefileData(b"1\n", filename="table.txt")},
    )
    assert node.is_finished_ok, node.exit_message
    assert results["stdout"].get_content().strip() == "hello from the code: table.txt two"
    # the provenance says what ran: the code is an input, the script runs its executable
    assert node.inputs.code.pk == echo_code.pk
    assert "command" not in {label for label, _, _ in node.get_incoming()}
    script = node.get_object_content("raw_input/_plait_submit.sh")
    assert echo_code.filepath_executable in script
    assert get_backend().get_node(pk=node.pk)["computer_id"] == echo_code.computer.pk


def test_shelljob_code_through_run_and_the_spec(echo_code):
    _, node = run_get_node(ShellJob, code=echo_code, arguments=List(["x"]))
    assert node.is_finished_ok, node.exit_message
    assert node.outputs.stdout.get_content().strip() == "hello from the code: x"
    assert [(label, kind) for label, kind, _ in node.get_incoming() if label == "code"] == [
        ("code", LinkType.INPUT_CALC)
    ]


def test_shelljob_runs_a_portable_code(tmp_path):
    folder = tmp_path / "portable"
    folder.mkdir()
    (folder / "run.sh").write_text('#!/bin/sh\necho "portable: $1"\n')
    code = PortableCode(filepath_files=folder, filepath_executable="run.sh", label="portable-say").store()
    results, node = run_shell_job(code=code, arguments=["yes"])
    assert node.is_finished_ok, node.exit_message
    assert results["stdout"].get_content().strip() == "portable: yes"


def test_code_and_command_together_are_refused_before_anything_is_stored(any_profile, echo_code):
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError, match=r"code.*command.*not both"):
        run_get_node(ShellJob, code=echo_code, command=Str("echo"))
    with pytest.raises(ValueError, match=r"code.*command.*not both"):
        run_shell_job("echo", code=echo_code)
    assert get_backend().count_nodes() == before


def test_neither_code_nor_command_is_refused_before_anything_is_stored():
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError, match=r"give a `code` or a `command`"):
        run_get_node(ShellJob, arguments=List(["x"]))
    assert get_backend().count_nodes() == before


def test_command_alone_still_works():
    results, node = run_shell_job("echo", arguments=["plain"])
    assert node.is_finished_ok and results["stdout"].get_content().strip() == "plain"
