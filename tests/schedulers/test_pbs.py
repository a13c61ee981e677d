"""The pbs scheduler against a fake transport.

The qstat outputs in data/pbs/ are reconstructed from the documented ``qstat -f`` format (there is no
PBS server here); see data/pbs/README.md.
"""

from __future__ import annotations

import pytest

from plait.schedulers import JobResources, JobState, JobTemplate, SchedulerError
from plait.schedulers.pbs import PbsScheduler, parse_qstat_full

from .conftest import FakeTransport, read_fixture

PRO_IDS = [f"{n}.pbs01" for n in range(1001, 1011)]
TORQUE_IDS = [f"{n}.torque-head.cluster.example" for n in range(2001, 2005)]


# -- header ---------------------------------------------------------------------------------------------
def header_of(template: JobTemplate, **options) -> list[str]:
    script = PbsScheduler(**options).get_submit_script(template)
    return [line for line in script.splitlines() if line.startswith("#PBS")]


def test_pro_header():
    template = JobTemplate(
        job_name="1st relax (Si)",
        resources=JobResources(num_machines=2, num_mpiprocs_per_machine=4, num_cores_per_mpiproc=2),
        max_wallclock_seconds=100 * 3600 + 61,
        queue_name="workq",
        account="proj42",
        max_memory_kb=2048,
    )
    assert header_of(template) == [
        "#PBS -N j1st_relax__Si_",
        "#PBS -r n",
        "#PBS -o _scheduler-stdout.txt",
        "#PBS -e _scheduler-stderr.txt",
        "#PBS -q workq",
        "#PBS -A proj42",
        "#PBS -l select=2:ncpus=8:mpiprocs=4:ompthreads=2",
        "#PBS -l walltime=100:01:01",
        "#PBS -l mem=2048kb",
    ]


def test_torque_header_and_short_names():
    template = JobTemplate(
        job_name="a-very-long-job-name-indeed",
        resources=JobResources(num_machines=3, tot_num_mpiprocs=12),
    )
    lines = header_of(template, flavour="torque")
    assert lines[0] == "#PBS -N a-very-long-job"
    assert "#PBS -l nodes=3:ppn=4" in lines
    assert "#PBS -l select=1" in header_of(JobTemplate())


