"""The direct scheduler: command lines against a fake transport, then real jobs through LocalTransport."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from plait.schedulers import CodeRun, JobResources, JobState, JobTemplate, SchedulerError
from plait.schedulers.direct import DirectScheduler
from plait.transports.errors import ConnectionLostError

from .conftest import FakeTransport


# -- header and script ------------------------------------------------------------------------------
def test_header_is_comments_and_refuses_several_machines():
    template = JobTemplate(
        job_name="name\nwith newline",
        resources=JobResources(num_mpiprocs_per_machine=4, num_cores_per_mpiproc=2),
        max_wallclock_seconds=60,
    )
    script = DirectScheduler().get_submit_script(template)
    header = script.split("\n\n", 1)[0].splitlines()
    assert header[0] == "#!/bin/bash"
    assert all(line.startswith("#") for line in header)
    assert "name_with_newline" in header[1]
    with pytest.raises(ValueError, match="num_machines"):
        DirectScheduler().get_submit_script(JobTemplate(resources=JobResources(num_machines=2)))


def test_script_redirects_its_own_output_and_enforces_walltime():
    template = JobTemplate(scheduler_stdout="out 'x'", scheduler_stderr='err "y"', max_wallclock_seconds=90)
    script = DirectScheduler().get_submit_script(template)
    assert "exec > 'out '\"'\"'x'\"'\"'' 2> 'err \"y\"'" in script
    assert 'timeout --kill-after=10 90 "${BASH:-bash}" "$0" &' in script
    assert "timeout" not in DirectScheduler().get_submit_script(JobTemplate())


# -- commands, against a fake transport ----------------------------------------------------------------
async def test_submit_quotes_the_script_and_runs_in_workdir(fake: FakeTransport):
    fake.on("if [ ! -f", stdout="4242\n")
    job_id = await DirectScheduler().submit(fake, "/work dir/it's", "job 'x'.sh")
    assert job_id == "4242"
    (call,) = fake.calls
    assert call.workdir == "/work dir/it's"
    launch = "bash 'job '\"'\"'x'\"'\"'.sh' > /dev/null 2>&1 < /dev/null &"
    assert f"setsid {launch}" in call.command and f"nohup {launch}" in call.command  # nohup without setsid
    assert call.command.endswith('echo "$pid"')
    # waiting for the job to lead its group starts no program while /proc is there (one fork and
    # exec per job each, a thousand jobs at once): no seq, no command substitution
    assert "$(seq" not in call.command and '"$(if' not in call.command
    assert call.timeout == 120.0


async def test_submit_failure_is_a_scheduler_error(fake: FakeTransport):
    fake.on("if [ ! -f", returncode=2, stderr="no such job script: x.sh\n")
    with pytest.raises(SchedulerError, match="no such job script") as info:
        await DirectScheduler().submit(fake, "/w", "x.sh")
    assert info.value.returncode == 2 and "setsid" in info.value.command


PS_OUTPUT = """\
  101   101 Ss       01:02:03
  202   202 Z           00:07
  303    17 S        1-00:00:01
