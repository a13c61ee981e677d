"""The ``sge`` scheduler: (Son of) Grid Engine, Univa/Altair Grid Engine (``qsub``, ``qstat``, ``qdel``).

Written from the documented formats of Grid Engine 6.2 and later (there is
no Grid Engine here; the tests feed captured-format outputs through the
plugin kit).

Script header: ``#$`` directives: ``-S /bin/bash``, ``-cwd`` (the job runs in
the folder ``qsub`` ran in, the job's working folder), ``-r n`` (not
rerunnable: a rerun would run the codes twice in the same folder), ``-N``,
``-o``/``-e``, ``-q``, ``-A``, ``-l h_rt=HH:MM:SS`` for the wall time and ``-l
h_vmem=<kb>K`` for the memory (Grid Engine's limit per slot).  Grid Engine
does not unquote directive values, so the output and error file names must
be free of white space and quotes.  ``qos`` does not exist and is refused.

Resources and the parallel environment: a job of more than one slot needs
a parallel environment, named by the scheduler option
``parallel_environment`` (``qconf -spl`` lists a cluster's; ``None``, the
default, allows one slot only).  The job asks ``-pe <name> <slots>`` with
slots = ``tot_num_mpiprocs`` times ``num_cores_per_mpiproc`` (or
``num_machines`` when no process count is given).  How the slots spread over
machines is the environment's ``allocation_rule`` (e.g. ``$fill_up``, or a
fixed number per host), which the cluster configures, not the job; so
``num_machines`` only counts through the slots.

Submit: ``qsub -terse`` prints the bare job id (``1234``; an array job's
``1234.1-10:1`` is not followed).

Polling: ONE ``qstat -xml -u "$USER"`` lists every job of the user (Grid
Engine's ``qstat`` cannot list chosen job ids in its table form); the asked
ids are picked from it.  Grid Engine forgets a job the moment it ends, so
every job not listed is ``DONE`` and the engine tells success from failure
by the exit-code file (``qacct`` is not asked: accounting may lag or be off).
The XML is parsed with :mod:`xml.etree.ElementTree`; a document with a
``DOCTYPE`` (entity expansion) is refused.

States (letters combine): one with ``E`` (error, e.g. ``Eqw``: the job cannot
start until an administrator clears it) → FAILED/``failed``; ``r t s S T d``
(running, transferring, suspended, being deleted) → RUNNING; ``q w h`` →
QUEUED; any other → RUNNING (keep polling).

Errors: a failed ``qsub``/``qstat``/``qdel`` is classified by what it printed:
a qmaster that cannot be reached, a commlib error are retryable
(:class:`~plait.schedulers.errors.SchedulerUnavailableError`); an unknown
queue, resource or parallel environment, a denied request, a rejected job
are not (:class:`~plait.schedulers.errors.SchedulerRefusedError`).
"""

from __future__ import annotations

import math
import re
import shlex
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from plait.schedulers._common import check_header_value, format_hms, sanitize_job_name
from plait.schedulers.contract import JobInfo, JobState, JobTemplate, Scheduler, checked_job_id
from plait.schedulers.errors import SchedulerOutputError
from plait.transports.relative_paths import as_operand

if TYPE_CHECKING:
    from plait.transports.contract import Transport

__all__ = ["SgeScheduler", "parse_qstat_xml"]

_JOB_ID = re.compile(r"\d+\Z")
_UNSAFE_FILE_NAME = re.compile(r"[\s'\"\\]")
_PE_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")

# qdel for a job Grid Engine does not know (any more).
_GONE = re.compile(r"does not exist", re.IGNORECASE)

#: the qmaster cannot take the request now: retryable.
_UNAVAILABLE = re.compile(
    r"unable to contact qmaster|commlib error|unable to send message to qmaster|can't unpack"
    r"|failed receiving gdi request|got no connection|timeout|try again later",
    re.IGNORECASE,
)

#: the qmaster refuses the request itself: not retryable.
_REFUSED = re.compile(
    r"Unable to run job|denied|invalid|unknown queue|unknown resource|job rejected|cannot run in"
    r"|no suitable queues|does not exist|not allowed|permission|privileges",
    re.IGNORECASE,
)


def _check_job_id(job_id: str) -> str:
    return checked_job_id(job_id, _JOB_ID, "a Grid Engine")


def _state_of(raw_state: str) -> tuple[JobState, str | None]:
    if "E" in raw_state:
        return JobState.FAILED, "failed"
    if set(raw_state) & set("rtsSTd"):
        return JobState.RUNNING, None
    if raw_state and set(raw_state) <= set("qwh"):
        return JobState.QUEUED, None
    return JobState.RUNNING, None


