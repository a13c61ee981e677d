"""The ``lsf`` scheduler: IBM Spectrum LSF (``bsub``, ``bjobs``, ``bkill``).

Written from the documented formats of LSF 10.1 (there is no LSF here; the
tests feed captured-format outputs through the plugin kit).

Script header: ``#BSUB`` directives.  The script is submitted on standard
input (``bsub < script``), which is how every LSF release reads embedded
options.  The job runs in the folder ``bsub`` ran in (LSF's default), which
is the job's working folder.  Like PBS, LSF does not unquote directive
values, so the scheduler's own output and error file names must be free of
white space and quotes.

Resources: ``-n`` is the number of slots, ``tot_num_mpiprocs`` times
``num_cores_per_mpiproc``; with ``num_mpiprocs_per_machine`` given, ``-R
"span[ptile=N]"`` puts N times the cores per process on each host, so the
job spans ``num_machines`` hosts.  With neither count given, ``-n
num_machines`` and ``span[ptile=1]`` ask for one slot on each of the
machines.  Wall time is ``-W`` in minutes (rounded up); memory ``-M`` in MB
(rounded up; LSF's per-process limit).  ``account`` is the LSF project
(``-P``); ``qos`` does not exist in LSF and is refused.  ``-rn`` makes the job
not rerunnable: a rerun would run the codes twice in the same folder.

Polling: ONE ``bjobs -noheader -o "<fields> delimiter='|'" <ids>`` for all
jobs (:data:`BJOBS_FIELDS`, the free-text pending reason last, so a ``|`` in
it cannot shift the other fields; ``-`` is LSF's empty field).  ``bjobs``
lists a finished job for ``CLEAN_PERIOD`` (one hour by default) and prints
``Job <id> is not found`` (exiting non-zero) for one it forgot: that job is
``DONE``, and the engine tells success from failure by the exit-code file.

States: ``PEND PSUSP WAIT PROV`` → QUEUED; ``RUN USUSP SSUSP`` (and the
``UNKWN``/``ZOMBI`` of an unreachable host, and any new word) → RUNNING;
``DONE`` → DONE; ``EXIT`` → FAILED, the kind from ``exit_reason``:
``TERM_RUNLIMIT`` walltime, ``TERM_MEMLIMIT``/``TERM_SWAP`` out_of_memory,
``TERM_OWNER``/``TERM_ADMIN``/``TERM_FORCE_*``/``TERM_REQUEUE_*`` cancelled,
``TERM_HOST``/``TERM_LOAD``/``TERM_ORPHAN_SYSTEM``... node_failure when it
names a host problem, anything else failed.

Errors: a failed ``bsub``/``bjobs``/``bkill`` is classified by what it printed:
LSF down, a daemon that does not answer, "try again later" are retryable
(:class:`~plait.schedulers.errors.SchedulerUnavailableError`); an unknown
queue or project, too many processors, a denied permission, a bad option
are not (:class:`~plait.schedulers.errors.SchedulerRefusedError`).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from plait.schedulers._common import check_header_value, sanitize_job_name
from plait.schedulers.contract import JobInfo, JobState, JobTemplate, Scheduler, checked_job_id
from plait.schedulers.errors import SchedulerOutputError
from plait.transports.relative_paths import as_operand

if TYPE_CHECKING:
    from plait.transports.contract import Transport

__all__ = ["BJOBS_FIELDS", "LsfScheduler", "parse_bjobs"]

#: The ``bjobs -o`` fields, in order; the free-text pending reason last.
BJOBS_FIELDS = ("jobid", "stat", "exit_code", "queue", "run_time", "exec_host", "exit_reason", "pend_reason")

_JOB_ID = re.compile(r"\d+(?:\[\d+\])?\Z")
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted")
_UNSAFE_FILE_NAME = re.compile(r"[\s'\"\\]")

_QUEUED = {"PEND", "PSUSP", "WAIT", "PROV"}
_FAILURE_OF_REASON = (
    ("TERM_RUNLIMIT", "walltime"),
    ("TERM_MEMLIMIT", "out_of_memory"),
    ("TERM_SWAP", "out_of_memory"),
    ("TERM_OWNER", "cancelled"),
    ("TERM_ADMIN", "cancelled"),
    ("TERM_FORCE_OWNER", "cancelled"),
    ("TERM_FORCE_ADMIN", "cancelled"),
    ("TERM_REQUEUE_OWNER", "cancelled"),
    ("TERM_REQUEUE_ADMIN", "cancelled"),
    ("TERM_HOST", "node_failure"),
    ("TERM_LOAD", "node_failure"),
    ("TERM_ORPHAN_SYSTEM", "node_failure"),
)

# bjobs/bkill for a job LSF does not know (any more) or that already ended.
_GONE = re.compile(r"is not found|No matching job found|Job has already finished", re.IGNORECASE)

#: LSF cannot take the request now: retryable.
_UNAVAILABLE = re.compile(
    r"LSF is down|Cannot connect to LSF|batch system daemon not responding|LIM is down"
    r"|Failed in an LSF library call|not responding|try again later|Unable to contact",
    re.IGNORECASE,
)

#: LSF refuses the request itself: not retryable.
_REFUSED = re.compile(
    r"No such queue|not submitted|not a valid|Bad argument|bad project|permission denied"
    r"|not authorized|not allowed|invalid|Too many processors|exceeds",
    re.IGNORECASE,
)


def _check_job_id(job_id: str) -> str:
    return checked_job_id(job_id, _JOB_ID, "an LSF")


def _field(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "-") else text


def _state_of(raw_state: str, exit_reason: str | None) -> tuple[JobState, str | None]:
    if raw_state in _QUEUED:
        return JobState.QUEUED, None
    if raw_state == "DONE":
        return JobState.DONE, None
    if raw_state == "EXIT":
        for prefix, failure in _FAILURE_OF_REASON:
            if exit_reason and exit_reason.startswith(prefix):
                return JobState.FAILED, failure
        return JobState.FAILED, "failed"
    return JobState.RUNNING, None  # RUN, the suspended states, UNKWN, ZOMBI and words LSF may add


def parse_bjobs(stdout: str, *, command: str = "bjobs") -> dict[str, JobInfo]:
    """The jobs listed by ``bjobs -noheader -o "BJOBS_FIELDS delimiter='|'"``, by job id.

    Raises:
        SchedulerOutputError: a line does not have the expected fields (not retryable).
    """
    jobs: dict[str, JobInfo] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", len(BJOBS_FIELDS) - 1)
        if len(parts) != len(BJOBS_FIELDS) or not _field(parts[0]) or not _field(parts[1]):
            raise SchedulerOutputError(
                f"cannot read bjobs line {line!r} (expected {' '.join(BJOBS_FIELDS)} separated by '|')",
                command=command,
                returncode=0,
                stdout=stdout,
            )
        job_id, raw_state, exit_code, queue, run_time, exec_host, exit_reason, pend_reason = map(
            _field, parts
        )
        assert job_id is not None and raw_state is not None
        state, failure = _state_of(raw_state, exit_reason)
        seconds = re.match(r"(\d+)", run_time or "")
        hosts = {entry.split("*")[-1] for entry in exec_host.split(":")} if exec_host else set()
        jobs[job_id] = JobInfo(
            job_id=job_id,
            state=state,
            raw_state=raw_state,
            reason=exit_reason or pend_reason,
            exit_code=int(exit_code) if exit_code and exit_code.isdigit() else None,
            failure=failure,
            wallclock_seconds=int(seconds.group(1)) if seconds else None,
            queue=queue,
            num_machines=len(hosts) or None,
            node_list=exec_host,
        )
    return jobs


class LsfScheduler(Scheduler):
    """IBM Spectrum LSF through ``bsub``, ``bjobs`` and ``bkill`` (see the module docstring)."""

    plugin_name = "lsf"
    probe_job_id = "999999999"
    unavailable_pattern = _UNAVAILABLE
    refused_pattern = _REFUSED

    def _header(self, template: JobTemplate) -> list[str]:
        res = template.resources
        for field_name in ("scheduler_stdout", "scheduler_stderr"):
            if _UNSAFE_FILE_NAME.search(getattr(template, field_name)):
                raise ValueError(
                    f"JobTemplate.{field_name}={getattr(template, field_name)!r}: LSF directives cannot"
                    " carry white space, quotes or backslashes in a file name"
                )
        if template.qos is not None:
            raise ValueError("JobTemplate.qos: LSF has no quality of service; use queue_name")
        lines = [
            f"#BSUB -J {sanitize_job_name(template.job_name, max_length=128)}",
            "#BSUB -rn",
            f"#BSUB -o {template.scheduler_stdout}",
            f"#BSUB -e {template.scheduler_stderr}",
        ]
        if template.queue_name is not None:
            lines.append(f"#BSUB -q {check_header_value('queue_name', template.queue_name)}")
        if template.account is not None:
            lines.append(f"#BSUB -P {check_header_value('account', template.account)}")
        cores = res.num_cores_per_mpiproc or 1
        if res.num_mpiprocs_per_machine is not None and res.tot_num_mpiprocs is not None:
            lines.append(f"#BSUB -n {res.tot_num_mpiprocs * cores}")
            lines.append(f'#BSUB -R "span[ptile={res.num_mpiprocs_per_machine * cores}]"')
        else:
            lines.append(f"#BSUB -n {res.num_machines * cores}")
            lines.append(f'#BSUB -R "span[ptile={cores}]"')
        if template.max_wallclock_seconds is not None:
            lines.append(f"#BSUB -W {math.ceil(template.max_wallclock_seconds / 60)}")
        if template.max_memory_kb is not None:
            lines.append(f"#BSUB -M {math.ceil(template.max_memory_kb / 1024)}MB")
        return lines

    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        """``bsub < <script>`` run in ``workdir``; the id is read from ``Job <id> is submitted ...``."""
        command = f"bsub < {shlex.quote(as_operand(script_name))}"

        def job_id_of(line: str) -> str:
            match = _SUBMITTED.search(line)
            return match.group(1) if match else ""

        return await self._submit_printing_id(transport, workdir, command, job_id_of)

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One ``bjobs`` for all ``job_ids``; ids LSF no longer knows are ``DONE``."""
        ids = [_check_job_id(job_id) for job_id in dict.fromkeys(job_ids)]
        if not ids:
            return {}
        fields = " ".join(BJOBS_FIELDS) + " delimiter='|'"
        command = f"bjobs -noheader -o {shlex.quote(fields)} " + " ".join(shlex.quote(i) for i in ids)
        result = await self._run(transport, command)
        if result.returncode != 0:
            complaints = [line for line in result.stderr.splitlines() if line.strip()]
            if not complaints or not all(_GONE.search(line) for line in complaints):
                raise self._command_error("bjobs failed", command, result)
        listed = parse_bjobs(result.stdout, command=command)
        return {job_id: listed.get(job_id) or JobInfo.vanished(job_id) for job_id in ids}

    async def kill(self, transport: Transport, job_id: str) -> None:
        """``bkill <id>``; a job that is unknown or already finished is fine."""
        command = f"bkill {shlex.quote(_check_job_id(job_id))}"
        result = await self._run(transport, command)
        if result.returncode != 0 and not _GONE.search(result.stderr + result.stdout):
            raise self._command_error(f"bkill refused to cancel job {job_id}", command, result)
