"""The sge scheduler against a fake transport; ``qstat -xml`` output in Grid Engine's format (data/sge/)."""

from __future__ import annotations

import pytest

from plait.schedulers import InvalidJobOptionError, JobInfo, JobResources, JobState, JobTemplate
from plait.schedulers.errors import SchedulerOutputError, SchedulerRefusedError, SchedulerUnavailableError
from plait.schedulers.sge import SgeScheduler, parse_qstat_xml

from .conftest import FakeTransport, read_fixture


def header_of(template: JobTemplate, **options) -> list[str]:
    script = SgeScheduler(**options).get_submit_script(template)
    return [line for line in script.splitlines() if line.startswith("#$")]


def test_header_with_a_parallel_environment():
    template = JobTemplate(
        job_name="relax (Si)",
        resources=JobResources(num_machines=2, num_mpiprocs_per_machine=4, num_cores_per_mpiproc=2),
        max_wallclock_seconds=100 * 3600 + 61,
        queue_name="all.q",
        account="proj42",
        max_memory_kb=2048,
    )
    assert header_of(template, parallel_environment="mpi") == [
        "#$ -S /bin/bash",
        "#$ -cwd",
        "#$ -r n",
        "#$ -N relax__Si_",
        "#$ -o _scheduler-stdout.txt",
        "#$ -e _scheduler-stderr.txt",
        "#$ -q all.q",
        "#$ -A proj42",
        "#$ -pe mpi 16",
        "#$ -l h_rt=100:01:01",
        "#$ -l h_vmem=2048K",
    ]
    assert not any("-pe" in line for line in header_of(JobTemplate()))


def test_more_than_one_slot_needs_the_parallel_environment_option():
    with pytest.raises(ValueError, match="parallel_environment"):
        header_of(JobTemplate(resources=JobResources(num_machines=1, num_mpiprocs_per_machine=4)))
    with pytest.raises(InvalidJobOptionError, match=r"resources.*parallel_environment"):
        SgeScheduler().validate_job_options({"resources": {"num_machines": 2}})
    with pytest.raises(ValueError, match="parallel_environment"):
        SgeScheduler(parallel_environment="mpi; rm")
    with pytest.raises(ValueError, match="qos"):
        header_of(JobTemplate(qos="high"))


def test_qstat_xml_states():
    jobs = parse_qstat_xml(read_fixture("sge/qstat_xml.stdout"))
    assert {job: (info.state, info.raw_state) for job, info in jobs.items()} == {
        "501": (JobState.RUNNING, "r"),
        "502": (JobState.RUNNING, "S"),
        "503": (JobState.QUEUED, "qw"),
        "504": (JobState.FAILED, "Eqw"),
        "505": (JobState.QUEUED, "hqw"),
    }
    assert (jobs["501"].queue, jobs["501"].node_list) == ("all.q", "node017.cluster")
    assert jobs["504"].failure == "failed" and "error state" in jobs["504"].reason


def test_qstat_xml_refuses_entities_and_garbage():
    with pytest.raises(SchedulerOutputError, match="DOCTYPE"):
        parse_qstat_xml('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><job_info/>')
    with pytest.raises(SchedulerOutputError):
        parse_qstat_xml("error: something is not xml")


async def test_query_is_one_qstat_for_all_and_unlisted_jobs_are_done(fake: FakeTransport):
    fake.on("qstat ", stdout=read_fixture("sge/qstat_xml.stdout"))
    answers = await SgeScheduler().query(fake, ["501", "503", "600"])
    assert fake.commands == ['qstat -xml -u "$USER"']
    assert answers["600"] == JobInfo.vanished("600")
    assert answers["503"].state is JobState.QUEUED


async def test_errors_are_classified(fake: FakeTransport):
    fake.on(
        "qstat ",
        1,
        stderr="error: commlib error: got select error (Connection refused)\n"
        'unable to contact qmaster using port 6444 on host "head"\n',
    )
    with pytest.raises(SchedulerUnavailableError):
        await SgeScheduler().query(fake, ["501"])
    refused = FakeTransport().on("qsub ", 1, stderr='Unable to run job: unknown resource "gpu".\nExiting.\n')
    with pytest.raises(SchedulerRefusedError):
        await SgeScheduler().submit(refused, "/scratch/job", "job.sh")


async def test_submit_and_kill(fake: FakeTransport):
    fake.on("qsub ", stdout="501\n").on("qdel ", 1, stderr='denied: job "501" does not exist\n')
    assert await SgeScheduler().submit(fake, "/scratch/job", "job.sh") == "501"
    await SgeScheduler().kill(fake, "501")
    assert fake.commands == ["qsub -terse job.sh", "qdel 501"]
    denied = FakeTransport().on(
        "qdel ", 1, stderr='alice - you do not have the necessary privileges to delete job "7"\n'
    )
    with pytest.raises(SchedulerRefusedError):
        await SgeScheduler().kill(denied, "7")
