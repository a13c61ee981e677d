"""The ``pbs`` scheduler: PBS Professional / OpenPBS (default) and Torque (``qsub``, ``qstat``, ``qdel``).

Option ``flavour``: ``"pro"`` (PBS Professional and OpenPBS: ``-l select=``
chunks, ``qstat -x`` shows finished jobs) or ``"torque"`` (``-l nodes=:ppn=``,
finished jobs stay visible as ``C`` for the server's ``keep_completed``).

Script header: ``#PBS`` directives.  PBS starts a job in the user's home
folder, so the script first changes to ``$PBS_O_WORKDIR`` (the folder
``qsub`` ran in, which is the job's working folder) and stops if it cannot.
PBS does not unquote directive values, so the scheduler's own output and
error file names must be free of white space and quotes here.

Polling: ONE ``qstat -f [-x] <ids>`` for all jobs; the ``Job Id:`` blocks of
``attribute = value`` lines are parsed, values wrapped by ``qstat`` onto
lines that start with a tab are joined back.  An id that ``qstat`` does not
know ("Unknown Job Id", or "Job has finished" without ``-x``) is ``DONE``.

States: ``Q H W T M S`` → QUEUED (``S``, suspended, is RUNNING), ``R E B U``
→ RUNNING, ``F X C`` → final, then decided by ``Exit_status``:

* ``0`` or absent (a job deleted before it ran has none) → DONE;
* ``1..255``: the script's own exit status, that is the codes' first
  non-zero status (see the exit-code file convention) → FAILED/``failed``
  with ``exit_code`` set, as SLURM reports such a job FAILED;
* ``>= 256``: killed by signal ``Exit_status - 256``, which is what ``qdel``
  of a running job gives → FAILED/``cancelled``; or ``walltime`` when the
  wall time used reached the limit (Torque kills at the limit this way);
* negative: PBS itself ended the job: ``-29`` wall time → ``walltime``,
  ``-26``/``-27`` (vmem/mem) → ``out_of_memory``, any other (could not
  start, cpu limits...) → ``failed``.

Errors: a failed ``qsub``/``qstat``/``qdel`` is classified by what it printed:
a server that cannot be reached, times out, or has the queue disabled or full
is retryable (:class:`~plait.schedulers.errors.SchedulerUnavailableError`);
an unknown queue or resource, an invalid account, a job that violates or
exceeds the limits, an unauthorized request is not
(:class:`~plait.schedulers.errors.SchedulerRefusedError`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from plait.schedulers._common import check_header_value, format_hms, parse_duration, sanitize_job_name
from plait.schedulers.contract import JobInfo, JobState, JobTemplate, Scheduler, checked_job_id
from plait.transports.relative_paths import as_operand

if TYPE_CHECKING:
    from plait.transports.contract import Transport

__all__ = ["PbsScheduler", "parse_qstat_full"]

_JOB_ID = re.compile(r"\d+(?:\[\d*\])?(?:\.[A-Za-z0-9_.\-]+)?\Z")
_UNSAFE_FILE_NAME = re.compile(r"[\s'\"\\]")

_QUEUED = {"Q", "H", "W", "T", "M"}
_RUNNING = {"R", "E", "B", "U", "S"}
_FINAL = {"F", "X", "C"}

#: Negative Exit_status values of PBS Professional that name a resource limit.
_PBS_KILLS = {
    -29: ("walltime", "killed by PBS: wall time limit exceeded"),
    -27: ("out_of_memory", "killed by PBS: memory limit exceeded"),
    -26: ("out_of_memory", "killed by PBS: virtual memory limit exceeded"),
    -28: ("failed", "killed by PBS: cpu time limit exceeded"),
    -25: ("failed", "killed by PBS: cpu count limit exceeded"),
    -24: ("failed", "killed by PBS: cpu burst limit exceeded"),
}

# stderr of qstat/qdel for a job the server does not know or has finished with (PBS Pro and Torque).
_GONE = re.compile(r"unknown job id|job has finished|invalid state for job", re.IGNORECASE)

#: The server cannot take the request now (pbs_error strings and the client tools' own): retryable.
#: A full queue or a disabled one is a state of the cluster that passes, not a fault of the job.
_UNAVAILABLE = re.compile(
    r"cannot connect to (server|host)|connection refused|cannot read reply|premature end of message"
    r"|end of file|timed out|server shutting down|queue is not enabled|queue is not started"
    r"|maximum number of jobs already in queue|try again",
    re.IGNORECASE,
)

#: The server refuses the job itself (bad queue, account, resources, limits, user, script): not retryable.
_REFUSED = re.compile(
    r"unknown queue|unknown resource|unauthorized request|bad uid|invalid account|bad account"
    r"|illegal attribute|illegal -\w+ value|job violates|job exceeds|exceeds .*limit|directive error"
    r"|no such file|permission denied|not allowed|invalid",
    re.IGNORECASE,
)


def _check_job_id(job_id: str) -> str:
    return checked_job_id(job_id, _JOB_ID, "a PBS")


def _sequence_number(job_id: str) -> str:
    """``1234`` for ``1234.server.domain``: qstat may print a longer server name than qsub did."""
    return job_id.split(".", 1)[0]


def parse_qstat_full(text: str) -> dict[str, dict[str, str]]:
    """The ``Job Id:`` blocks of ``qstat -f`` output: ``{job id: {attribute: value}}``.

    An attribute line is ``<indent>name = value``; a line starting with a tab
    continues the previous value (qstat wraps long values, often right in
    the middle of a word, so the pieces are joined without a separator).
    """
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last_key: str | None = None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            current = {}
            jobs[line.split(":", 1)[1].strip()] = current
            last_key = None
        elif current is None or not line.strip():
            last_key = None
        elif line.startswith("\t") and last_key is not None:
            current[last_key] += line.lstrip("\t").rstrip("\n")
        elif "=" in line:
            key, _, value = line.partition("=")
            last_key = key.strip()
            current[last_key] = value.strip()
        elif last_key is not None and line[:1].isspace():
            current[last_key] += line.strip()
    return jobs


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _job_info(job_id: str, attributes: dict[str, str]) -> JobInfo:
    raw_state = attributes.get("job_state", "").strip()
    lowered = {key.lower(): value for key, value in attributes.items()}
    exit_code = _int_or_none(lowered.get("exit_status"))
    reason = attributes.get("comment") or None
    failure: str | None = None
    if raw_state in _QUEUED:
        state = JobState.QUEUED
    elif raw_state in _FINAL:
        if exit_code is None or exit_code == 0:
            state = JobState.DONE
        elif exit_code >= 256:
            state = JobState.FAILED
            used = parse_duration(attributes.get("resources_used.walltime"))
            limit = parse_duration(attributes.get("Resource_List.walltime"))
            if used is not None and limit is not None and used >= limit:
                failure = "walltime"  # Torque kills at the wall time with a signal, not with -29
                reason = reason or f"killed by signal {exit_code - 256} at the wall time limit"
            else:
                failure = "cancelled"
                reason = reason or f"killed by signal {exit_code - 256}"
        elif exit_code < 0:
            failure, why = _PBS_KILLS.get(exit_code, ("failed", f"ended by PBS (Exit_status {exit_code})"))
            state = JobState.FAILED
            reason = reason or why
        else:
            state, failure = JobState.FAILED, "failed"
    else:  # running, and any state letter a PBS release may add: keep polling
        state = JobState.RUNNING
    return JobInfo(
        job_id=job_id,
        state=state,
        raw_state=raw_state,
        reason=reason,
        exit_code=exit_code,
        failure=failure,
        wallclock_seconds=parse_duration(attributes.get("resources_used.walltime")),
        queue=attributes.get("queue") or None,
        num_machines=_int_or_none(attributes.get("Resource_List.nodect")),
        node_list=attributes.get("exec_host") or None,
    )


class PbsScheduler(Scheduler):
    """PBS Professional / OpenPBS, or Torque with ``flavour="torque"`` (see the module docstring).

    Header: ``-N`` (letters, digits, ``_.-``, starting with a letter; at most
    15 characters for Torque), ``-r n`` (not rerunnable: a rerun would run the
    codes twice in the same folder), ``-o``/``-e``, ``-q``, ``-A``, the
    resources, ``-l walltime=HH:MM:SS`` and ``-l mem=<kb>kb``.  ``qos`` does
    not exist in PBS and is refused.
    """

    plugin_name = "pbs"
    probe_job_id = "999999999"
    unavailable_pattern = _UNAVAILABLE
    refused_pattern = _REFUSED
    default_options = {**Scheduler.default_options, "flavour": "pro"}

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        if self.options["flavour"] not in ("pro", "torque"):
            raise ValueError(f"pbs option flavour must be 'pro' or 'torque', not {self.options['flavour']!r}")

    @property
    def flavour(self) -> str:
        return str(self.options["flavour"])

    def _header(self, template: JobTemplate) -> list[str]:
        res = template.resources
        torque = self.flavour == "torque"
        name = sanitize_job_name(template.job_name, max_length=15 if torque else 230)
        if not name[0].isalpha():
            name = ("j" + name)[: 15 if torque else 230]
        for field_name in ("scheduler_stdout", "scheduler_stderr"):
            if _UNSAFE_FILE_NAME.search(getattr(template, field_name)):
                raise ValueError(
                    f"JobTemplate.{field_name}={getattr(template, field_name)!r}: PBS directives cannot"
                    " carry white space, quotes or backslashes in a file name"
                )
        if template.qos is not None:
            raise ValueError("JobTemplate.qos: PBS has no quality of service; use queue_name")
        lines = [
            f"#PBS -N {name}",
            "#PBS -r n",
            f"#PBS -o {template.scheduler_stdout}",
            f"#PBS -e {template.scheduler_stderr}",
        ]
        if template.queue_name is not None:
            lines.append(f"#PBS -q {check_header_value('queue_name', template.queue_name)}")
        if template.account is not None:
            lines.append(f"#PBS -A {check_header_value('account', template.account)}")
        per_machine = res.num_mpiprocs_per_machine
        cores = res.num_cores_per_mpiproc or 1
        if torque:
            chunk = f"nodes={res.num_machines}"
            if per_machine is not None or res.num_cores_per_mpiproc is not None:
                chunk += f":ppn={(per_machine or 1) * cores}"
        else:
            chunk = f"select={res.num_machines}"
            if per_machine is not None or res.num_cores_per_mpiproc is not None:
                chunk += f":ncpus={(per_machine or 1) * cores}"
            if per_machine is not None:
                chunk += f":mpiprocs={per_machine}"
            if res.num_cores_per_mpiproc is not None:
                chunk += f":ompthreads={res.num_cores_per_mpiproc}"
        lines.append(f"#PBS -l {chunk}")
        if template.max_wallclock_seconds is not None:
            lines.append(f"#PBS -l walltime={format_hms(template.max_wallclock_seconds)}")
        if template.max_memory_kb is not None:
            lines.append(f"#PBS -l mem={template.max_memory_kb}kb")
        return lines

    def _preamble(self, template: JobTemplate) -> list[str]:
        return ['cd "$PBS_O_WORKDIR" || exit 1']

    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        """``qsub <script>`` run in ``workdir``; the id is what qsub prints (``1234.server``)."""
        command = f"qsub {shlex.quote(as_operand(script_name))}"  # ./-x: never an option
        return await self._submit_printing_id(
            transport, workdir, command, lambda line: line if _JOB_ID.match(line) else ""
        )

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One ``qstat -f`` (``-x`` for PBS Pro) for all ``job_ids``; unknown ids are ``DONE``."""
        ids = [_check_job_id(job_id) for job_id in dict.fromkeys(job_ids)]
        if not ids:
            return {}
        history = " -x" if self.flavour == "pro" else ""
        command = f"qstat -f{history} " + " ".join(shlex.quote(job_id) for job_id in ids)
        result = await self._run(transport, command)
        if result.returncode != 0:
            complaints = [line for line in result.stderr.splitlines() if line.strip()]
            if not complaints or not all(_GONE.search(line) for line in complaints):
                raise self._command_error("qstat failed", command, result)
        blocks = parse_qstat_full(result.stdout)
        by_sequence = {_sequence_number(reported): reported for reported in blocks}
        answers: dict[str, JobInfo] = {}
        for job_id in ids:
            reported = job_id if job_id in blocks else by_sequence.get(_sequence_number(job_id))
            if reported is None:
                answers[job_id] = JobInfo.vanished(job_id)
            else:
                answers[job_id] = _job_info(job_id, blocks[reported])
        return answers

    async def kill(self, transport: Transport, job_id: str) -> None:
        """``qdel <id>``; an unknown or finished job is fine."""
        command = f"qdel {shlex.quote(_check_job_id(job_id))}"
        result = await self._run(transport, command)
        if result.returncode != 0 and not _GONE.search(result.stderr):
            raise self._command_error(f"qdel refused to cancel job {job_id}", command, result)
