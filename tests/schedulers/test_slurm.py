"""The slurm scheduler against a fake transport, fed with outputs captured from a real SLURM.

The files under data/slurm/ were captured from slurm-wlm 22.05 started by .ci/start-slurm.sh, with
data/slurm/capture.sh (which records each command line and exit code in data/slurm/commands.tsv).
"""

from __future__ import annotations

import pytest

from plait.schedulers import JobResources, JobState, JobTemplate, SchedulerError
from plait.schedulers.slurm import SQUEUE_FORMAT, SlurmScheduler, parse_squeue
from plait.transports.contract import CommandResult
from plait.transports.errors import TransportTimeoutError

from .conftest import DATA, FakeTransport, read_fixture

SLURM = DATA / "slurm"


def captured(name: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the captured command ``name``."""
    for line in (SLURM / "commands.tsv").read_text().splitlines():
        fields = line.split("\t")
        if fields[0] == name:
            return int(fields[1]), read_fixture(f"slurm/{name}.stdout"), read_fixture(f"slurm/{name}.stderr")
    raise KeyError(name)


def test_fixtures_were_captured_with_the_current_format():
    for line in (SLURM / "commands.tsv").read_text().splitlines():
        if line.startswith("squeue_"):
            assert line.endswith(f"--format={SQUEUE_FORMAT}"), line


# -- header ----------------------------------------------------------------------------------------
def header_of(template: JobTemplate) -> list[str]:
    return [
        line
        for line in SlurmScheduler().get_submit_script(template).splitlines()
        if line.startswith("#SBATCH")
    ]


def test_full_header():
    template = JobTemplate(
        job_name="relax Si (run #2)",
        resources=JobResources(num_machines=2, num_mpiprocs_per_machine=16, num_cores_per_mpiproc=2),
        max_wallclock_seconds=2 * 86400 + 3 * 3600 + 4 * 60 + 5,
        queue_name="debug",
        account="proj-42",
        qos="high",
        max_memory_kb=4 * 1024 * 1024 + 1,
        custom_scheduler_commands="#SBATCH --constraint=gpu",
    )
    assert header_of(template) == [
        "#SBATCH --job-name=relax_Si__run__2_",
        "#SBATCH --no-requeue",
        "#SBATCH --output=_scheduler-stdout.txt",
        "#SBATCH --error=_scheduler-stderr.txt",
        "#SBATCH --partition=debug",
        "#SBATCH --account=proj-42",
        "#SBATCH --qos=high",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=16",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=2-03:04:05",
        "#SBATCH --mem=4097M",
        "#SBATCH --constraint=gpu",
    ]


def test_minimal_header_and_short_time():
    lines = header_of(JobTemplate(job_name="", max_wallclock_seconds=90))
    assert lines == [
        "#SBATCH --job-name=plait-job",
        "#SBATCH --no-requeue",
        "#SBATCH --output=_scheduler-stdout.txt",
        "#SBATCH --error=_scheduler-stderr.txt",
        "#SBATCH --nodes=1",
        "#SBATCH --time=00:01:30",
    ]
    assert len(header_of(JobTemplate(job_name="x" * 500))[0]) == len("#SBATCH --job-name=") + 128


def test_output_names_are_quoted_and_percent_escaped():
    lines = header_of(JobTemplate(scheduler_stdout="out 'a' %j.txt", scheduler_stderr="back\\slash %j"))
    assert "#SBATCH --output='out '\"'\"'a'\"'\"' %%j.txt'" in lines
    assert "#SBATCH --error='back\\slash %j'" in lines  # a backslash turns sbatch's % expansion off


@pytest.mark.parametrize("field", ["queue_name", "account", "qos"])
@pytest.mark.parametrize("value", ["two words", "a'b", "x;rm -rf ~", "a\nb"])
def test_unsafe_header_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SlurmScheduler().get_submit_script(JobTemplate(**{field: value}))


# -- submit ----------------------------------------------------------------------------------------
async def test_submit_reads_the_captured_parsable_output(fake: FakeTransport):
    returncode, stdout, stderr = captured("sbatch_parsable")
    fake.on("sbatch ", returncode, stdout, stderr)
    assert await SlurmScheduler().submit(fake, "/w d/'q'", "job 'x'.sh") == stdout.strip()
    (call,) = fake.calls
    assert call.command == "sbatch --parsable 'job '\"'\"'x'\"'\"'.sh'"
    assert call.workdir == "/w d/'q'"


async def test_submit_with_cluster_suffix_and_warnings(fake: FakeTransport):
    fake.on("sbatch ", 0, "1234;cluster-a\n", "sbatch: warning: something harmless\n")
    assert await SlurmScheduler().submit(fake, "/w", "job.sh") == "1234"


async def test_submit_refused_names_command_and_stderr(fake: FakeTransport):
    returncode, stdout, stderr = captured("sbatch_refused")
    fake.on("sbatch ", returncode, stdout, stderr)
    with pytest.raises(SchedulerError) as info:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    error = info.value
    assert error.returncode == 1 and error.command == "sbatch --parsable job.sh"
    assert "Invalid partition name specified" in error.stderr and "Invalid partition" in str(error)


async def test_submit_without_job_id_is_an_error(fake: FakeTransport):
    fake.on("sbatch ", 0, "Submitted batch job\n", "")
    with pytest.raises(SchedulerError, match="no job id"):
        await SlurmScheduler().submit(fake, "/w", "job.sh")


# -- query -----------------------------------------------------------------------------------------
def test_parse_the_captured_mixed_listing():
    jobs = parse_squeue(captured("squeue_mixed")[1])
    by_state = {(info.raw_state, info.reason): info for info in jobs.values()}
    pending = by_state[("PENDING", "Resources")]
    assert pending.state is JobState.QUEUED and pending.node_list is None and pending.queue == "debug"
    assert by_state[("PENDING", "Dependency")].state is JobState.QUEUED
    assert by_state[("PENDING", "JobHeldUser")].state is JobState.QUEUED
    running = [info for info in jobs.values() if info.raw_state == "RUNNING"]
    assert len(running) == 2
    assert all(info.state is JobState.RUNNING and info.node_list == "vm" for info in running)
    assert {info.wallclock_seconds for info in running} == {6, 3}
    completed = next(info for info in jobs.values() if info.raw_state == "COMPLETED")
    assert (completed.state, completed.failure, completed.num_machines) == (JobState.DONE, None, 1)
    failed = next(info for info in jobs.values() if info.raw_state == "FAILED")
    assert (failed.state, failed.failure, failed.reason) == (JobState.FAILED, "failed", "NonZeroExitCode")
    cancelled = [info for info in jobs.values() if info.raw_state == "CANCELLED"]
    assert len(cancelled) == 2 and all(i.failure == "cancelled" for i in cancelled)


def test_parse_the_captured_timeout():
    jobs = parse_squeue(captured("squeue_after_timeout")[1])
    (timed_out,) = [info for info in jobs.values() if info.raw_state == "TIMEOUT"]
    assert (timed_out.state, timed_out.failure, timed_out.reason) == (
        JobState.FAILED,
        "walltime",
        "TimeLimit",
    )
    assert timed_out.wallclock_seconds == 64


@pytest.mark.parametrize(
    ("raw", "state", "failure"),
    [
        ("PENDING", JobState.QUEUED, None),
        ("CONFIGURING", JobState.QUEUED, None),
        ("REQUEUED", JobState.QUEUED, None),
        ("REQUEUE_HOLD", JobState.QUEUED, None),
        ("RUNNING", JobState.RUNNING, None),
        ("COMPLETING", JobState.RUNNING, None),
        ("SUSPENDED", JobState.RUNNING, None),
        ("STAGE_OUT", JobState.RUNNING, None),
        ("SOME_FUTURE_STATE", JobState.RUNNING, None),
        ("COMPLETED", JobState.DONE, None),
        ("CANCELLED", JobState.FAILED, "cancelled"),
        ("TIMEOUT", JobState.FAILED, "walltime"),
        ("OUT_OF_MEMORY", JobState.FAILED, "out_of_memory"),
        ("NODE_FAIL", JobState.FAILED, "node_failure"),
        ("BOOT_FAIL", JobState.FAILED, "node_failure"),
        ("FAILED", JobState.FAILED, "failed"),
        ("PREEMPTED", JobState.FAILED, "failed"),
        ("DEADLINE", JobState.FAILED, "failed"),
    ],
)
def test_state_mapping(raw, state, failure):
    (info,) = parse_squeue(f"7|{raw}|0:00|debug|1||None\n").values()
    assert (info.state, info.failure, info.raw_state) == (state, failure, raw)


def test_a_bar_in_the_reason_does_not_shift_fields():
    (info,) = parse_squeue("7|PENDING|0:00|debug|1||odd|reason|text\n").values()
    assert info.reason == "odd|reason|text" and info.queue == "debug"


def test_garbled_line_is_an_error():
    with pytest.raises(SchedulerError, match="cannot read squeue line"):
        parse_squeue("7 PENDING\n")


async def test_query_is_one_call_and_lists_every_id(fake: FakeTransport):
    _, stdout, _ = captured("squeue_mixed")
    ids = [line.split("|")[0] for line in stdout.splitlines()] + ["999999"]
    fake.on("squeue ", 0, stdout, "")
    answers = await SlurmScheduler().query(fake, ids)
    assert len(fake.calls) == 1
    assert fake.calls[0].command == (
        f"squeue --noheader --states=all --jobs={','.join(ids)} --format='{SQUEUE_FORMAT}'"
    )
    assert set(answers) == set(ids)
    assert answers["999999"].state is JobState.DONE
    assert answers["999999"].reason == "not listed by the scheduler"


@pytest.mark.parametrize("name", ["squeue_one_unknown", "squeue_all_unknown"])
async def test_query_unknown_ids_are_done(fake: FakeTransport, name):
    returncode, stdout, stderr = captured(name)
    fake.on("squeue ", returncode, stdout, stderr)
    ids = ["999999"] if name == "squeue_one_unknown" else ["999998", "999999"]
    answers = await SlurmScheduler().query(fake, ids)
    assert all(answers[i].state is JobState.DONE and answers[i].raw_state == "" for i in ids)
    assert len(fake.calls) == 1


async def test_query_falls_back_to_one_id_at_a_time_if_a_list_is_refused(fake: FakeTransport):
    # An older SLURM could refuse the whole list for one unknown id: never let that hide a running job.
    refused = CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n")
    fake.answers.append((lambda command: "--jobs=5,6 " in command, refused))
    fake.on("squeue --noheader --states=all --jobs=5 ", 0, "5|RUNNING|0:10|debug|1|vm|None\n", "")
    fake.on(
        "squeue --noheader --states=all --jobs=6 ", 1, "", "slurm_load_jobs error: Invalid job id specified\n"
    )
    answers = await SlurmScheduler().query(fake, ["5", "6"])
    assert answers["5"].state is JobState.RUNNING and answers["6"].state is JobState.DONE


async def test_query_other_failures_raise(fake: FakeTransport):
    fake.on("squeue ", 1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
    with pytest.raises(SchedulerError, match="Unable to contact slurm controller") as info:
        await SlurmScheduler().query(fake, ["5"])
    assert info.value.command.startswith("squeue ")


async def test_query_refuses_malformed_ids_and_skips_empty_lists(fake: FakeTransport):
    with pytest.raises(ValueError, match="not a SLURM job id"):
        await SlurmScheduler().query(fake, ["12,13"])
    assert await SlurmScheduler().query(fake, []) == {}
    assert fake.calls == []


async def test_transport_timeout_propagates_unwrapped(fake: FakeTransport):
    fake.raising("squeue ", TransportTimeoutError("slow", host="fake", operation="exec_command_wait"))
    with pytest.raises(TransportTimeoutError):
        await SlurmScheduler(command_timeout=5).query(fake, ["5"])
    assert fake.calls[0].timeout == 5


# -- kill ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["scancel_unknown", "scancel_finished"])
async def test_kill_of_gone_jobs_captured(fake: FakeTransport, name):
    fake.on("scancel ", *captured(name))
    await SlurmScheduler().kill(fake, "17")
    assert fake.commands == ["scancel 17"]


@pytest.mark.parametrize(
    "stderr",
    [
        "scancel: error: Kill job error on job id 17: Invalid job id specified\n",
        "scancel: error: Kill job error on job id 17: Job/step already completing or completed\n",
    ],
)
async def test_kill_of_gone_jobs_on_other_slurm_versions(fake: FakeTransport, stderr):
    fake.on("scancel ", 1, "", stderr)
    await SlurmScheduler().kill(fake, "17")


async def test_kill_refused(fake: FakeTransport):
    fake.on("scancel ", 1, "", "scancel: error: Kill job error on job id 17: Access/permission denied\n")
    with pytest.raises(SchedulerError, match="permission denied"):
        await SlurmScheduler().kill(fake, "17")
