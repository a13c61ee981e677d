"""``plait calcjob``: the files a job was sent, retrieved and parsed, and its folder on the computer."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait import CalcInfo, CalcJob, CodeInfo, Parser, run_get_node, submit
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.orm import CalcJobNode, Computer, Dict, Float, InstalledCode, Int, load_node
from plait.storage import get_backend
from plait.transports.testing import LoopbackSshd, require_sshd
from plait.workflows.demo import newton_step

from .helpers import assert_one_line_error, plait_command

SCRIPT = "cp conf/params.in out.txt && mkdir -p res && printf '\\000\\001\\002' > res/blob.bin"


class TreeJob(CalcJob):
    """Sends a nested input file and a binary one; leaves a folder with a binary file; parses a Dict."""

    _default_parser = f"{__name__}:TreeParser"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("metadata.options.output_filename", valid_type=str, default="out.txt", non_db=True)
        spec.output("output_parameters", valid_type=Dict, required=False)

    def prepare_for_submission(self, folder: Path) -> CalcInfo:
        (folder / "conf").mkdir()
        (folder / "conf" / "params.in").write_text("alpha = 1\n")
        (folder / "table.bin").write_bytes(b"\0\xff")
        return CalcInfo(
            codes_info=[CodeInfo(executable="sh", cmdline_params=["-c", SCRIPT])],
            retrieve_list=["out.txt", "res"],
        )


class TreeParser(Parser):
    def parse(self, **kwargs):
        text = self.retrieved.get_object_content("out.txt")
        self.out("output_parameters", Dict({"alpha": int(text.split("=")[1]), "lines": 1}))


class BrokenJob(CalcJob):
    """Fails before anything reaches the computer: it never has a work folder."""

    def prepare_for_submission(self, folder: Path) -> CalcInfo:
        raise RuntimeError("cannot prepare")


@pytest.fixture
def tree_job(invoke) -> CalcJobNode:
    _, node = run_get_node(TreeJob)
    assert node.is_finished_ok, node.exit_message
    return node


@pytest.fixture
def add_job(invoke) -> CalcJobNode:
    bash = InstalledCode(computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash")
    _, node = run_get_node(ArithmeticAddCalculation, code=bash.store(), x=Int(3), y=Int(4))
    assert node.is_finished_ok, node.exit_message
    return node


# -- sent, retrieved, parsed ---------------------------------------------------------------------------


def test_inputls_and_inputcat_show_the_files_that_were_sent(invoke, tree_job):
    pk = str(tree_job.pk)
    assert invoke("calcjob", "inputls", pk).stdout.splitlines() == ["_plait_submit.sh", "conf/", "table.bin"]
    assert invoke("calcjob", "inputls", pk, "conf").stdout == "params.in\n"
    assert invoke("calcjob", "inputls", pk, "conf/params.in").stdout == "params.in\n"
    assert invoke("calcjob", "inputcat", pk, "conf/params.in").stdout == "alpha = 1\n"
    assert "cp conf/params.in out.txt" in invoke("calcjob", "inputcat", pk, "_plait_submit.sh").stdout
    assert invoke("calcjob", "inputcat", pk, "table.bin").stdout_bytes == b"\0\xff"  # raw bytes to a pipe

    assert_one_line_error(
        invoke("calcjob", "inputcat", pk, "conf", code=None), "'conf' is a folder", "not a file"
    )
    error = assert_one_line_error(
        invoke("calcjob", "inputls", pk, "nope", code=None), "no file or folder 'nope'"
    )
    assert "conf/params.in" in error  # says what there is
    assert_one_line_error(
        invoke("calcjob", "inputcat", pk, code=None), "declares no input_filename option", "give the PATH"
    )
    assert_one_line_error(
        invoke("calcjob", "inputcat", pk, "../../etc/passwd", code=None), "not a relative path"
    )


def test_inputcat_defaults_to_the_input_file(invoke, add_job):
    assert invoke("calcjob", "inputcat", str(add_job.pk)).stdout == "echo $((3 + 4))\n"
    assert invoke("calcjob", "outputcat", str(add_job.pk)).stdout == "7\n"


def test_outputls_and_outputcat_show_the_retrieved_files(invoke, tree_job):
    pk = str(tree_job.pk)
    assert invoke("calcjob", "outputls", pk).stdout.splitlines() == [
        "_scheduler-stderr.txt",
        "_scheduler-stdout.txt",
        "out.txt",
        "res/",
    ]
    assert invoke("calcjob", "outputls", pk, "res").stdout == "blob.bin\n"
    assert invoke("calcjob", "outputcat", pk).stdout == "alpha = 1\n"  # the output_filename option
    assert invoke("calcjob", "outputcat", pk, "res/blob.bin").stdout_bytes == b"\0\1\2"
    assert_one_line_error(invoke("calcjob", "outputcat", pk, "res", code=None), "'res' is a folder")
    assert_one_line_error(
        invoke("calcjob", "outputcat", pk, "missing.txt", code=None), "no file 'missing.txt'", "res/blob.bin"
    )


def test_binary_file_is_refused_on_a_terminal_only(invoke, tree_job, monkeypatch):
    import plait.cli.calcjob as module

    monkeypatch.setattr(module, "_is_terminal", lambda stream: True)
    result = invoke("calcjob", "outputcat", str(tree_job.pk), "res/blob.bin", code=None)
    assert_one_line_error(result, "'res/blob.bin' is a binary file (3 bytes)", "redirect")
    assert result.stdout_bytes == b""
    assert invoke("calcjob", "outputcat", str(tree_job.pk), "out.txt").stdout == "alpha = 1\n"


def test_res_prints_the_parsed_results(invoke, tree_job, add_job):
    import json

    assert json.loads(invoke("calcjob", "res", str(tree_job.pk)).stdout) == {"alpha": 1, "lines": 1}
    assert json.loads(invoke("calcjob", "res", str(tree_job.pk), "-k", "lines").stdout) == {"lines": 1}
    assert_one_line_error(
        invoke("calcjob", "res", str(tree_job.pk), "-k", "beta", code=None), "no key 'beta'", "alpha, lines"
    )
    # without output_parameters: the outputs that hold values, by label
    assert json.loads(invoke("calcjob", "res", str(add_job.pk)).stdout) == {"sum": 7}


def test_not_a_calcjob_and_not_run_yet(invoke, add_job):
    data = Int(1).store()
    assert_one_line_error(invoke("calcjob", "res", str(data.pk), code=None), "is a Int, not a process")
    _, step = run_get_node(newton_step, Float(1.0), Float(2.0))
    for command in ("inputls", "outputls", "res", "remotels", "gotocomputer"):
        assert_one_line_error(
            invoke("calcjob", command, str(step.pk), code=None),
            f"process {step.pk} is a CalcFunctionNode (newton_step), not a calculation job",
        )
    created = submit(ArithmeticAddCalculation, code=load_node(add_job.inputs.code.pk), x=Int(1), y=Int(2))
    pk = str(created.pk)
    assert_one_line_error(
        invoke("calcjob", "outputls", pk, code=None), f"calculation job {pk} has no retrieved files (created)"
    )
    assert_one_line_error(invoke("calcjob", "res", pk, code=None), "has no parsed results (created)")
    assert_one_line_error(invoke("calcjob", "remotels", pk, code=None), "has no remote folder (created)")
    assert invoke("calcjob", "inputls", pk).stdout == ""  # nothing sent yet


# -- the folder on the computer ----------------------------------------------------------------------


def test_remotels_and_remotecat_read_the_work_folder(invoke, tree_job):
    pk = str(tree_job.pk)
    workdir = Path(tree_job.remote_workdir)
    listing = invoke("calcjob", "remotels", pk).stdout.splitlines()
    assert listing == sorted(p.name + ("/" if p.is_dir() else "") for p in workdir.iterdir())
    assert {"conf/", "res/", "out.txt", "_plait_submit.sh", ".plait-exit-code"} <= set(listing)
    assert invoke("calcjob", "remotels", pk, "res").stdout == "blob.bin\n"
    long = invoke("calcjob", "remotels", pk, "-l", "res/blob.bin").stdout
    assert long.startswith("-rw") and " 3 " in long and long.rstrip().endswith("blob.bin")
    assert invoke("calcjob", "remotecat", pk).stdout == "alpha = 1\n"
    assert invoke("calcjob", "remotecat", pk, "res/blob.bin").stdout_bytes == b"\0\1\2"
    # the folder as it is now, not as it was retrieved
    (workdir / "later.txt").write_text("written after the job\n")
    assert invoke("calcjob", "remotecat", pk, "later.txt").stdout == "written after the job\n"
    assert_one_line_error(invoke("calcjob", "remotecat", pk, "res", code=None), "'res' is a folder")
    assert_one_line_error(
        invoke("calcjob", "remotels", pk, "nope", code=None), "has no file or folder 'nope'", str(workdir)
    )
    shutil.rmtree(workdir)
    assert_one_line_error(invoke("calcjob", "remotels", pk, code=None), "does not exist")


def test_gotocomputer_prints_the_cd_command(invoke, tree_job):
    out = invoke("calcjob", "gotocomputer", str(tree_job.pk)).stdout
    assert shlex.split(out) == ["cd", tree_job.remote_workdir]


def test_gotocomputer_open_starts_a_shell_in_the_folder(invoke, tree_job, plait_home):
    env = {**os.environ, "PLAIT_HOME": str(plait_home), "SHELL": "/bin/sh"}
    result = subprocess.run(
        [*plait_command(), "calcjob", "gotocomputer", str(tree_job.pk), "--open"],
        input="pwd\nexit 3\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == os.path.realpath(tree_job.remote_workdir)


# -- cleaning ---------------------------------------------------------------------------------------------


def test_cleanworkdir_removes_the_folder_and_marks_the_remote_data(any_profile, invoke, tree_job):
    pk = str(tree_job.pk)
    workdir = Path(tree_job.remote_workdir)
    out = invoke("calcjob", "cleanworkdir", pk, "-f").stdout
    assert f"Removed {workdir} on localhost (calculation job {pk})" in out
    assert not workdir.exists()
    remote = load_node(tree_job.outputs.remote_folder.pk)
    assert remote.is_cleaned and remote.get_extra("cleaned") is True
    assert_one_line_error(
        invoke("calcjob", "remotels", pk, code=None), "was removed by `plait calcjob cleanworkdir`"
    )
    assert invoke("calcjob", "outputcat", pk).stdout == "alpha = 1\n"  # what was retrieved stays
    again = invoke("calcjob", "cleanworkdir", pk, "-f").stdout
    assert f"Skipped {pk}" in again and "No work folder to remove." in again


def test_cleanworkdir_asks_first(invoke, tree_job, add_job):
    from click.testing import CliRunner

    from plait.cli.main import cli

    runner = CliRunner()
    pks = [str(tree_job.pk), str(add_job.pk)]
    declined = runner.invoke(cli, ["calcjob", "cleanworkdir", *pks], input="n\n")
    assert declined.exit_code == 1
    assert "Remove the work folders of 2 calculation jobs?" in declined.stderr
    assert "cancelled: no work folder was removed" in declined.stderr
    assert os.path.isdir(tree_job.remote_workdir) and os.path.isdir(add_job.remote_workdir)
    accepted = runner.invoke(cli, ["calcjob", "cleanworkdir", *pks], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert not os.path.exists(tree_job.remote_workdir) and not os.path.exists(add_job.remote_workdir)


def test_cleanworkdir_older_than_and_folders_already_gone(invoke, tree_job, add_job):
    out = invoke("calcjob", "cleanworkdir", str(tree_job.pk), "--older-than", "1", "-f").stdout
    assert f"Skipped {tree_job.pk}: modified" in out and "not 1 days ago" in out
    assert os.path.isdir(tree_job.remote_workdir)
    shutil.rmtree(add_job.remote_workdir)
    out = invoke("calcjob", "cleanworkdir", str(add_job.pk), "--older-than", "0", "-f").stdout
    assert "Already gone from the computer, marked cleaned" in out
    assert load_node(add_job.outputs.remote_folder.pk).is_cleaned


def test_cleanworkdir_refuses_a_job_that_has_not_terminated(invoke, tree_job, add_job):
    waiting = submit(ArithmeticAddCalculation, code=load_node(add_job.inputs.code.pk), x=Int(1), y=Int(2))
    result = invoke("calcjob", "cleanworkdir", str(tree_job.pk), str(waiting.pk), "-f", code=None)
    assert_one_line_error(result, f"not terminated: {waiting.pk} (created)", "nothing was removed")
    assert os.path.isdir(tree_job.remote_workdir)  # the other job of the command was not touched either
    assert_one_line_error(invoke("calcjob", "cleanworkdir", code=None), "Missing argument 'PK...'", code=2)


def test_a_job_that_never_had_a_work_folder(invoke):
    with pytest.raises(RuntimeError, match="cannot prepare"):
        run_get_node(BrokenJob)
    pk = next(r["id"] for r in get_backend().list_processes(states=None) if r["process_label"] == "BrokenJob")
    assert "Skipped" in invoke("calcjob", "cleanworkdir", str(pk), "-f").stdout
    assert_one_line_error(
        invoke("calcjob", "remotecat", str(pk), "x", code=None), "has no remote folder (excepted)"
    )
    assert_one_line_error(invoke("calcjob", "gotocomputer", str(pk), code=None), "has no remote folder")


# -- over SSH ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    require_sshd()
    server = LoopbackSshd(tmp_path_factory.mktemp("calcjob-sshd"))
    server.start()
    yield server
    server.stop()


@pytest.mark.sshd
@pytest.mark.parametrize("transport", ["ssh", "ssh-blocking"])
def test_remote_commands_over_ssh(invoke, sshd, tmp_path, plait_home, transport):
    computer = Computer(
        "loop",
        hostname=sshd.host,
        transport_type=transport,
        work_dir=str(tmp_path / "ssh-work"),
        safe_interval=0.0,
    ).store()
    computer.configure(**sshd.transport_options())
    _, node = run_get_node(TreeJob, metadata={"computer": "loop"})
    assert node.is_finished_ok, node.exit_message
    pk = str(node.pk)
    assert "res/" in invoke("calcjob", "remotels", pk).stdout.splitlines()
    assert invoke("calcjob", "remotecat", pk, "res/blob.bin").stdout_bytes == b"\0\1\2"

    # the printed command is the ssh command that opens a shell in the folder
    command = shlex.split(invoke("calcjob", "gotocomputer", pk).stdout)
    assert command[:2] == ["ssh", "-t"] and ["-p", str(sshd.port)] == command[2:4]
    assert command[-2] == sshd.host and command[-1].startswith(f"cd {shlex.quote(node.remote_workdir)} && ")
    shell = subprocess.run(
        [*command[:-1], command[-1].replace('exec "${SHELL:-/bin/sh}" -l', "pwd")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == os.path.realpath(node.remote_workdir)

    out = invoke("calcjob", "cleanworkdir", pk, "-f").stdout
    assert f"Removed {node.remote_workdir} on loop" in out
    assert not os.path.exists(node.remote_workdir)
    assert load_node(node.outputs.remote_folder.pk).is_cleaned


def test_a_computer_whose_transport_cannot_be_made(invoke, tmp_path):
    from plait.storage import get_profile

    computer = Computer("elsewhere", work_dir=str(tmp_path / "work")).store()
    _, node = run_get_node(TreeJob, metadata={"computer": "elsewhere"})
    assert node.is_finished_ok, node.exit_message
    get_backend().set_computer_config(computer.pk, get_profile().user_email, {"bogus": 1})  # a broken set-up
    for args in (("remotels", str(node.pk)), ("cleanworkdir", str(node.pk), "-f")):
        result = invoke("calcjob", *args, code=None)
        assert "cannot make the local transport of computer 'elsewhere'" in result.stderr
        assert "Traceback" not in result.output and "Error: unexpected" not in result.output
    assert os.path.isdir(node.remote_workdir)
    assert not load_node(node.outputs.remote_folder.pk).is_cleaned
    assert_one_line_error(invoke("calcjob", "remotels", "424242", code=None), "no node with pk 424242")