def test_script_changes_to_the_submission_folder_first():
    script = PbsScheduler().get_submit_script(JobTemplate(prepend_text="echo first-user-line"))
    assert script.index('cd "$PBS_O_WORKDIR" || exit 1') < script.index("echo first-user-line")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scheduler_stdout": "out put.txt"}, "scheduler_stdout"),
        ({"scheduler_stderr": "err'.txt"}, "scheduler_stderr"),
        ({"qos": "high"}, "qos"),
        ({"queue_name": "work q"}, "queue_name"),
        ({"account": "a;b"}, "account"),
    ],
)
def test_header_refuses_what_pbs_cannot_carry(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PbsScheduler().get_submit_script(JobTemplate(**kwargs))


# -- parsing ------------------------------------------------------------------------------------------------
def test_parse_joins_tab_continuation_lines():
    blocks = parse_qstat_full(read_fixture("pbs/qstat_f_x_pro.stdout"))
    assert list(blocks) == PRO_IDS[:-1]
    running = blocks["1001.pbs01"]
    assert running["Output_Path"].endswith(":/scratch/alice/plait/ab/cd/_scheduler-stdout.txt")
    assert running["Error_Path"].endswith("/_scheduler-stderr.txt")
    assert "PBS_O_WORKDIR=/scratch/alice/plait/ab/cd," in running["Variable_List"]
    assert running["Variable_List"].endswith("PBS_O_HOST=login01.cluster.example")
    assert running["comment"] == "Job run at Mon Nov 23 at 09:58 on (node017:ncpus=4)+(node018:ncpus=4)"
    assert blocks["1002.pbs01"]["comment"].endswith("(R: 64 A: 16 T: 64)")


def test_parse_tolerates_space_continuations_and_noise():
    text = "garbage before\nJob Id: 5.s\n    job_state = R\n    comment = a long\n        tail\n\n"
    assert parse_qstat_full(text) == {"5.s": {"job_state": "R", "comment": "a longtail"}}


async def test_query_pro_history_in_one_call(fake: FakeTransport):
    fake.on(
        "qstat ",
        returncode=153,
        stdout=read_fixture("pbs/qstat_f_x_pro.stdout"),
        stderr=read_fixture("pbs/qstat_f_x_pro.stderr"),
    )
    answers = await PbsScheduler().query(fake, PRO_IDS)
    assert fake.commands == ["qstat -f -x " + " ".join(PRO_IDS)]
    assert list(answers) == PRO_IDS
    summary = {
        job_id.split(".")[0]: (i.state, i.raw_state, i.failure, i.exit_code) for job_id, i in answers.items()
    }
    assert summary == {
        "1001": (JobState.RUNNING, "R", None, None),
        "1002": (JobState.QUEUED, "Q", None, None),
        "1003": (JobState.QUEUED, "H", None, None),
        "1004": (JobState.DONE, "F", None, 0),
        "1005": (JobState.FAILED, "F", "failed", 3),
        "1006": (JobState.FAILED, "F", "walltime", -29),
        "1007": (JobState.FAILED, "F", "cancelled", 271),
        "1008": (JobState.DONE, "F", None, None),
        "1009": (JobState.FAILED, "F", "out_of_memory", -27),
        "1010": (JobState.DONE, "", None, None),
    }
    running = answers["1001.pbs01"]
    assert running.wallclock_seconds == 754 and running.queue == "workq" and running.num_machines == 2
    assert running.node_list == "node017/0*4+node018/0*4"
    assert answers["1002.pbs01"].reason.startswith("Not Running: Insufficient amount of resource")
    assert answers["1010.pbs01"].reason == "not listed by the scheduler"


async def test_query_torque_matches_short_ids_and_reads_lowercase_exit_status(fake: FakeTransport):
    fake.on(
        "qstat ",
        returncode=153,
        stdout=read_fixture("pbs/qstat_f_torque.stdout"),
        stderr=read_fixture("pbs/qstat_f_torque.stderr"),
    )
    # the engine stored what qsub printed; qstat may print a longer server name
    asked = ["2001.torque-head", "2002.torque-head.cluster.example", "2003", "2004.torque-head"]
    answers = await PbsScheduler(flavour="torque").query(fake, asked)
    assert fake.commands == ["qstat -f " + " ".join(asked)]
    assert answers["2001.torque-head"].state is JobState.RUNNING
    walltime = answers["2002.torque-head.cluster.example"]
    assert (walltime.state, walltime.failure, walltime.exit_code) == (JobState.FAILED, "walltime", 271)
    assert (answers["2003"].state, answers["2003"].exit_code) == (JobState.DONE, 0)
    assert answers["2004.torque-head"].state is JobState.DONE


@pytest.mark.parametrize(
    "stderr",
    [
        "qstat: Unknown Job Id 7.s\n",
        "qstat: 7.s Job has finished, use -x or -H to obtain historical job information\n",
    ],
)
async def test_query_all_unknown_is_done(fake: FakeTransport, stderr):
    fake.on("qstat ", returncode=35, stderr=stderr)
    answers = await PbsScheduler().query(fake, ["7.s"])
    assert answers["7.s"].state is JobState.DONE


async def test_query_other_failures_raise(fake: FakeTransport):
    fake.on(
        "qstat ",
        returncode=1,
        stdout=read_fixture("pbs/qstat_f_x_pro.stdout"),
        stderr="qstat: Unknown Job Id 7.s\nqstat: cannot connect to server pbs01 (errno=111)\n",
    )
    with pytest.raises(SchedulerError, match="cannot connect to server"):
        await PbsScheduler().query(fake, ["7.s"])


async def test_query_checks_ids_and_skips_empty(fake: FakeTransport):
    assert await PbsScheduler().query(fake, []) == {}
    with pytest.raises(ValueError, match="not a PBS job id"):
        await PbsScheduler().query(fake, ["7.s; rm -rf ~"])
    assert fake.calls == []


# -- submit and kill ---------------------------------------------------------------------------------------
async def test_submit(fake: FakeTransport):
    fake.on("qsub ", stdout="1234.pbs01\n")
    assert await PbsScheduler().submit(fake, "/w d/'x'", "job 'a'.sh") == "1234.pbs01"
    assert fake.calls[0].command == "qsub 'job '\"'\"'a'\"'\"'.sh'"
    assert fake.calls[0].workdir == "/w d/'x'"


async def test_submit_refused(fake: FakeTransport):
    fake.on("qsub ", returncode=1, stderr="qsub: Unknown queue\n")
    with pytest.raises(SchedulerError, match="Unknown queue") as info:
        await PbsScheduler().submit(fake, "/w", "job.sh")
    assert info.value.returncode == 1 and info.value.command == "qsub job.sh"
    garbled = FakeTransport().on("qsub ", stdout="something odd\n")
    with pytest.raises(SchedulerError, match="no job id"):
        await PbsScheduler().submit(garbled, "/w", "job.sh")


@pytest.mark.parametrize(
    "stderr",
    [
        "qdel: Unknown Job Id 7.s\n",
        "qdel: Job has finished 7.s\n",
        "qdel: Invalid state for job - COMPLETE 7.s\n",
    ],
)
async def test_kill_of_gone_jobs(fake: FakeTransport, stderr):
    fake.on("qdel ", returncode=35, stderr=stderr)
    await PbsScheduler().kill(fake, "7.s")
    assert fake.commands == ["qdel 7.s"]


async def test_kill_refused(fake: FakeTransport):
    fake.on("qdel ", returncode=1, stderr="qdel: Unauthorized Request  7.s\n")
    with pytest.raises(SchedulerError, match="Unauthorized"):
        await PbsScheduler().kill(fake, "7.s")
