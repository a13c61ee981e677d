"""The ``slurm`` scheduler: ``sbatch``, ``squeue``, ``scancel``.

Script header: ``#SBATCH`` directives.  ``sbatch`` reads them with shell-like
quoting, so file names are quoted with :func:`shlex.quote` there too; a ``%``
in a file name is doubled because ``--output``/``--error`` expand ``%j`` and
friends (unless the name holds a backslash, which turns that expansion off).

Polling: one ``squeue --noheader --states=all --jobs=<ids> --format=...`` for
all jobs, fields separated by ``|`` with the free-text reason last, so that a
``|`` inside a reason cannot shift the other fields.  SLURM keeps a finished
job visible for ``MinJobAge`` seconds (300 by default); after that the job is
no longer listed and is reported ``DONE``, and the engine tells success from
failure by the exit-code file.

Errors: a failed ``sbatch``/``squeue``/``scancel`` is classified by what it
printed (:meth:`Scheduler._command_error`): an unreachable, timing-out or busy
controller, or an inactive partition, is retryable
(:class:`~plait.schedulers.errors.SchedulerUnavailableError`); an invalid
partition, account, qos or resource request, a violated limit or a rejected
script is not (:class:`~plait.schedulers.errors.SchedulerRefusedError`).
"Job violates accounting/QOS policy" is a refusal although it also covers the
submit limit, which jobs leaving the queue lift: the message does not tell
which limit it is, and the process pauses with it for the user to see.

Known limits: job arrays and jobs sent to another cluster with ``-M`` are not
followed (the id returned is the part before ``;`` of ``sbatch --parsable``).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from plait.schedulers._common import check_header_value, parse_duration, sanitize_job_name
from plait.schedulers.contract import JobInfo, JobState, JobTemplate, Scheduler
from plait.schedulers.errors import SchedulerOutputError
from plait.transports.relative_paths import as_operand

if TYPE_CHECKING:
    from plait.transports.contract import Transport

__all__ = ["SQUEUE_FORMAT", "SlurmScheduler"]

#: The ``squeue --format`` string: id, state, time used, partition, nodes, node list, reason (last).
SQUEUE_FORMAT = "%i|%T|%M|%P|%D|%N|%r"
_SQUEUE_FIELDS = SQUEUE_FORMAT.count("|") + 1

_JOB_ID = re.compile(r"\d+(?:_\d+)?\Z")

#: SLURM's extended states (``%T``) mapped to plait's; anything else is treated as RUNNING.
_QUEUED = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
_FAILURES = {
    "CANCELLED": "cancelled",
    "TIMEOUT": "walltime",
    "OUT_OF_MEMORY": "out_of_memory",
    "NODE_FAIL": "node_failure",
    "BOOT_FAIL": "node_failure",
    "FAILED": "failed",
    "PREEMPTED": "failed",
    "DEADLINE": "failed",
    "REVOKED": "failed",
}

# What squeue/scancel print for a job the controller does not know (any more).
_UNKNOWN_JOB = "Invalid job id specified"
_ALREADY_FINISHED = "already completing or completed"

#: The controller cannot take the request now (slurm_errno.c strings, and sbatch's own retry notice):
#: the same command may succeed later.
_UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Zero Bytes were transmitted or received"
    r"|Communication connection failure|temporarily unable to accept job|Resource temporarily unavailable"
    r"|backup controller in standby mode|Required partition not available|Connection refused"
    r"|Unable to create job record, try again",
    re.IGNORECASE,
)

#: The controller (or sbatch itself) refuses the job: invalid partition, account, qos, resources,
#: options, a limit it violates, a script it rejects, a permission it denies.  Asking again is futile.
_REFUSED = re.compile(
    r"\binvalid\b|not available|permission denied|not permitted|violates|exceeds"
    r"|More processors requested than permitted|does not look like a batch script|DOS line breaks"
    r"|Batch script is empty|Unable to open file|unrecognized option|unrecognised option"
    r"|option requires an argument",
    re.IGNORECASE,
)


def _format_time(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _output_file(name: str) -> str:
    """A file name for ``--output``/``--error``: ``%`` escaped, then shell-quoted (sbatch unquotes)."""
    if "\\" not in name:  # a backslash disables sbatch's %-expansion, and with it the %% escape
        name = name.replace("%", "%%")
    return shlex.quote(name)


def _state_of(raw_state: str) -> tuple[JobState, str | None]:
    if raw_state in _QUEUED:
        return JobState.QUEUED, None
    if raw_state == "COMPLETED":
        return JobState.DONE, None
    if raw_state in _FAILURES:
        return JobState.FAILED, _FAILURES[raw_state]
    # RUNNING-like and states a future SLURM may add: keep polling rather than declare it over.
    return JobState.RUNNING, None


def parse_squeue(stdout: str, *, command: str = "squeue") -> dict[str, JobInfo]:
    """The jobs listed by ``squeue --noheader --format=SQUEUE_FORMAT``, by job id.

    Raises:
        SchedulerOutputError: a line does not have the expected fields (not retryable).
    """
    jobs: dict[str, JobInfo] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", _SQUEUE_FIELDS - 1)
        if len(parts) != _SQUEUE_FIELDS or not parts[0].strip() or not parts[1].strip():
            raise SchedulerOutputError(
                f"cannot read squeue line {line!r} (expected {SQUEUE_FORMAT!r})",
                command=command,
                returncode=0,
                stdout=stdout,
            )
        job_id, raw_state, used, partition, nodes, node_list, reason = (p.strip() for p in parts)
        state, failure = _state_of(raw_state)
        jobs[job_id] = JobInfo(
            job_id=job_id,
            state=state,
            raw_state=raw_state,
            reason=reason or None,
            failure=failure,
            wallclock_seconds=parse_duration(used),
            queue=partition or None,
            num_machines=int(nodes) if nodes.isdigit() else None,
            node_list=node_list or None,
        )
    return jobs


class SlurmScheduler(Scheduler):
    """SLURM through its command-line tools (``sbatch``, ``squeue``, ``scancel``).

    Header: job name (letters, digits, ``_.-``; at most 128 characters),
    ``--no-requeue`` (a requeued job would run its codes twice in the same
    folder), output and error files, partition, account, qos, nodes,
    ntasks-per-node, cpus-per-task, time (``D-HH:MM:SS`` or ``HH:MM:SS``) and
    memory per node (``--mem`` in MiB, rounded up).
    """

    plugin_name = "slurm"
    probe_job_id = "999999999"
    unavailable_pattern = _UNAVAILABLE
    refused_pattern = _REFUSED

    def _header(self, template: JobTemplate) -> list[str]:
        res = template.resources
        lines = [
            f"#SBATCH --job-name={sanitize_job_name(template.job_name, max_length=128)}",
            "#SBATCH --no-requeue",
            f"#SBATCH --output={_output_file(template.scheduler_stdout)}",
            f"#SBATCH --error={_output_file(template.scheduler_stderr)}",
        ]
        if template.queue_name is not None:
            lines.append(f"#SBATCH --partition={check_header_value('queue_name', template.queue_name)}")
        if template.account is not None:
            lines.append(f"#SBATCH --account={check_header_value('account', template.account)}")
        if template.qos is not None:
            lines.append(f"#SBATCH --qos={check_header_value('qos', template.qos)}")
        lines.append(f"#SBATCH --nodes={res.num_machines}")
        if res.num_mpiprocs_per_machine is not None:
            lines.append(f"#SBATCH --ntasks-per-node={res.num_mpiprocs_per_machine}")
        if res.num_cores_per_mpiproc is not None:
            lines.append(f"#SBATCH --cpus-per-task={res.num_cores_per_mpiproc}")
        if template.max_wallclock_seconds is not None:
            lines.append(f"#SBATCH --time={_format_time(template.max_wallclock_seconds)}")
        if template.max_memory_kb is not None:
            lines.append(f"#SBATCH --mem={math.ceil(template.max_memory_kb / 1024)}M")
        return lines

    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        """``sbatch --parsable <script>`` run in ``workdir``; the id is the part before any ``;cluster``."""
        command = f"sbatch --parsable {shlex.quote(as_operand(script_name))}"  # ./-x: never an option

        def job_id_of(line: str) -> str:
            job_id = line.split(";", 1)[0].strip()
            return job_id if _JOB_ID.match(job_id) else ""

        return await self._submit_printing_id(transport, workdir, command, job_id_of)

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One ``squeue`` for all ``job_ids``; unknown ids are ``DONE`` (see the module docstring).

        ``squeue`` exits with an error when it is given a single id it does
        not know ("Invalid job id specified"); that id is reported ``DONE``.
        Should an older SLURM fail the same way for a list that holds unknown
        ids, each id is asked for on its own, so that an unknown id never
        makes a running job look finished.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        for job_id in ids:
            if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
                raise ValueError(f"{job_id!r} is not a SLURM job id")
        command = (
            f"squeue --noheader --states=all --jobs={shlex.quote(','.join(ids))}"
            f" --format={shlex.quote(SQUEUE_FORMAT)}"
        )
        result = await self._run(transport, command)
        if result.returncode != 0:
            if _UNKNOWN_JOB in result.stderr:
                if len(ids) == 1:
                    return {ids[0]: JobInfo.vanished(ids[0])}
                answers: dict[str, JobInfo] = {}
                for job_id in ids:
                    answers.update(await self.query(transport, [job_id]))
                return answers
            raise self._command_error("squeue failed", command, result)
        listed = parse_squeue(result.stdout, command=command)
        return {job_id: listed.get(job_id) or JobInfo.vanished(job_id) for job_id in ids}

    async def kill(self, transport: Transport, job_id: str) -> None:
        """``scancel <id>``; an unknown or already finished job is fine."""
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            raise ValueError(f"{job_id!r} is not a SLURM job id")
        command = f"scancel {shlex.quote(job_id)}"
        result = await self._run(transport, command)
        if result.returncode != 0 and not (
            _UNKNOWN_JOB in result.stderr or _ALREADY_FINISHED in result.stderr
        ):
            raise self._command_error(f"scancel refused to cancel job {job_id}", command, result)
