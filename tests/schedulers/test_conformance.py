"""The built-in schedulers pass the plugin kit's conformance mixin (plait.schedulers.testing).

Each class fills in what its tools print, in their documented formats: the SLURM answers are those
captured in data/slurm/; the PBS, LSF and Grid Engine ones follow data/pbs/, data/lsf/ and data/sge/.
test_conformance_broken.py shows that the mixin fails plugins with the mistakes it is there to catch.
"""

from __future__ import annotations

from collections.abc import Sequence

from plait.schedulers.direct import DirectScheduler
from plait.schedulers.lsf import LsfScheduler
from plait.schedulers.pbs import PbsScheduler
from plait.schedulers.sge import SgeScheduler
from plait.schedulers.slurm import SlurmScheduler
from plait.schedulers.testing import SchedulerConformance
from plait.transports.contract import CommandResult


class DirectConformance(SchedulerConformance):
    scheduler_class = DirectScheduler
    job_ids = ("4242", "4243", "4244")
    submit_output = CommandResult(0, "4242\n", "")
    submitted_job_id = "4242"
    refused_submit_output = CommandResult(2, "", "no such job script: ./job.sh\n")
    kill_gone_output = CommandResult(1, "", "bash: line 1: kill: (-4243) - No such process\n")
    expected_header_lines = ("# MPI processes: 2", "# wall time: 3600 s, enforced with timeout")

    def query_output(self, listed: Sequence[str], missing: Sequence[str]) -> CommandResult:
        # what the /proc reader prints: "pid pgid stat" for each live process leading its group
        return CommandResult(0, "".join(f"{pid} {pid} S\n" for pid in listed), "")


class TestDirectConformance(DirectConformance):
    pass


class SlurmConformance(SchedulerConformance):
    scheduler_class = SlurmScheduler
    job_ids = ("17", "18", "19")
    submit_output = CommandResult(0, "17\n", "")
    submitted_job_id = "17"
    refused_submit_output = CommandResult(
        1,
        "",
        "sbatch: error: invalid partition specified: conformq\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
    )
    kill_gone_output = CommandResult(
        1, "", "scancel: error: Kill job error on job id 18: Invalid job id specified\n"
    )
    expected_header_lines = (
        "#SBATCH --partition=conformq",
        "#SBATCH --account=conformacct",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --time=01:00:00",
    )

    def query_output(self, listed: Sequence[str], missing: Sequence[str]) -> CommandResult:
        if not listed and len(missing) == 1:  # squeue refuses a single unknown id (squeue_one_unknown)
            return CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return CommandResult(0, "".join(f"{job}|RUNNING|0:05|debug|1|vm|None\n" for job in listed), "")


class TestSlurmConformance(SlurmConformance):
    pass


def _qstat_block(job_id: str) -> str:
    return (
        f"Job Id: {job_id}\n"
        "    Job_Name = conformance\n"
        "    resources_used.walltime = 00:12:34\n"
        "    job_state = R\n"
        "    queue = workq\n"
        "    exec_host = node017/0*2\n"
        "    Resource_List.nodect = 1\n"
        "\n"
    )


class PbsConformance(SchedulerConformance):
    scheduler_class = PbsScheduler
    job_ids = ("1001.pbs01", "1002.pbs01", "1003.pbs01")
    submit_output = CommandResult(0, "1001.pbs01\n", "")
    submitted_job_id = "1001.pbs01"
    refused_submit_output = CommandResult(170, "", "qsub: Unknown queue\n")
    kill_gone_output = CommandResult(153, "", "qdel: Unknown Job Id 1002.pbs01\n")
    script_environment = {"PBS_O_WORKDIR": "{workdir}"}
    expected_header_lines = (
        "#PBS -q conformq",
        "#PBS -A conformacct",
        "#PBS -l select=1:ncpus=2:mpiprocs=2",
        "#PBS -l walltime=01:00:00",
    )
    unsupported_template = {"qos": "high"}

    def query_output(self, listed: Sequence[str], missing: Sequence[str]) -> CommandResult:
        stderr = "".join(f"qstat: Unknown Job Id {job}\n" for job in missing)
        return CommandResult(153 if missing else 0, "".join(map(_qstat_block, listed)), stderr)


class TestPbsConformance(PbsConformance):
    pass


class TestTorqueConformance(PbsConformance):
    scheduler_options = {"flavour": "torque"}
    expected_header_lines = ("#PBS -q conformq", "#PBS -l nodes=1:ppn=2", "#PBS -l walltime=01:00:00")


class LsfConformance(SchedulerConformance):
    scheduler_class = LsfScheduler
    job_ids = ("3001", "3002", "3003")
    submit_output = CommandResult(0, "Job <3001> is submitted to queue <normal>.\n", "")
    submitted_job_id = "3001"
    refused_submit_output = CommandResult(255, "", "conformq: No such queue. Job not submitted.\n")
    kill_gone_output = CommandResult(255, "", "Job <3002>: Job has already finished\n")
    expected_header_lines = (
        "#BSUB -q conformq",
        "#BSUB -P conformacct",
        "#BSUB -n 2",
        '#BSUB -R "span[ptile=2]"',
        "#BSUB -W 60",
    )
    unsupported_template = {"qos": "high"}

    def query_output(self, listed: Sequence[str], missing: Sequence[str]) -> CommandResult:
        stdout = "".join(f"{job}|RUN|-|normal|12 second(s)|2*node017|-|-\n" for job in listed)
        stderr = "".join(f"Job <{job}> is not found\n" for job in missing)
        return CommandResult(255 if missing else 0, stdout, stderr)


class TestLsfConformance(LsfConformance):
    pass


def sge_xml(running: Sequence[str] = (), pending: Sequence[str] = ()) -> str:
    def entry(job: str, state: str) -> str:
        return (
            f'    <job_list state="{"running" if state == "r" else "pending"}">\n'
            f"      <JB_job_number>{job}</JB_job_number>\n"
            "      <JB_name>conformance</JB_name>\n"
            f"      <state>{state}</state>\n"
            f"      <queue_name>{'all.q@node017' if state == 'r' else ''}</queue_name>\n"
            "      <slots>2</slots>\n"
            "    </job_list>\n"
        )

    return (
        "<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n"
        + "".join(entry(job, "r") for job in running)
        + "  </queue_info>\n  <job_info>\n"
        + "".join(entry(job, "qw") for job in pending)
        + "  </job_info>\n</job_info>\n"
    )


class SgeConformance(SchedulerConformance):
    scheduler_class = SgeScheduler
    scheduler_options = {"parallel_environment": "mpi"}
    job_ids = ("501", "502", "503")
    submit_output = CommandResult(0, "501\n", "")
    submitted_job_id = "501"
    refused_submit_output = CommandResult(
        1, "", 'Unable to run job: Job was rejected because job requests unknown queue "conformq".\n'
    )
    kill_gone_output = CommandResult(1, "", 'denied: job "502" does not exist\n')
    expected_header_lines = (
        "#$ -cwd",
        "#$ -q conformq",
        "#$ -A conformacct",
        "#$ -pe mpi 2",
        "#$ -l h_rt=01:00:00",
    )
    unsupported_template = {"qos": "high"}

    def query_output(self, listed: Sequence[str], missing: Sequence[str]) -> CommandResult:
        # qstat lists all the user's jobs: a few of them running, one more pending that nobody asked about
        return CommandResult(0, sge_xml(running=listed, pending=["999"]), "")


class TestSgeConformance(SgeConformance):
    pass