def parse_qstat_xml(text: str, *, command: str = "qstat -xml") -> dict[str, JobInfo]:
    """The jobs in ``qstat -xml`` output (running ones under ``queue_info``, pending under ``job_info``).

    Raises:
        SchedulerOutputError: the text is not such a document, holds a DOCTYPE,
            or a job has no number or state (not retryable).
    """

    def bad(reason: str) -> SchedulerOutputError:
        return SchedulerOutputError(
            f"cannot read the qstat -xml output: {reason}", command=command, returncode=0, stdout=text
        )

    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise bad("it declares a DOCTYPE or entities")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise bad(str(exc)) from None
    jobs: dict[str, JobInfo] = {}
    for entry in root.iter("job_list"):
        number = (entry.findtext("JB_job_number") or "").strip()
        raw_state = (entry.findtext("state") or "").strip()
        if not number or not raw_state:
            raise bad("a job_list entry has no JB_job_number or state")
        state, failure = _state_of(raw_state)
        queue_instance = (entry.findtext("queue_name") or "").strip()
        queue, _, host = queue_instance.partition("@")
        jobs[number] = JobInfo(
            job_id=number,
            state=state,
            raw_state=raw_state,
            reason="error state: the job cannot start (qstat -j shows why)" if failure else None,
            failure=failure,
            queue=queue or None,
            node_list=host or None,
        )
    return jobs


class SgeScheduler(Scheduler):
    """Grid Engine through ``qsub``, ``qstat`` and ``qdel`` (see the module docstring).

    Option ``parallel_environment``: the parallel environment of jobs of more
    than one slot (``None``: one slot only, more is refused when the job is
    written, naming the option).
    """

    plugin_name = "sge"
    probe_job_id = "999999999"
    unavailable_pattern = _UNAVAILABLE
    refused_pattern = _REFUSED
    default_options = {**Scheduler.default_options, "parallel_environment": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        pe = self.options["parallel_environment"]
        if pe is not None and (not isinstance(pe, str) or not _PE_NAME.match(pe)):
            raise ValueError(
                f"sge option parallel_environment={pe!r} must be a parallel environment name"
                " (letters, digits, _ . -), or None"
            )

    def _header(self, template: JobTemplate) -> list[str]:
        res = template.resources
        for field_name in ("scheduler_stdout", "scheduler_stderr"):
            if _UNSAFE_FILE_NAME.search(getattr(template, field_name)):
                raise ValueError(
                    f"JobTemplate.{field_name}={getattr(template, field_name)!r}: Grid Engine directives"
                    " cannot carry white space, quotes or backslashes in a file name"
                )
        if template.qos is not None:
            raise ValueError("JobTemplate.qos: Grid Engine has no quality of service; use queue_name")
        lines = [
            "#$ -S /bin/bash",
            "#$ -cwd",
            "#$ -r n",
            f"#$ -N {sanitize_job_name(template.job_name, max_length=128)}",
            f"#$ -o {template.scheduler_stdout}",
            f"#$ -e {template.scheduler_stderr}",
        ]
        if template.queue_name is not None:
            lines.append(f"#$ -q {check_header_value('queue_name', template.queue_name)}")
        if template.account is not None:
            lines.append(f"#$ -A {check_header_value('account', template.account)}")
        cores = res.num_cores_per_mpiproc or 1
        slots = (res.tot_num_mpiprocs or res.num_machines) * cores
        pe = self.options["parallel_environment"]
        if slots > 1:
            if pe is None:
                raise ValueError(
                    f"JobResources ask for {slots} slots: give the sge scheduler option"
                    " parallel_environment (qconf -spl lists the cluster's)"
                )
            lines.append(f"#$ -pe {pe} {slots}")
        if template.max_wallclock_seconds is not None:
            lines.append(f"#$ -l h_rt={format_hms(template.max_wallclock_seconds)}")
        if template.max_memory_kb is not None:
            lines.append(f"#$ -l h_vmem={math.ceil(template.max_memory_kb)}K")
        return lines

    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        """``qsub -terse <script>`` run in ``workdir``; the id is the number qsub prints."""
        command = f"qsub -terse {shlex.quote(as_operand(script_name))}"

        def job_id_of(line: str) -> str:
            number = line.split(".", 1)[0]
            return number if _JOB_ID.match(number) else ""

        return await self._submit_printing_id(transport, workdir, command, job_id_of)

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One ``qstat -xml -u "$USER"``; every asked id it does not list is ``DONE``."""
        ids = [_check_job_id(job_id) for job_id in dict.fromkeys(job_ids)]
        if not ids:
            return {}
        command = 'qstat -xml -u "$USER"'
        result = await self._run(transport, command)
        if result.returncode != 0:
            raise self._command_error("qstat failed", command, result)
        listed = parse_qstat_xml(result.stdout, command=command)
        return {job_id: listed.get(job_id) or JobInfo.vanished(job_id) for job_id in ids}

    async def kill(self, transport: Transport, job_id: str) -> None:
        """``qdel <id>``; a job Grid Engine no longer knows is fine."""
        command = f"qdel {shlex.quote(_check_job_id(job_id))}"
        result = await self._run(transport, command)
        if result.returncode != 0 and not _GONE.search(result.stderr + result.stdout):
            raise self._command_error(f"qdel refused to cancel job {job_id}", command, result)
