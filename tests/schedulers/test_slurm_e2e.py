"""The slurm scheduler against the real slurmctld + slurmd on loopback (started by .ci/start-slurm.sh).

These tests fail when PLAIT_CI is set and the cluster is not usable; without PLAIT_CI they skip with
the reason.  Every command goes through LocalTransport; only the "cancelled from outside" test runs
scancel itself, as a user at the terminal would.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from plait.schedulers import CodeRun, JobInfo, JobState, JobTemplate
from plait.schedulers.slurm import SlurmScheduler

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

SCRIPT = "job 'a' \"b\".sh"


async def submit(scheduler, transport, folder: Path, template: JobTemplate) -> str:
    (folder / SCRIPT).write_text(scheduler.get_submit_script(template))
    return await scheduler.submit(transport, str(folder), SCRIPT)


async def wait_for(scheduler, transport, job_ids, predicate, seconds=60.0) -> dict[str, JobInfo]:
    """Poll with one query per round until ``predicate(info)`` holds for every job."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        answers = await scheduler.query(transport, job_ids)
        if all(predicate(info) for info in answers.values()):
            return answers
        if loop.time() > deadline:
            raise AssertionError(f"jobs did not get there within {seconds} s: {answers}")
        await asyncio.sleep(0.2)


def final(info: JobInfo) -> bool:
    return info.state.is_final


@pytest.fixture
def cleanup():
    """Job ids to cancel at the end, whatever happened (the cluster has only a few cores)."""
    job_ids: list[str] = []
    yield job_ids
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)


async def test_job_in_an_awkward_folder_runs_to_the_end(local_transport, awkward_dir: Path, cleanup):
    scheduler = SlurmScheduler()
    (awkward_dir / "in 'put'").write_text("payload\n")
    template = JobTemplate(
        job_name="plait e2e 'ok'",
        environment={"GREETING": "it's $literal"},
        code_runs=(
            CodeRun(["cat"], stdin_name="in 'put'", stdout_name='out "1"'),
            CodeRun(["bash", "-c", 'echo "$GREETING"']),
        ),
        scheduler_stdout="sched 'out' %j.txt",
        scheduler_stderr='sched "err".txt',
    )
    job_id = await submit(scheduler, local_transport, awkward_dir, template)
    cleanup.append(job_id)
    assert job_id.isdigit()
    answers = await wait_for(scheduler, local_transport, [job_id], final)
    info = answers[job_id]
    assert (info.state, info.raw_state, info.failure) == (JobState.DONE, "COMPLETED", None)
    assert info.queue == "debug" and info.num_machines == 1
    assert (awkward_dir / ".plait-exit-code").read_text() == "0\n"
    assert (awkward_dir / 'out "1"').read_text() == "payload\n"
    # the %j is literal because the plugin escaped it; quotes and spaces survived sbatch's parsing
    assert (awkward_dir / "sched 'out' %j.txt").read_text() == "it's $literal\n"
    assert (awkward_dir / 'sched "err".txt').exists()


async def test_failing_code_is_failed_with_its_status_in_the_file(
    local_transport, awkward_dir: Path, cleanup
):
    scheduler = SlurmScheduler()
    template = JobTemplate(code_runs=(CodeRun(["bash", "-c", "exit 3"]), CodeRun(["true"])))
    job_id = await submit(scheduler, local_transport, awkward_dir, template)
    cleanup.append(job_id)
    info = (await wait_for(scheduler, local_transport, [job_id], final))[job_id]
    assert (info.state, info.raw_state, info.failure) == (JobState.FAILED, "FAILED", "failed")
    assert info.reason == "NonZeroExitCode"
    assert (awkward_dir / ".plait-exit-code").read_text() == "3\n"


async def test_job_cancelled_from_outside_is_failed_cancelled(local_transport, awkward_dir: Path, cleanup):
    scheduler = SlurmScheduler()
    job_id = await submit(
        scheduler, local_transport, awkward_dir, JobTemplate(code_runs=(CodeRun(["sleep", "300"]),))
    )
    cleanup.append(job_id)
    await wait_for(scheduler, local_transport, [job_id], lambda info: info.state is JobState.RUNNING)
    scancel = await asyncio.create_subprocess_exec("scancel", job_id)  # a user at the terminal
    assert await scancel.wait() == 0
    info = (await wait_for(scheduler, local_transport, [job_id], final))[job_id]
    assert (info.state, info.raw_state, info.failure) == (JobState.FAILED, "CANCELLED", "cancelled")
    assert not (awkward_dir / ".plait-exit-code").exists()


async def test_many_jobs_are_polled_with_one_squeue(local_transport, awkward_dir: Path, cleanup):
    scheduler = SlurmScheduler()
    job_ids = []
    for index in range(4):
        folder = awkward_dir / f"job {index}"
        folder.mkdir()
        job_ids.append(
            await submit(scheduler, local_transport, folder, JobTemplate(code_runs=(CodeRun(["true"]),)))
        )
    cleanup.extend(job_ids)
    asked = [*job_ids, "999999"]  # an id the controller never saw
    local_transport.commands.clear()
    answers = await scheduler.query(local_transport, asked)
    assert len(local_transport.commands) == 1 and local_transport.commands[0].startswith("squeue ")
    assert list(answers) == asked
    assert answers["999999"].state is JobState.DONE and answers["999999"].raw_state == ""
    answers = await wait_for(scheduler, local_transport, job_ids, final)
    assert {info.state for info in answers.values()} == {JobState.DONE}
    for index in range(4):
        assert (awkward_dir / f"job {index}" / ".plait-exit-code").read_text() == "0\n"


async def test_kill_through_the_plugin(local_transport, awkward_dir: Path, cleanup):
    scheduler = SlurmScheduler()
    job_id = await submit(
        scheduler, local_transport, awkward_dir, JobTemplate(code_runs=(CodeRun(["sleep", "300"]),))
    )
    cleanup.append(job_id)
    await scheduler.kill(local_transport, job_id)
    info = (await wait_for(scheduler, local_transport, [job_id], final))[job_id]
    assert (info.state, info.failure) == (JobState.FAILED, "cancelled")
    assert not (awkward_dir / ".plait-exit-code").exists()
    await scheduler.kill(local_transport, job_id)  # cancelling a finished job is not an error
    await scheduler.kill(local_transport, "999999")  # nor is an unknown one


async def test_single_unknown_id_is_done(local_transport):
    answers = await SlurmScheduler().query(local_transport, ["999999"])
    assert answers["999999"] == JobInfo.vanished("999999")
