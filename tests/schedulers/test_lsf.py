"""The lsf scheduler against a fake transport, with outputs in LSF 10.1's documented formats (data/lsf/)."""

from __future__ import annotations

import pytest

from plait.schedulers import JobInfo, JobResources, JobState, JobTemplate, SchedulerError
from plait.schedulers.errors import SchedulerRefusedError, SchedulerUnavailableError
from plait.schedulers.lsf import LsfScheduler, parse_bjobs

from .conftest import FakeTransport, read_fixture

IDS = [str(n) for n in range(3001, 3011)]


def header_of(template: JobTemplate) -> list[str]:
    return [
        line for line in LsfScheduler().get_submit_script(template).splitlines() if line.startswith("#BSUB")
    ]


def test_header_maps_the_resources():
    template = JobTemplate(
        job_name="relax (Si)",
        resources=JobResources(num_machines=2, num_mpiprocs_per_machine=4, num_cores_per_mpiproc=2),
        max_wallclock_seconds=3601,
        queue_name="normal",
        account="proj42",
        max_memory_kb=2049,
    )
    assert header_of(template) == [
        "#BSUB -J relax__Si_",
        "#BSUB -rn",
        "#BSUB -o _scheduler-stdout.txt",
        "#BSUB -e _scheduler-stderr.txt",
        "#BSUB -q normal",
        "#BSUB -P proj42",
        "#BSUB -n 16",
        '#BSUB -R "span[ptile=8]"',
        "#BSUB -W 61",
        "#BSUB -M 3MB",
    ]
    assert "#BSUB -n 3" in header_of(JobTemplate(resources=JobResources(num_machines=3)))


def test_header_refuses_qos_and_unsafe_file_names():
    with pytest.raises(ValueError, match="qos"):
        header_of(JobTemplate(qos="high"))
    with pytest.raises(ValueError, match="scheduler_stdout"):
        header_of(JobTemplate(scheduler_stdout="out put.txt"))


def test_bjobs_states_and_details():
    jobs = parse_bjobs(read_fixture("lsf/bjobs_mixed.stdout"))
    states = {job: (info.state, info.failure) for job, info in jobs.items()}
    assert states == {
        "3001": (JobState.RUNNING, None),
        "3002": (JobState.QUEUED, None),
        "3003": (JobState.DONE, None),
        "3004": (JobState.FAILED, "failed"),
        "3005": (JobState.FAILED, "walltime"),
        "3006": (JobState.FAILED, "cancelled"),
        "3007": (JobState.FAILED, "out_of_memory"),
        "3008": (JobState.QUEUED, None),
        "3009": (JobState.RUNNING, None),
    }
    running = jobs["3001"]
    assert (running.wallclock_seconds, running.num_machines, running.queue) == (754, 2, "normal")
    assert jobs["3004"].exit_code == 3
    assert jobs["3002"].reason == "Not enough job slot(s): 2 hosts;"
    assert jobs["3008"].reason.endswith("|with a bar"), "a | in the pending reason stays in the reason"


async def test_query_is_one_bjobs_and_a_forgotten_job_is_done(fake: FakeTransport):
    fake.on(
        "bjobs ",
        255,
        stdout=read_fixture("lsf/bjobs_mixed.stdout"),
        stderr=read_fixture("lsf/bjobs_mixed.stderr"),
    )
    answers = await LsfScheduler().query(fake, IDS)
    assert len(fake.calls) == 1
    assert fake.commands[0].startswith("bjobs -noheader -o 'jobid stat exit_code")
    assert answers["3010"] == JobInfo.vanished("3010")
    assert answers["3005"].failure == "walltime"


async def test_query_failures_are_classified(fake: FakeTransport):
    fake.on("bjobs ", 255, stderr="LSF is down. Please wait ...\n")
    with pytest.raises(SchedulerUnavailableError):
        await LsfScheduler().query(fake, IDS[:2])
    garbled = FakeTransport().on("bjobs ", stdout="3001 RUN normal\n")
    with pytest.raises(SchedulerError, match="cannot read bjobs line"):
        await LsfScheduler().query(garbled, IDS[:1])


async def test_submit_reads_the_id_and_refusals_are_not_retried(fake: FakeTransport):
    fake.on("bsub ", stdout="Job <3001> is submitted to default queue <normal>.\n")
    assert await LsfScheduler().submit(fake, "/scratch/job", "job.sh") == "3001"
    assert fake.commands == ["bsub < job.sh"]
    refused = FakeTransport().on("bsub ", 255, stderr="Too many processors requested. Job not submitted.\n")
    with pytest.raises(SchedulerRefusedError) as caught:
        await LsfScheduler().submit(refused, "/scratch/job", "job.sh")
    assert caught.value.retryable is False


async def test_kill(fake: FakeTransport):
    fake.on("bkill ", 255, stderr="Job <3004>: No matching job found\n")
    await LsfScheduler().kill(fake, "3004")
    denied = FakeTransport().on("bkill ", 255, stderr="Job <3004>: User permission denied\n")
    with pytest.raises(SchedulerRefusedError):
        await LsfScheduler().kill(denied, "3004")
