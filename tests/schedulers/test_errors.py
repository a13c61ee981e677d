"""``SchedulerError.retryable``: what the engine reads to retry a scheduler command or pause at once.

Each built-in plugin classifies the failures whose cause it knows (SLURM and PBS messages as their
tools print them; the sbatch refusal is the real capture in data/slurm/); an unclassified failure
keeps the tree's default.
"""

from __future__ import annotations

import pickle

import pytest

from plait.schedulers import (
    SchedulerError,
    SchedulerOutputError,
    SchedulerRefusedError,
    SchedulerUnavailableError,
)
from plait.schedulers.direct import DirectScheduler
from plait.schedulers.pbs import PbsScheduler
from plait.schedulers.slurm import SlurmScheduler, parse_squeue
from plait.transports.errors import TransportTimeoutError

from .conftest import FakeTransport
from .test_slurm import captured


# -- the tree ------------------------------------------------------------------------------------------
def test_each_class_has_a_default_and_an_instance_may_override_it():
    fields = {"command": "sbatch x", "returncode": 1}
    assert SchedulerError("unclassified", **fields).retryable is True
    assert SchedulerUnavailableError("down", **fields).retryable is True
    assert SchedulerRefusedError("no", **fields).retryable is False
    assert SchedulerOutputError("garbled", **fields).retryable is False
    assert SchedulerError("a plugin knows better", retryable=False, **fields).retryable is False
    assert SchedulerRefusedError("but try again", retryable=True, **fields).retryable is True
    for cls in (SchedulerUnavailableError, SchedulerRefusedError, SchedulerOutputError):
        assert issubclass(cls, SchedulerError)


