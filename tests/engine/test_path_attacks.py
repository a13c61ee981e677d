"""Files stay where they belong (issue 11): attacks with names that would leave their folder.

Every name that becomes a path (a ShellJob's ``outputs``, the file-name options, the lists a plugin
returns) is refused before anything is stored or uploaded; a symlink in a retrieved folder never
makes plait store a local file; a file name that begins with ``-`` never becomes an option.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from plait import InputValidationError, run_get_node
from plait.calculations.shell import ShellJob, run_shell_job
from plait.engine.calcjob import CalcInfo, CalcJob, CodeInfo
from plait.orm import FolderData, List, SinglefileData, Str, load_node
from plait.schedulers.direct import DirectScheduler
from plait.schedulers.pbs import PbsScheduler
from plait.schedulers.slurm import SlurmScheduler
from plait.storage import get_backend
from plait.transports._remote_shell import copy_command, remove_tree_command
from plait.transports.local import LocalTransport
from plait.transports.relative_paths import UnsafePathError

# -- names from inputs: refused at launch, nothing stored ------------------------------------------


@pytest.mark.parametrize("name", ["../../../x/evil.txt", "/etc/passwd", "out/../../x", "a\0b", ""])
def test_shelljob_outputs_that_leave_the_folder_are_refused_at_launch(name: str) -> None:
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError, match=r"outputs"):
        run_get_node(ShellJob, command=Str("true"), outputs=List([name]))
    assert get_backend().count_nodes() == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("input_filename", "../../../f"),
        ("output_filename", "/tmp/f"),
        ("scheduler_stdout", "../out"),
        ("scheduler_stderr", "x/../../err"),
        ("additional_retrieve_list", ["../secret"]),
        ("additional_retrieve_list", [["*.txt", "../up", 0]]),
        ("additional_retrieve_list", [["/etc/*", "here", 0]]),
    ],
)
def test_file_name_options_that_leave_the_folder_are_refused_at_launch(option: str, value: Any) -> None:
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError, match=rf"metadata\.options\.{option}"):
        run_get_node(ShellJob, command=Str("true"), metadata={"options": {option: value}})
    assert get_backend().count_nodes() == before


# -- names a plugin returns: refused before upload, the job excepts ---------------------------------


class _BadListsJob(CalcJob):
    """A plugin whose prepare_for_submission returns the lists the test puts in :attr:`calc_info`."""

    calc_info: dict[str, Any] = {}

    def prepare_for_submission(self, folder: Path) -> CalcInfo:
        (folder / "in.txt").write_text("x")
        return CalcInfo(**{"codes_info": [CodeInfo(executable="true")], **type(self).calc_info})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("local_copy_list", "local"),
        ("remote_copy_list", [("/etc/hostname", "../../copied")]),
        ("remote_symlink_list", [("/etc", "/tmp/link")]),
        ("retrieve_list", ["../../*"]),
        ("retrieve_temporary_list", [("*", "../t", 0)]),
        ("codes_info", [CodeInfo(executable="true", stdout_name="../stdout")]),
    ],
)
def test_plugin_lists_that_leave_the_folder_except_the_job_before_upload(
    field: str, value: Any, tmp_path: Path
) -> None:
    if value == "local":
        node = SinglefileData(b"data", filename="data.txt").store()
        value = [(node, "data.txt", "../../../outside.txt")]
    _BadListsJob.calc_info = {field: value}
    with pytest.raises(UnsafePathError, match=rf"_BadListsJob\.prepare_for_submission: {field} item 0"):
        run_get_node(_BadListsJob)
    (row,) = get_backend().list_processes(states=["excepted"])
    node = load_node(row["id"])  # a plugin bug: excepted at once, not paused for a retry
    assert f"{field} item 0" in (node.exception or "")
    assert "remote_folder" not in {label for label, _, _ in node.get_outgoing()}  # nothing uploaded


# -- symlinks in a retrieved folder ---------------------------------------------------------------------


def test_a_symlink_in_a_retrieved_folder_never_stores_a_local_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("local secret\n")
    up = "../" * 30  # far enough up from any folder: resolves to / on both sides
    command = (
        f"mkdir -p out/sub && echo remote > out/real.txt && ln -s {up}{str(secret)[1:]} out/relative "
        f"&& ln -s {secret} out/sub/absolute && ln -s real.txt out/inside"
    )
    _, node = run_shell_job(
        "bash",
        arguments=["-c", command],
        outputs=["out/real.txt"],
        options={"additional_retrieve_list": ["out"]},  # the folder, with its links
    )
    assert node.is_finished_ok, node.exit_message
    retrieved = node.outputs.retrieved
    assert isinstance(retrieved, FolderData)
    assert retrieved.get_content("out/real.txt") == "remote\n"
    for relpath in retrieved.list_file_paths():
        assert retrieved.get_content(relpath, "rb") != secret.read_bytes(), relpath
    assert {"out/relative", "out/sub/absolute", "out/inside"}.isdisjoint(retrieved.list_file_paths())
    report = "\n".join(str(entry.get("message")) for entry in node.get_report())
    assert "out/relative" in report and "symlink" in report


# -- names beginning with "-" ---------------------------------------------------------------------------


def test_a_shelljob_file_named_like_an_option_is_passed_as_a_file() -> None:
    results, node = run_shell_job(
        "cat", arguments=["{f}"], nodes={"f": SinglefileData(b"hello\n", filename="--help")}
    )
    assert node.is_finished_ok, node.exit_message
    assert results["stdout"].get_content() == "hello\n"


async def test_direct_submit_runs_a_script_named_like_an_option(tmp_path: Path) -> None:
    # written under another name and renamed, so that the marker never exists half written
    (tmp_path / "-job.sh").write_text("echo ran > marker.part && mv marker.part marker\n")
    transport = LocalTransport()
    await transport.open()
    try:
        await DirectScheduler().submit(transport, str(tmp_path), "-job.sh")
    finally:
        await transport.close()
    for _ in range(400):
        if (tmp_path / "marker").exists():
            break
        await asyncio.sleep(0.025)
    assert (tmp_path / "marker").read_text() == "ran\n"


@pytest.mark.parametrize(
    ("scheduler", "program", "answer"),
    [(SlurmScheduler(), "sbatch", "123"), (PbsScheduler(), "qsub", "123.server")],
)
async def test_batch_submit_passes_a_script_named_like_an_option_as_a_file(
    scheduler: Any, program: str, answer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``sbatch``/``qsub`` on PATH records the arguments it really receives."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / program
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/argv"\necho {answer}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()
    transport = LocalTransport()
    await transport.open()
    try:
        await scheduler.submit(transport, str(work), "-job.sh")
    finally:
        await transport.close()
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[-1] == "./-job.sh" and "-job.sh" not in argv


def test_remote_copy_and_remove_commands_take_names_as_files(tmp_path: Path) -> None:
    """The ssh plugins' ``cp``/``rm`` lines, run by a real bash: ``--`` ends the options."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "-rf").write_text("x")
    (work / "keep").write_text("kept")
    for command in (copy_command("-rf", "--help"), remove_tree_command("-rf")):
        subprocess.run(["bash", "-c", command], cwd=work, check=True, capture_output=True)
    assert sorted(os.listdir(work)) == ["--help", "keep"]


def test_a_fetch_never_writes_through_a_symlink_an_earlier_item_brought(tmp_path: Path) -> None:
    """``d`` brings the link ``d/lnk -> ../../<outside>``; fetching ``d/lnk/f`` next would write
    through it into a local folder outside the fetch folder (the link resolves differently here)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    relative = os.path.relpath(outside, tempfile.gettempdir())  # the fetch folder is in gettempdir()
    if relative.startswith(".."):
        pytest.skip("tmp_path is not below the temporary folder")
    command = f"mkdir -p d ../{relative} && echo remote > ../{relative}/f && ln -s ../../{relative} d/lnk"
    with pytest.raises(UnsafePathError, match=r"through the retrieved symlink 'd/lnk'"):
        run_shell_job(
            "bash", arguments=["-c", command], options={"additional_retrieve_list": ["d", "d/lnk/f"]}
        )
    assert not (outside / "f").exists()