"""


async def test_query_is_one_ps_call_and_reads_every_case(fake: FakeTransport):
    fake.on("if [ -r /proc/self/stat ]", stdout=PS_OUTPUT)
    answers = await DirectScheduler().query(fake, ["101", "202", "303", "404", "101"])
    assert len(fake.calls) == 1
    command = fake.calls[0].command
    assert "/proc/$__p/stat" in command and "for __p in 101 202 303 404;" in command
    assert command.endswith("else ps -o pid=,pgid=,stat=,etime= -p 101,202,303,404; fi")
    assert list(answers) == ["101", "202", "303", "404"]
    running = answers["101"]
    assert (running.state, running.raw_state, running.wallclock_seconds) == (JobState.RUNNING, "Ss", 3723)
    assert answers["202"].state is JobState.DONE and answers["202"].raw_state == "Z"
    assert answers["303"].state is JobState.DONE and "reused" in answers["303"].reason
    assert answers["404"].state is JobState.DONE and answers["404"].reason == "not listed by the scheduler"


async def test_query_with_no_live_pid_and_with_no_ids(fake: FakeTransport):
    fake.on("if [ -r /proc/self/stat ]", returncode=1)
    answers = await DirectScheduler().query(fake, ["7", "8"])
    assert {info.state for info in answers.values()} == {JobState.DONE}
    assert await DirectScheduler().query(fake, []) == {}
    assert len(fake.calls) == 1


async def test_query_errors(fake: FakeTransport):
    fake.on("if [ -r /proc/self/stat ]", returncode=127, stderr="bash: ps: command not found\n")
    with pytest.raises(SchedulerError, match="command not found"):
        await DirectScheduler().query(fake, ["7"])
    with pytest.raises(ValueError, match="not a direct-scheduler job id"):
        await DirectScheduler().query(fake, ["7; rm -rf /"])
    garbled = FakeTransport().on("if [ -r /proc/self/stat ]", stdout="what is this\n")
    with pytest.raises(SchedulerError, match="cannot read ps line"):
        await DirectScheduler().query(garbled, ["7"])


async def test_transport_errors_are_not_wrapped(fake: FakeTransport):
    fake.raising(
        "if [ -r /proc/self/stat ]", ConnectionLostError("gone", host="fake", operation="exec_command_wait")
    )
    with pytest.raises(ConnectionLostError):
        await DirectScheduler().query(fake, ["7"])


async def test_kill_signals_the_group_and_tolerates_a_gone_job(fake: FakeTransport):
    fake.on("pgid=", returncode=0)
    await DirectScheduler().kill(fake, "555")
    assert "kill -TERM -- -555" in fake.calls[0].command
    gone = FakeTransport().on("pgid=", returncode=1, stderr="bash: line 1: kill: (-555) - No such process\n")
    await DirectScheduler().kill(gone, "555")
    refused = FakeTransport().on("pgid=", returncode=1, stderr="kill: (-555) - Operation not permitted\n")
    with pytest.raises(SchedulerError, match="Operation not permitted"):
        await DirectScheduler().kill(refused, "555")


# -- real jobs through LocalTransport ---------------------------------------------------------------------
async def wait_final(scheduler, transport, job_ids, seconds=30.0):
    """Poll (one query per round) until every job is final; return the last answers."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        answers = await scheduler.query(transport, job_ids)
        if all(info.state.is_final for info in answers.values()):
            return answers
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"jobs not finished after {seconds} s: {answers}")
        await asyncio.sleep(0.1)


