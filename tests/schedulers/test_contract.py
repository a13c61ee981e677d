"""The scheduler contract: data classes, validation, the generated script, plugin lookup."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from plait.plugins import entry_points as plugin_lookup
from plait.schedulers import (
    CodeRun,
    JobInfo,
    JobResources,
    JobState,
    JobTemplate,
    Scheduler,
    SchedulerError,
    available_schedulers,
    get_scheduler_class,
)
from plait.schedulers.direct import DirectScheduler
from plait.schedulers.pbs import PbsScheduler
from plait.schedulers.slurm import SlurmScheduler

from .conftest import AWKWARD_NAME


class PlainScheduler(Scheduler):
    """The smallest plugin: a header comment, no real scheduler."""

    plugin_name = "plain"

    def _header(self, template: JobTemplate) -> list[str]:
        return [f"# plain header for {template.job_name}"]

    async def submit(self, transport, workdir, script_name):  # pragma: no cover - not used
        raise NotImplementedError

    async def query(self, transport, job_ids):  # pragma: no cover - not used
        raise NotImplementedError

    async def kill(self, transport, job_id):  # pragma: no cover - not used
        raise NotImplementedError


# -- JobResources ------------------------------------------------------------------------------------
def test_resources_fill_in_the_missing_count():
    assert JobResources(num_machines=2, tot_num_mpiprocs=8).num_mpiprocs_per_machine == 4
    assert JobResources(num_machines=3, num_mpiprocs_per_machine=2).tot_num_mpiprocs == 6
    plain = JobResources()
    assert (plain.num_machines, plain.num_mpiprocs_per_machine, plain.tot_num_mpiprocs) == (1, None, None)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_machines": 0}, "num_machines"),
        ({"num_machines": -1}, "num_machines"),
        ({"num_machines": 1.5}, "num_machines"),
        ({"num_machines": True}, "num_machines"),
        ({"num_machines": "2"}, "num_machines"),
        ({"num_mpiprocs_per_machine": 0}, "num_mpiprocs_per_machine"),
        ({"num_cores_per_mpiproc": -2}, "num_cores_per_mpiproc"),
        ({"tot_num_mpiprocs": 0}, "tot_num_mpiprocs"),
        ({"num_machines": 2, "num_mpiprocs_per_machine": 4, "tot_num_mpiprocs": 7}, "tot_num_mpiprocs"),
        ({"num_machines": 3, "tot_num_mpiprocs": 8}, "tot_num_mpiprocs"),
    ],
)
def test_resources_refuse_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        JobResources(**kwargs)


def test_resources_from_dict_refuses_unknown_keys_by_name():
    with pytest.raises(ValueError) as info:
        JobResources.from_dict({"num_machines": 1, "num_mpiprocs": 4, "gpus": 1})
    message = str(info.value)
    assert "'gpus'" in message and "'num_mpiprocs'" in message
    assert "num_mpiprocs_per_machine" in message  # the accepted keys are listed


def test_resources_round_trip_through_plain_data():
    resources = JobResources.from_dict({"num_machines": 2, "tot_num_mpiprocs": 8, "num_cores_per_mpiproc": 2})
    assert resources.to_dict() == {
        "num_machines": 2,
        "num_mpiprocs_per_machine": 4,
        "num_cores_per_mpiproc": 2,
        "tot_num_mpiprocs": 8,
    }
    assert JobResources.from_dict(resources.to_dict()) == resources


# -- CodeRun, JobTemplate, JobInfo -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cmdline": []}, "must not be empty"),
        ({"cmdline": "echo hi"}, "list of strings"),
        ({"cmdline": ["echo", 3]}, "strings only"),
        ({"cmdline": ["echo", "a\0b"]}, "NUL"),
        ({"cmdline": ["echo"], "stdout_name": "a\nb"}, "stdout_name"),
        ({"cmdline": ["echo"], "stderr_name": "e", "join_files": True}, "join_files"),
    ],
)
def test_code_run_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CodeRun(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_wallclock_seconds": 0}, "max_wallclock_seconds"),
        ({"max_memory_kb": -5}, "max_memory_kb"),
        ({"environment": {"1BAD": "x"}}, "environment"),
        ({"environment": {"A-B": "x"}}, "environment"),
        ({"environment": {"OK": 1}}, "environment"),
        ({"resources": {"num_machines": 1}}, "resources"),
        ({"queue_name": ""}, "queue_name"),
        ({"exit_code_file": ""}, "exit_code_file"),
        ({"scheduler_stdout": "a\nb"}, "scheduler_stdout"),
        ({"code_runs": ("echo",)}, "code_runs"),
        ({"mpirun_command": "mpirun -np 4"}, "mpirun_command"),
    ],
)
def test_template_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        JobTemplate(**kwargs)


def test_template_defaults_are_not_shared():
    first, second = JobTemplate(), JobTemplate()
    assert first.environment is not second.environment
    assert first.mpirun_command == ["mpirun", "-np", "{tot_num_mpiprocs}"]
    assert first.mpirun_command is not second.mpirun_command
    assert JobTemplate(code_runs=[CodeRun(["true"])]).code_runs == (CodeRun(["true"]),)


def test_job_info_vanished_and_failure_kinds():
    gone = JobInfo.vanished("42")
    assert (gone.state, gone.raw_state, gone.reason) == (JobState.DONE, "", "not listed by the scheduler")
    assert JobState.DONE.is_final and JobState.FAILED.is_final and not JobState.QUEUED.is_final
    with pytest.raises(ValueError, match="failure"):
        JobInfo("1", JobState.FAILED, "X", failure="exploded")
    with pytest.raises(ValueError, match="only for FAILED"):
        JobInfo("1", JobState.DONE, "X", failure="cancelled")
    assert JobState("running") is JobState.RUNNING and JobState.RUNNING == "running"


def test_scheduler_error_carries_the_command_and_survives_pickling():
    error = SchedulerError("sbatch refused the job", command="sbatch x", returncode=1, stderr="bad\n")
    assert "sbatch x" in str(error) and "exited with 1" in str(error) and "bad" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.command, copy.returncode, copy.stderr, str(copy)) == ("sbatch x", 1, "bad\n", str(error))


def test_scheduler_options_are_checked():
    assert SlurmScheduler().options["command_timeout"] == 120.0
    assert SlurmScheduler(command_timeout=None).options["command_timeout"] is None
    with pytest.raises(ValueError, match="'partition'"):
        SlurmScheduler(partition="debug")
    assert PbsScheduler(flavour="torque").flavour == "torque"
    with pytest.raises(ValueError, match="flavour"):
        PbsScheduler(flavour="lsf")


# -- the generated script ------------------------------------------------------------------------------
def _template(**kwargs) -> JobTemplate:
    return JobTemplate(**kwargs)


def test_script_layout_in_order():
    template = _template(
        job_name="layout",
        custom_scheduler_commands="#CUSTOM one\n#CUSTOM two\n",
        environment={"OMP_NUM_THREADS": "2"},
        prepend_text="echo before",
        append_text="echo after",
        code_runs=(CodeRun(["echo", "code"]),),
    )
    script = PlainScheduler().get_submit_script(template)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines[1] == "# plain header for layout"
    assert lines[2:4] == ["#CUSTOM one", "#CUSTOM two"]
    order = [
        "export OMP_NUM_THREADS=2",
        "echo before",
        "echo code",
        'echo "$__plait_status" > "$__plait_workdir"/.plait-exit-code',
        "echo after",
        'exit "$__plait_status"',
    ]
    positions = [lines.index(line) for line in order]
    assert positions == sorted(positions)
    assert "set -e" not in script


def test_script_quotes_arguments_file_names_and_environment():
    template = _template(
        environment={"GREETING": 'it\'s "quoted" $HOME `x`'},
        code_runs=(
            CodeRun(
                ["my code", "arg with space", "it's", "$HOME", "*"],
                stdin_name="in put",
                stdout_name="out'put",
                stderr_name='err"or',
            ),
        ),
    )
    script = PlainScheduler().get_submit_script(template)
    assert "export GREETING='it'\"'\"'s \"quoted\" $HOME `x`'" in script
    assert (
        "'my code' 'arg with space' 'it'\"'\"'s' '$HOME' '*' < 'in put' > 'out'\"'\"'put' 2> 'err\"or'"
        in script
    )


def test_script_mpirun_placeholders_and_join_files():
    template = _template(
        resources=JobResources(num_machines=2, num_mpiprocs_per_machine=3, num_cores_per_mpiproc=4),
        mpirun_command=[
            "srun",
            "--ntasks={tot_num_mpiprocs}",
            "-N",
            "{num_machines}",
            "-c{num_cores_per_mpiproc}",
        ],
        code_runs=(CodeRun(["pw.x"], stdout_name="out", join_files=True, withmpi=True), CodeRun(["serial"])),
    )
    script = PlainScheduler().get_submit_script(template)
    assert "srun --ntasks=6 -N 2 -c4 pw.x > out 2>&1\n" in script
    assert "\nserial\n" in script  # no mpirun for a serial code


def test_script_mpirun_placeholder_errors():
    unset = _template(code_runs=(CodeRun(["pw.x"], withmpi=True),))
    with pytest.raises(ValueError, match=r"\{tot_num_mpiprocs\}.*num_mpiprocs_per_machine"):
        PlainScheduler().get_submit_script(unset)
    unknown = _template(
        resources=JobResources(num_mpiprocs_per_machine=2),
        mpirun_command=["mpirun", "-np", "{nprocs}"],
        code_runs=(CodeRun(["pw.x"], withmpi=True),),
    )
    with pytest.raises(ValueError, match="nprocs"):
        PlainScheduler().get_submit_script(unknown)
    # Without a code that uses MPI the placeholders are not needed.
    PlainScheduler().get_submit_script(_template(code_runs=(CodeRun(["serial"]),)))


def _run_script(script: str, folder: Path) -> subprocess.CompletedProcess:
    (folder / "job.sh").write_text(script)
    return subprocess.run(["bash", "job.sh"], cwd=folder, capture_output=True, text=True, timeout=30)


def test_script_runs_and_records_the_first_failing_status(tmp_path: Path):
    folder = tmp_path / AWKWARD_NAME
    folder.mkdir()
    (folder / "in 'put'").write_text("from stdin\n")
    template = _template(
        environment={"VALUE": "literal $HOME"},
        prepend_text='echo "prepend $VALUE" > prepend.txt',
        append_text="echo appended > append.txt",
        exit_code_file="exit code 'file'",
        code_runs=(
            CodeRun(["cat"], stdin_name="in 'put'", stdout_name='out "1"'),
            CodeRun(["bash", "-c", "echo to-err >&2; exit 3"], stdout_name="out2", join_files=True),
            CodeRun(["bash", "-c", "exit 5"]),
            CodeRun(["bash", "-c", "echo ran anyway > out4"]),
        ),
    )
    result = _run_script(PlainScheduler().get_submit_script(template), folder)
    assert result.returncode == 3, result.stderr
    assert (folder / "exit code 'file'").read_text() == "3\n"
    assert (folder / 'out "1"').read_text() == "from stdin\n"
    assert (folder / "out2").read_text() == "to-err\n"
    assert (folder / "out4").read_text() == "ran anyway\n"
    assert (folder / "prepend.txt").read_text() == "prepend literal $HOME\n"
    assert (folder / "append.txt").read_text() == "appended\n"


def test_exit_code_file_stays_in_the_job_folder_after_a_cd(tmp_path: Path):
    template = _template(prepend_text="mkdir -p 'sub dir' && cd 'sub dir'", code_runs=(CodeRun(["false"]),))
    result = _run_script(PlainScheduler().get_submit_script(template), tmp_path)
    assert result.returncode == 1
    assert (tmp_path / ".plait-exit-code").read_text() == "1\n"
    assert not (tmp_path / "sub dir" / ".plait-exit-code").exists()


def test_absolute_exit_code_file_is_kept(tmp_path: Path):
    target = tmp_path / "status dir" / "code"
    target.parent.mkdir()
    template = _template(exit_code_file=str(target), prepend_text="cd /", code_runs=(CodeRun(["false"]),))
    result = _run_script(PlainScheduler().get_submit_script(template), tmp_path)
    assert result.returncode == 1
    assert target.read_text() == "1\n"


def test_script_of_successful_codes_writes_zero(tmp_path: Path):
    template = _template(code_runs=(CodeRun(["true"]), CodeRun(["echo", "ok"], stdout_name="o")))
    result = _run_script(PlainScheduler().get_submit_script(template), tmp_path)
    assert result.returncode == 0
    assert (tmp_path / ".plait-exit-code").read_text() == "0\n"


# -- plugin lookup ---------------------------------------------------------------------------------------
def test_get_scheduler_class_finds_the_builtins():
    assert get_scheduler_class("direct") is DirectScheduler
    assert get_scheduler_class("slurm") is SlurmScheduler
    assert get_scheduler_class("pbs") is PbsScheduler
    assert {"direct", "slurm", "pbs"} <= set(available_schedulers())
    for name in ("direct", "slurm", "pbs"):
        assert get_scheduler_class(name).plugin_name == name


def test_get_scheduler_class_without_metadata(monkeypatch):
    monkeypatch.setattr(plugin_lookup, "plugin_entry_points", lambda group: {})
    assert get_scheduler_class("slurm") is SlurmScheduler


def test_get_scheduler_class_prefers_entry_points(monkeypatch):
    class FakeEntryPoint:
        def __init__(self, target):
            self.target = target
            self.value = f"fake:{target.__name__}"

        def load(self):
            return self.target

    fakes = {"slurm": FakeEntryPoint(PlainScheduler), "bad": FakeEntryPoint(int)}
    monkeypatch.setattr(plugin_lookup, "plugin_entry_points", lambda group: fakes)
    assert get_scheduler_class("slurm") is PlainScheduler
    with pytest.raises(TypeError, match="not a subclass"):
        get_scheduler_class("bad")


def test_get_scheduler_class_unknown_name_lists_the_known():
    known = r"direct.*lsf.*pbs.*sge.*slurm"
    with pytest.raises(ValueError, match=rf"no scheduler plugin named 'loadleveler'.*{known}"):
        get_scheduler_class("loadleveler")


def test_import_is_cheap():
    code = (
        "import sys, plait.schedulers; "
        "heavy = [m for m in ('importlib.metadata', 'plait.schedulers.slurm', 'plait.schedulers.direct',"
        " 'plait.schedulers.pbs', 'asyncio', 'plait.transports.local', 'plait.engine') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
