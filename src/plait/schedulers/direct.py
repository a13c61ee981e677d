"""The ``direct`` scheduler: run the job script as a background process, no batch system.

For a workstation or a login node.  The job id is the PID of the job's
process, which leads its own session and process group (``setsid``; without
``setsid``, bash job control gives the same process group), so that:

* the transport's command returns at once: the job's standard streams are
  detached from it (``/dev/null`` in, files out) and it ignores the hang-up
  of the shell that started it (``nohup``);
* ``kill`` signals the whole process group (the script and every program it
  started: ``mpirun`` and its ranks, a pipeline...), not just the script.

The script sends its own standard output and error to
:attr:`~plait.schedulers.contract.JobTemplate.scheduler_stdout` and
``scheduler_stderr`` (first lines after the header), because :meth:`submit`
only knows the script's name.

Wall time: when ``max_wallclock_seconds`` is set, the script runs itself
again under ``timeout`` (GNU coreutils), which sends SIGTERM to the codes
at the limit and SIGKILL 10 seconds later.  The first copy of the script
stays the job's process (its pid is the job id, ``kill`` reaches the codes
through it) and, when ``timeout`` reports the limit (its exit status 124),
writes :data:`WALLTIME_MARKER` to the job's ``scheduler_stderr`` and exits
with 124.  Like every job that vanishes, ``query`` then reports it
``DONE`` (``direct`` forgets a job when it ends); the engine, finding no
exit-code file, asks :meth:`DirectScheduler.failure_from_output`, which
reads the marker and answers ``"walltime"``, so the calculation ends with
``ERROR_SCHEDULER_OUT_OF_WALLTIME`` (exit status 111), not as a job that
vanished.  Where ``timeout`` is missing the limit is not enforced and the
script says so in its standard error.  Memory limits, queue, account and
qos do not apply and are ignored; more than one machine is refused at
launch (:meth:`DirectScheduler.validate_job_options`).

Polling: one command for all jobs.  On Linux it reads ``/proc/<pid>/stat``
with bash built-ins (no program started per job, and none of the cost of
``ps`` walking ``/proc``); elsewhere it runs ``ps -o pid=,pgid=,stat=,etime=
-p <pids>``.  A pid that is missing, a zombie (``Z``: the job ended and
nobody collected its status yet) or no longer the leader of its process
group (the pid was reused by an unrelated process) is ``DONE``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plait.schedulers._common import parse_duration, sanitize_job_name
from plait.schedulers.contract import JobInfo, JobState, JobTemplate, Scheduler
from plait.schedulers.errors import InvalidJobOptionError, SchedulerOutputError
from plait.transports.relative_paths import as_operand

if TYPE_CHECKING:
    from plait.transports.contract import Transport

__all__ = ["DirectScheduler"]

#: seconds between the SIGTERM at the wall-time limit and the SIGKILL.
WALLTIME_KILL_AFTER = 10

#: what ``timeout`` exits with when the limit was reached (GNU coreutils).
WALLTIME_EXIT_STATUS = 124

#: the line the wrapper writes to ``scheduler_stderr`` when the wall time ended the job.
WALLTIME_MARKER = "plait: the job exceeded its wall time"

#: the machine is short of processes or memory for a moment (fork failed): retryable.
_UNAVAILABLE = re.compile(r"Resource temporarily unavailable|Cannot allocate memory", re.IGNORECASE)
#: the job script is missing, or the job belongs to someone else: not retryable.
_REFUSED = re.compile(r"no such job script|Operation not permitted|Permission denied", re.IGNORECASE)


#: bash: print "pid pgid stat" for each pid given, from /proc when there is one, else from ps.
_STATUS_OF = (
    "if [ -r /proc/self/stat ]; then for __p in {pids}; do "
    'if read -r __l 2> /dev/null < "/proc/$__p/stat"; then __l="${{__l##*) }}"; set -- $__l; '
    'echo "$__p $3 $1"; fi; done; else ps -o pid=,pgid=,stat=,etime= -p {comma_pids}; fi'
)


#: sh: set ``pgid`` to the process group of "$pid" ("" once the process is gone); from /proc
#: it reads in the shell itself (no subshell, no program started), else it asks ps.
_PGID_OF_PID = (
    'if [ -r /proc/self/stat ]; then __l=""; read -r __l 2> /dev/null < "/proc/$pid/stat"; '
    '__l="${__l##*) }"; set -- $__l; pgid="${3:-}"; '
    'else pgid="$(ps -o pgid= -p "$pid" 2> /dev/null | tr -d " ")"; fi'
)


def _status_command(pids: list[str]) -> str:
    return _STATUS_OF.format(pids=" ".join(pids), comma_pids=shlex.quote(",".join(pids)))


def _check_pid(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id.isascii() or not job_id.isdigit() or int(job_id) < 2:
        raise ValueError(f"{job_id!r} is not a direct-scheduler job id (a process id)")
    return str(int(job_id))


class DirectScheduler(Scheduler):
    """Jobs as background processes of the computer itself (see the module docstring)."""

    plugin_name = "direct"
    probe_job_id = "999999999"
    unavailable_pattern = _UNAVAILABLE
    refused_pattern = _REFUSED

    def validate_job_options(self, options: Mapping[str, Any]) -> None:
        """The contract's checks, and one machine only (``direct`` runs on the computer itself).

        Raises:
            InvalidJobOptionError: naming the option and its value.
        """
        resources = options.get("resources") or {}
        machines = resources.get("num_machines", 1) if isinstance(resources, Mapping) else 1
        if isinstance(machines, int) and not isinstance(machines, bool) and machines > 1:
            raise InvalidJobOptionError(
                "resources.num_machines",
                machines,
                "is refused: the direct scheduler runs on one machine only",
            )
        super().validate_job_options(options)

    def failure_from_output(self, stdout: str, stderr: str) -> str | None:
        """``"walltime"`` when the wrapper's :data:`WALLTIME_MARKER` is in the job's stderr."""
        return "walltime" if WALLTIME_MARKER in stderr else None

    def _header(self, template: JobTemplate) -> list[str]:
        res = template.resources
        if res.num_machines != 1:
            raise ValueError(
                f"JobResources.num_machines={res.num_machines}: the direct scheduler runs on one machine only"
            )
        lines = [
            f"# plait job {sanitize_job_name(template.job_name, max_length=128)}: "
            "run by the direct scheduler as a background process",
        ]
        if res.tot_num_mpiprocs is not None:
            lines.append(f"# MPI processes: {res.tot_num_mpiprocs}")
        if res.num_cores_per_mpiproc is not None:
            lines.append(f"# cores per MPI process: {res.num_cores_per_mpiproc}")
        if template.max_wallclock_seconds is not None:
            lines.append(f"# wall time: {template.max_wallclock_seconds} s, enforced with timeout")
        return lines

    def _preamble(self, template: JobTemplate) -> list[str]:
        redirect = (
            f"exec > {shlex.quote(template.scheduler_stdout)} 2> {shlex.quote(template.scheduler_stderr)}"
        )
        seconds = template.max_wallclock_seconds
        if seconds is None:
            return [redirect]
        # timeout leads a process group of its own: the wrapper (the job's pid) forwards a kill to it
        return [
            'if [ -z "${__PLAIT_UNDER_TIMEOUT:-}" ]; then',
            f"    {redirect}",
            "    if command -v timeout > /dev/null 2>&1; then",
            "        export __PLAIT_UNDER_TIMEOUT=1",
            f'        timeout --kill-after={WALLTIME_KILL_AFTER} {seconds} "${{BASH:-bash}}" "$0" &',
            "        __plait_timeout=$!",
            "        trap 'kill -TERM -- -$__plait_timeout 2> /dev/null"
            " || kill -TERM $__plait_timeout 2> /dev/null' TERM HUP INT",
            '        wait "$__plait_timeout"; __plait_rc=$?',
            '        while kill -0 "$__plait_timeout" 2> /dev/null; do',
            '            wait "$__plait_timeout"; __plait_rc=$?',
            "        done",
            f'        if [ "$__plait_rc" -eq {WALLTIME_EXIT_STATUS} ]; then',
            f'            echo "{WALLTIME_MARKER} of {seconds} s and was stopped" >&2',
            "        fi",
            '        exit "$__plait_rc"',
            "    fi",
            f'    echo "plait: no timeout command here, the wall time of {seconds} s is not enforced" >&2',
            "fi",
            "unset __PLAIT_UNDER_TIMEOUT",
        ]

    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        """Start ``bash <script>`` in ``workdir`` as a detached process group; return its PID."""
        script = shlex.quote(as_operand(script_name))  # ./-x: bash never takes it for an option
        launch = f"bash {script} > /dev/null 2>&1 < /dev/null &"
        command = (
            f"if [ ! -f {script} ]; then echo 'no such job script: '{script} >&2; exit 2; fi; "
            # A session of its own has no terminal whose hang-up could reach the job, so nohup is
            # needed only where there is no setsid (each program started here is a fork and an
            # exec for every job: with a thousand jobs they cost as much CPU as the engine).
            f"if command -v setsid > /dev/null 2>&1; then setsid {launch} else set -m; nohup {launch} fi; "
            # Return only once the job leads its process group (setsid runs just after the fork),
            # so that a query right after submit cannot mistake it for a reused pid.
            'pid=$!; __n=0; while [ "$__n" -lt 400 ]; do __n=$((__n + 1)); '
            f"{_PGID_OF_PID}; "
            '{ [ -z "$pgid" ] || [ "$pgid" = "$pid" ]; } && break; sleep 0.005; done; '
            'echo "$pid"'
        )
        result = await self._run(transport, command, workdir=workdir)
        pid = result.stdout.strip()
        if result.returncode != 0:
            raise self._command_error("could not start the job in the background", command, result)
        if not pid.isdigit():  # it may be running: starting it again could run it twice
            raise SchedulerOutputError(
                f"the job was started but its pid is unknown (stdout {result.stdout!r})",
                command=command,
                returncode=result.returncode,
                stderr=result.stderr,
                stdout=result.stdout,
            )
        return pid

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One ``ps`` call for every pid (see the module docstring for what counts as DONE)."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        pids = {job_id: _check_pid(job_id) for job_id in ids}
        command = _status_command(sorted(set(pids.values()), key=int))
        result = await self._run(transport, command)
        # procps exits 1, silently, when none of the pids exists.
        if result.returncode != 0 and (result.stdout.strip() or result.stderr.strip()):
            raise self._command_error("ps failed", command, result)
        listed: dict[str, tuple[str, str, str]] = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
                raise SchedulerOutputError(
                    f"cannot read ps line {line!r} (expected pid, pgid, stat, etime)",
                    command=command,
                    returncode=result.returncode,
                    stdout=result.stdout,
                )
            listed[parts[0]] = (parts[1], parts[2], parts[3] if len(parts) > 3 else "")
        answers: dict[str, JobInfo] = {}
        for job_id, pid in pids.items():
            entry = listed.get(pid)
            if entry is None:
                answers[job_id] = JobInfo.vanished(job_id)
                continue
            pgid, stat, etime = entry
            etime = "" if etime == "-" else etime
            if stat.startswith("Z"):
                answers[job_id] = JobInfo(
                    job_id, JobState.DONE, stat, reason="exited (zombie not yet reaped)"
                )
            elif pgid != pid:
                answers[job_id] = JobInfo(job_id, JobState.DONE, "", reason="pid reused by another process")
            else:
                answers[job_id] = JobInfo(
                    job_id,
                    JobState.RUNNING,
                    stat,
                    wallclock_seconds=parse_duration(etime),
                    num_machines=1,
                )
        return answers

    async def kill(self, transport: Transport, job_id: str) -> None:
        """SIGTERM to the job's whole process group; a job that is gone is fine.

        The group is signalled only while the pid still leads its own process
        group, so a pid reused by an unrelated process is left alone.
        """
        pid = _check_pid(job_id)
        command = (
            f'pgid="$(ps -o pgid= -p {pid} 2> /dev/null | tr -d " ")"; '
            f'if [ "$pgid" = {pid} ]; then kill -TERM -- -{pid}; fi'
        )
        result = await self._run(transport, command)
        if result.returncode != 0 and "No such process" not in result.stderr:
            raise self._command_error(f"could not kill job {job_id}", command, result)