def live_group_members(pgid: int) -> list[str]:
    """Processes of the group ``pgid`` that are not zombies (``ps`` run by the test itself)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    members = []
    for line in out.splitlines():
        _pid, group, stat, *_args = line.split(None, 3)
        if int(group) == pgid and not stat.startswith("Z"):
            members.append(line.strip())
    return members


async def submit_script(scheduler, transport, folder: Path, template: JobTemplate, name="job 'a' \"b\".sh"):
    (folder / name).write_text(scheduler.get_submit_script(template))
    return await scheduler.submit(transport, str(folder), name)


async def test_job_runs_in_an_awkward_folder_and_writes_its_exit_code(local_transport, awkward_dir: Path):
    scheduler = DirectScheduler()
    (awkward_dir / "in 'put'").write_text("hello\n")
    template = JobTemplate(
        environment={"WHO": "it's me"},
        code_runs=(
            CodeRun(["cat"], stdin_name="in 'put'", stdout_name='copy "1"'),
            CodeRun(["bash", "-c", 'echo "$WHO"; echo oops >&2; exit 4']),
        ),
        scheduler_stdout="sched out",
        scheduler_stderr="sched 'err'",
    )
    job_id = await submit_script(scheduler, local_transport, awkward_dir, template)
    answers = await wait_final(scheduler, local_transport, [job_id])
    assert answers[job_id].state is JobState.DONE
    assert (awkward_dir / ".plait-exit-code").read_text() == "4\n"
    assert (awkward_dir / 'copy "1"').read_text() == "hello\n"
    assert (awkward_dir / "sched out").read_text() == "it's me\n"
    assert (awkward_dir / "sched 'err'").read_text() == "oops\n"


async def test_many_jobs_are_polled_with_one_command(local_transport, awkward_dir: Path):
    scheduler = DirectScheduler()
    job_ids = []
    for index in range(5):
        folder = awkward_dir / f"job {index}"
        folder.mkdir()
        template = JobTemplate(code_runs=(CodeRun(["sleep", "0.5"]),))
        job_ids.append(await submit_script(scheduler, local_transport, folder, template))
    local_transport.commands.clear()
    answers = await scheduler.query(local_transport, job_ids)
    assert len(local_transport.commands) == 1
    # submit returned while the jobs still run: the transport's command did not wait for them
    assert {info.state for info in answers.values()} == {JobState.RUNNING}
    for job_id in job_ids:  # each job leads its own process group
        assert answers[job_id].raw_state.startswith(("S", "R", "D"))
    await wait_final(scheduler, local_transport, job_ids)
    for index in range(5):
        assert (awkward_dir / f"job {index}" / ".plait-exit-code").read_text() == "0\n"


async def test_kill_ends_the_whole_process_group(local_transport, awkward_dir: Path):
    scheduler = DirectScheduler()
    template = JobTemplate(
        prepend_text="sleep 300 &\nsleep 301 &",  # children that must die with the job
        code_runs=(CodeRun(["sleep", "302"]),),
    )
    job_id = await submit_script(scheduler, local_transport, awkward_dir, template)
    deadline = asyncio.get_running_loop().time() + 10
    while len(live_group_members(int(job_id))) < 4:  # bash + three sleeps
        assert asyncio.get_running_loop().time() < deadline, live_group_members(int(job_id))
        await asyncio.sleep(0.05)
    await scheduler.kill(local_transport, job_id)
    answers = await wait_final(scheduler, local_transport, [job_id], seconds=10)
    assert answers[job_id].state is JobState.DONE
    deadline = asyncio.get_running_loop().time() + 10
    while live_group_members(int(job_id)):
        assert asyncio.get_running_loop().time() < deadline, live_group_members(int(job_id))
        await asyncio.sleep(0.05)
    assert not (awkward_dir / ".plait-exit-code").exists()
    await scheduler.kill(local_transport, job_id)  # killing again is fine


async def test_walltime_is_enforced_with_timeout(local_transport, awkward_dir: Path):
    scheduler = DirectScheduler()
    template = JobTemplate(max_wallclock_seconds=1, code_runs=(CodeRun(["sleep", "60"]),))
    job_id = await submit_script(scheduler, local_transport, awkward_dir, template)
    answers = await wait_final(scheduler, local_transport, [job_id], seconds=20)
    assert answers[job_id].state is JobState.DONE
    assert not (awkward_dir / ".plait-exit-code").exists()
    deadline = asyncio.get_running_loop().time() + 10
    while live_group_members(int(job_id)):
        assert asyncio.get_running_loop().time() < deadline, live_group_members(int(job_id))
        await asyncio.sleep(0.05)


async def test_submitting_a_missing_script_fails_clearly(local_transport, awkward_dir: Path):
    with pytest.raises(SchedulerError, match="no such job script"):
        await DirectScheduler().submit(local_transport, str(awkward_dir), "missing 'x'.sh")


class WithoutSetsid:
    """Runs every command with a PATH that holds bash, nohup and sleep but no setsid (as on macOS)."""

    def __init__(self, inner, bin_dir: Path) -> None:
        self.inner = inner
        self.hostname = inner.hostname
        self.prefix = f"PATH={shlex.quote(str(bin_dir))}; "

    async def exec_command_wait(self, command, stdin=None, workdir=None, timeout=None):
        return await self.inner.exec_command_wait(self.prefix + command, stdin, workdir, timeout)


async def test_job_control_fallback_without_setsid(local_transport, awkward_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin without setsid"
    bin_dir.mkdir()
    for tool in ("bash", "nohup", "sleep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    scheduler = DirectScheduler()
    transport = WithoutSetsid(local_transport, bin_dir)
    job_id = await submit_script(
        scheduler, transport, awkward_dir, JobTemplate(code_runs=(CodeRun(["sleep", "300"]),))
    )
    # still its own process group leader: query (which checks pgid == pid) sees it running
    answers = await scheduler.query(local_transport, [job_id])
    assert answers[job_id].state is JobState.RUNNING
    await scheduler.kill(local_transport, job_id)
    await wait_final(scheduler, local_transport, [job_id], seconds=10)
    deadline = asyncio.get_running_loop().time() + 10
    while live_group_members(int(job_id)):
        assert asyncio.get_running_loop().time() < deadline, live_group_members(int(job_id))
        await asyncio.sleep(0.05)