@pytest.mark.parametrize(
    "error",
    [
        SchedulerError("x", command="c", returncode=1, stderr="e", stdout="o"),
        SchedulerError("x", command="c", returncode=1, retryable=False),
        SchedulerRefusedError("x", command="c", returncode=1, retryable=True),
        SchedulerUnavailableError("x", command="c", returncode=1),
    ],
)
def test_class_and_retryable_survive_pickling(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.retryable is error.retryable
    assert (copy.command, copy.returncode, copy.stderr, copy.stdout, str(copy)) == (
        error.command,
        error.returncode,
        error.stderr,
        error.stdout,
        str(error),
    )


# -- slurm ---------------------------------------------------------------------------------------------
async def test_sbatch_invalid_partition_captured_is_refused_not_retryable(fake: FakeTransport):
    fake.on("sbatch ", *captured("sbatch_refused"))
    with pytest.raises(SchedulerRefusedError) as info:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    assert info.value.retryable is False and "Invalid partition name specified" in str(info.value)


@pytest.mark.parametrize(
    "stderr",
    [
        "sbatch: error: Batch job submission failed: Invalid account or account/partition combination"
        " specified",
        "sbatch: error: Batch job submission failed: Invalid qos specification",
        "sbatch: error: Batch job submission failed: Requested node configuration is not available",
        "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds"
        " some limit)",
        "sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification",
        "sbatch: error: Batch job submission failed: Access/permission denied",
        "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit,"
        " user's size and/or time limits)",
        "sbatch: error: This does not look like a batch script.  The first\n"
        "sbatch: error: line must start with #! followed by the path to an interpreter.",
        "sbatch: error: Batch script contains DOS line breaks (\\r\\n)",
        "sbatch: error: Unable to open file job.sh",
        "sbatch: unrecognized option '--bogus'",
    ],
)
async def test_sbatch_refusals_are_not_retryable(fake: FakeTransport, stderr):
    fake.on("sbatch ", 1, "", stderr + "\n")
    with pytest.raises(SchedulerRefusedError) as info:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    assert info.value.retryable is False and info.value.stderr.strip() == stderr


@pytest.mark.parametrize(
    "stderr",
    [
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
        "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
        "sbatch: error: Batch job submission failed: Resource temporarily unavailable",
        "sbatch: error: Batch job submission failed: Zero Bytes were transmitted or received",
        "sbatch: error: Batch job submission failed: Slurm backup controller in standby mode",
        "sbatch: error: Batch job submission failed: Required partition not available (inactive or drain)",
    ],
)
async def test_sbatch_with_an_unreachable_or_busy_controller_is_retryable(fake: FakeTransport, stderr):
    fake.on("sbatch ", 1, "", stderr + "\n")
    with pytest.raises(SchedulerUnavailableError) as info:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    assert info.value.retryable is True


async def test_squeue_and_scancel_are_classified_too(fake: FakeTransport):
    fake.on("squeue ", 1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
    fake.on("scancel ", 1, "", "scancel: error: Kill job error on job id 17: Access/permission denied\n")
    with pytest.raises(SchedulerUnavailableError) as down:
        await SlurmScheduler().query(fake, ["5"])
    assert down.value.retryable is True
    with pytest.raises(SchedulerRefusedError) as refused:
        await SlurmScheduler().kill(fake, "17")
    assert refused.value.retryable is False


async def test_unreadable_output_and_a_missing_job_id_are_not_retryable(fake: FakeTransport):
    with pytest.raises(SchedulerOutputError) as garbled:
        parse_squeue("7 PENDING\n")
    assert garbled.value.retryable is False
    # the job may well have been submitted: submitting again could run it twice
    fake.on("sbatch ", 0, "Submitted batch job\n", "")
    with pytest.raises(SchedulerOutputError, match="no job id") as no_id:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    assert no_id.value.retryable is False


async def test_an_unclassified_failure_keeps_the_default(fake: FakeTransport):
    fake.on("sbatch ", 1, "", "sbatch: error: something no SLURM printed before\n")
    with pytest.raises(SchedulerError) as info:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    assert type(info.value) is SchedulerError and info.value.retryable is True


async def test_a_missing_scheduler_command_is_not_retryable(fake: FakeTransport):
    fake.on("sbatch ", 127, "", "bash: line 1: sbatch: command not found\n")
    with pytest.raises(SchedulerError, match="command not found") as info:
        await SlurmScheduler().submit(fake, "/w", "job.sh")
    assert info.value.retryable is False


async def test_a_timed_out_command_is_the_transports_retryable_timeout(fake: FakeTransport):
    fake.raising("sbatch ", TransportTimeoutError("slow", host="fake", operation="exec_command_wait"))
    with pytest.raises(TransportTimeoutError) as info:
        await SlurmScheduler(command_timeout=5).submit(fake, "/w", "job.sh")
    assert info.value.retryable is True


# -- pbs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "stderr", "cls"),
    [
        ("qsub ", "qsub: Unknown queue\n", SchedulerRefusedError),
        ("qsub ", "qsub: Job violates queue and/or server resource limits\n", SchedulerRefusedError),
        (
            "qsub ",
            "qsub: Job exceeds queue resource limits MSG=cannot satisfy queue max walltime\n",
            SchedulerRefusedError,
        ),
        ("qsub ", "qsub: Bad UID for job execution\n", SchedulerRefusedError),
        ("qsub ", "qsub: Illegal attribute or resource value Resource_List.select\n", SchedulerRefusedError),
        ("qsub ", "qsub: Unknown resource Resource_List.gpus\n", SchedulerRefusedError),
        ("qsub ", "qsub: cannot connect to server pbs01 (errno=111)\n", SchedulerUnavailableError),
        ("qsub ", "qsub: Maximum number of jobs already in queue\n", SchedulerUnavailableError),
        ("qsub ", "qsub: Queue is not enabled\n", SchedulerUnavailableError),
        ("qstat ", "qstat: cannot connect to server pbs01 (errno=111)\n", SchedulerUnavailableError),
        ("qstat ", "pbs_iff: cannot connect to host\n", SchedulerUnavailableError),
        ("qdel ", "qdel: Unauthorized Request  7.s\n", SchedulerRefusedError),
    ],
)
async def test_pbs_failures_are_classified(fake: FakeTransport, command, stderr, cls):
    fake.on(command, returncode=1, stderr=stderr)
    scheduler = PbsScheduler()
    call = {
        "qsub ": lambda: scheduler.submit(fake, "/w", "job.sh"),
        "qstat ": lambda: scheduler.query(fake, ["7.s"]),
        "qdel ": lambda: scheduler.kill(fake, "7.s"),
    }[command]
    with pytest.raises(cls) as info:
        await call()
    assert info.value.retryable is cls.retryable


# -- direct --------------------------------------------------------------------------------------------
async def test_direct_failures_are_classified(fake: FakeTransport):
    fake.on("if [ ! -f", returncode=2, stderr="no such job script: x.sh\n")
    fake.on("if [ -r /proc/self/stat ]", returncode=127, stderr="bash: ps: command not found\n")
    fake.on("pgid=", returncode=1, stderr="kill: (-555) - Operation not permitted\n")
    with pytest.raises(SchedulerRefusedError):
        await DirectScheduler().submit(fake, "/w", "x.sh")
    with pytest.raises(SchedulerError) as no_ps:
        await DirectScheduler().query(fake, ["7"])
    assert no_ps.value.retryable is False
    with pytest.raises(SchedulerRefusedError):
        await DirectScheduler().kill(fake, "555")
    busy = FakeTransport().on(
        "if [ ! -f", returncode=254, stderr="bash: fork: Resource temporarily unavailable\n"
    )
    with pytest.raises(SchedulerUnavailableError):
        await DirectScheduler().submit(busy, "/w", "x.sh")
    garbled = FakeTransport().on("if [ -r /proc/self/stat ]", stdout="what is this\n")
    with pytest.raises(SchedulerOutputError):
        await DirectScheduler().query(garbled, ["7"])


# -- a plugin of one's own -----------------------------------------------------------------------------
async def test_a_plugin_classifies_with_its_own_patterns_or_explicitly(fake: FakeTransport):
    import re

    from plait.schedulers import Scheduler

    class Lsf(Scheduler):
        plugin_name = "lsf-test"
        unavailable_pattern = re.compile(r"LSF is down")
        refused_pattern = re.compile(r"Bad project name")

        def _header(self, template):
            return []

        async def submit(self, transport, workdir, script_name):
            command = f"bsub < {script_name}"
            result = await self._run(transport, command, workdir=workdir)
            raise self._command_error("bsub refused the job", command, result)

        async def query(self, transport, job_ids):
            raise SchedulerError("never retry this", command="bjobs", returncode=3, retryable=False)

        async def kill(self, transport, job_id):
            return None

    fake.on("bsub ", 255, "", "LSF is down. Please wait ...\n")
    with pytest.raises(SchedulerUnavailableError):
        await Lsf().submit(fake, "/w", "job.sh")
    refused = FakeTransport().on("bsub ", 255, "", "Bad project name. Job not submitted.\n")
    with pytest.raises(SchedulerRefusedError):
        await Lsf().submit(refused, "/w", "job.sh")
    with pytest.raises(SchedulerError) as explicit:
        await Lsf().query(fake, ["1"])
    assert explicit.value.retryable is False
