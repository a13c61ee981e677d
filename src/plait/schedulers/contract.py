"""The scheduler contract: how plait submits, watches and cancels a job on a computer.

A scheduler plugin turns a :class:`JobTemplate` (what to run, with which
resources) into a job script, submits that script, reports the state of many
jobs in one call, and cancels a job.  It never talks to the computer itself:
every command goes through the transport's
:meth:`~plait.transports.contract.Transport.exec_command_wait`, so a plugin
never blocks the event loop and works the same on the local machine and over
SSH.

The engine's side of the bargain:

* It writes the script returned by :meth:`Scheduler.get_submit_script` into
  the job's working folder, then calls :meth:`Scheduler.submit` with that
  folder and the script's file name, and stores the returned job id.
* It polls with :meth:`Scheduler.query`, **one call for all the jobs** of a
  computer (schedulers punish clients that poll job by job), until a job is
  :attr:`JobState.DONE` or :attr:`JobState.FAILED`.
* It then looks for the exit-code file (:attr:`JobTemplate.exit_code_file`) in
  the working folder.  The script writes it as its very last act after the
  codes ran, so: file present means the codes ran to the end and the file
  holds their status; file missing means the job was killed (cancelled,
  wall time, node failure...) before the codes finished.  This works the same
  for every scheduler, including ``direct``, whose "scheduler" forgets a job
  the moment it ends.

Quoting rule: every path and every argument that a plugin puts on a command
line or in a script is quoted with :func:`shlex.quote`.  Names containing
spaces, quotes, ``$`` or ``*`` are fine everywhere; a newline or a NUL
character in a file name is refused with :class:`ValueError`, because no
scheduler header can carry it.
"""

from __future__ import annotations

import abc
import enum
import re
import shlex
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from plait.schedulers.errors import (
    SchedulerError,
    SchedulerOutputError,
    SchedulerRefusedError,
    SchedulerUnavailableError,
)

if TYPE_CHECKING:  # keep ``import plait.schedulers`` cheap: the transport package is only needed for typing
    from plait.transports.contract import CommandResult, Transport

__all__ = [
    "FAILURE_KINDS",
    "CodeRun",
    "JobInfo",
    "JobResources",
    "JobState",
    "JobTemplate",
    "Scheduler",
    "checked_job_id",
]

#: The values :attr:`JobInfo.failure` may take for a :attr:`JobState.FAILED` job.
FAILURE_KINDS = frozenset({"cancelled", "walltime", "out_of_memory", "node_failure", "failed"})

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class JobState(enum.StrEnum):
    """Where a job is, reduced to the four states the engine acts upon.

    * ``QUEUED``: waiting to start (pending, held, waiting for a dependency).
    * ``RUNNING``: started and not finished (includes suspended and completing).
    * ``DONE``: left the scheduler normally, or vanished from its listing (a
      scheduler forgets finished jobs after a while; ``direct`` at once).
    * ``FAILED``: the scheduler itself says the job failed, was cancelled,
      timed out, ran out of memory or lost its node; :attr:`JobInfo.failure`
      says which.

    ``DONE`` and ``FAILED`` are final: the engine stops polling and looks for
    the exit-code file.
    """

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """True for ``DONE`` and ``FAILED``: the job will not change any more."""
        return self in (JobState.DONE, JobState.FAILED)


@dataclass(frozen=True)
class JobInfo:
    """What :meth:`Scheduler.query` knows about one job.

    Attributes:
        job_id: the id as returned by :meth:`Scheduler.submit`.
        state: the reduced state the engine acts upon.
        raw_state: the scheduler's own word (``"PENDING"``, ``"CANCELLED"``,
            ``"R"``, ``"Q"``, a ``ps`` STAT such as ``"Ss"``); ``""`` when the
            scheduler no longer lists the job.
        reason: the scheduler's own explanation, as printed (SLURM's ``%r``
            such as ``"Resources"`` or ``"None"``, PBS's ``comment``), or
            ``"not listed by the scheduler"`` for a vanished job.
        exit_code: the job's exit status, when the scheduler reports one.
        failure: for ``FAILED`` only, one of :data:`FAILURE_KINDS`.
        wallclock_seconds: the wall time used so far, when reported.
        queue: the partition or queue the job is in, when reported.
        num_machines: the number of nodes requested or allocated, when reported.
        node_list: the nodes the job runs on, in the scheduler's own notation.
    """

    job_id: str
    state: JobState
    raw_state: str
    reason: str | None = None
    exit_code: int | None = None
    failure: str | None = None
    wallclock_seconds: int | None = None
    queue: str | None = None
    num_machines: int | None = None
    node_list: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.state, JobState):
            object.__setattr__(self, "state", JobState(self.state))
        if self.failure is not None:
            if self.failure not in FAILURE_KINDS:
                raise ValueError(
                    f"JobInfo.failure must be one of {sorted(FAILURE_KINDS)}, not {self.failure!r}"
                )
            if self.state is not JobState.FAILED:
                raise ValueError(f"JobInfo.failure is only for FAILED jobs, not {self.state.name}")

    @classmethod
    def vanished(cls, job_id: str) -> JobInfo:
        """The answer for a job the scheduler does not list (any more): ``DONE``."""
        return cls(job_id=job_id, state=JobState.DONE, raw_state="", reason="not listed by the scheduler")


def _check_positive_int(owner: str, name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, not {value!r}")


@dataclass(frozen=True)
class JobResources:
    """The machines and processes a job asks for.

    ``num_mpiprocs_per_machine`` and ``tot_num_mpiprocs`` describe the same
    thing two ways; give either (or both, consistently) and the other is
    filled in: ``JobResources(num_machines=2, tot_num_mpiprocs=8)`` has
    ``num_mpiprocs_per_machine == 4``.  Leave both out to let the scheduler
    choose (then an ``mpirun_command`` that uses ``{tot_num_mpiprocs}`` is
    refused when the script is written).

    Raises:
        ValueError: a count is not a positive integer, or the counts disagree;
            the message names the field.
    """

    num_machines: int = 1
    num_mpiprocs_per_machine: int | None = None
    num_cores_per_mpiproc: int | None = None
    tot_num_mpiprocs: int | None = None

    def __post_init__(self) -> None:
        _check_positive_int("JobResources", "num_machines", self.num_machines, optional=False)
        for name in ("num_mpiprocs_per_machine", "num_cores_per_mpiproc", "tot_num_mpiprocs"):
            _check_positive_int("JobResources", name, getattr(self, name), optional=True)
        per_machine, total = self.num_mpiprocs_per_machine, self.tot_num_mpiprocs
        if per_machine is not None and total is not None:
            if total != self.num_machines * per_machine:
                raise ValueError(
                    f"JobResources.tot_num_mpiprocs={total} disagrees with num_machines={self.num_machines}"
                    f" x num_mpiprocs_per_machine={per_machine} (= {self.num_machines * per_machine})"
                )
        elif total is not None:
            if total % self.num_machines:
                raise ValueError(
                    f"JobResources.tot_num_mpiprocs={total} is not a multiple of"
                    f" num_machines={self.num_machines}"
                )
            object.__setattr__(self, "num_mpiprocs_per_machine", total // self.num_machines)
        elif per_machine is not None:
            object.__setattr__(self, "tot_num_mpiprocs", self.num_machines * per_machine)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobResources:
        """Build from a mapping such as the ``resources`` option of a calculation.

        Raises:
            ValueError: a key is not a field of :class:`JobResources` (all the
                unknown keys are named, with the accepted ones), or a value is invalid.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(
                f"unknown job resource(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(known)}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, int]:
        """The fields that are set, as plain JSON-able data (``from_dict`` reads it back)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _check_file_name(owner: str, name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{owner}.{name} must be a non-empty string, not {value!r}")
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"{owner}.{name} must not contain a newline or NUL character: {value!r}")


@dataclass(frozen=True)
class CodeRun:
    """One command the job runs, written as one line of the script.

    Every element of ``cmdline`` and every file name is quoted with
    :func:`shlex.quote`, so it reaches the program literally: no variable
    expansion, no globbing.  Put anything that needs the shell (``$HOME``,
    ``module load``) in :attr:`JobTemplate.prepend_text`.

    Attributes:
        cmdline: the executable and its arguments.
        stdin_name: file fed to standard input (``< name``).
        stdout_name: file receiving standard output (``> name``).
        stderr_name: file receiving standard error (``2> name``).
        join_files: send standard error where standard output goes (``2>&1``);
            excludes ``stderr_name``.
        withmpi: prefix the line with :attr:`JobTemplate.mpirun_command`.

    Raises:
        ValueError: empty ``cmdline``, a non-string argument, a NUL in an
            argument, a newline in a file name, or ``join_files`` with ``stderr_name``.
    """

    cmdline: list[str]
    stdin_name: str | None = None
    stdout_name: str | None = None
    stderr_name: str | None = None
    join_files: bool = False
    withmpi: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.cmdline, str) or not isinstance(self.cmdline, Sequence):
            raise ValueError(f"CodeRun.cmdline must be a list of strings, not {self.cmdline!r}")
        object.__setattr__(self, "cmdline", list(self.cmdline))
        if not self.cmdline:
            raise ValueError("CodeRun.cmdline must not be empty: it needs at least the executable")
        for arg in self.cmdline:
            if not isinstance(arg, str):
                raise ValueError(f"CodeRun.cmdline must hold strings only, not {arg!r}")
            if "\0" in arg:
                raise ValueError(f"CodeRun.cmdline argument contains a NUL character: {arg!r}")
        for name in ("stdin_name", "stdout_name", "stderr_name"):
            _check_file_name("CodeRun", name, getattr(self, name), optional=True)
        if self.join_files and self.stderr_name is not None:
            raise ValueError(
                "CodeRun.join_files sends standard error to standard output; do not also give stderr_name"
            )


def _default_mpirun_command() -> list[str]:
    return ["mpirun", "-np", "{tot_num_mpiprocs}"]


@dataclass(frozen=True)
class JobTemplate:
    """Everything a scheduler needs to write a job script.

    Attributes:
        job_name: shown by the scheduler; each plugin sanitises it to what its
            scheduler accepts.
        resources: machines and processes (see :class:`JobResources`).
        max_wallclock_seconds: wall-time limit; ``None`` leaves the scheduler's default.
        queue_name: partition (SLURM) or queue (PBS).
        account: account or project charged for the job.
        qos: quality of service (SLURM).
        max_memory_kb: memory limit for the job (per node for SLURM), in KiB.
        custom_scheduler_commands: lines inserted verbatim right after the
            generated header (e.g. ``#SBATCH --constraint=gpu``).
        environment: variables exported before the codes run; values are
            quoted, so they are taken literally (no ``$`` expansion).
        prepend_text: shell lines run before the codes (``module load ...``).
        append_text: shell lines run after the codes and after the exit-code
            file is written.
        mpirun_command: the launcher put before a code with ``withmpi``; each
            element may use ``{tot_num_mpiprocs}``, ``{num_machines}``,
            ``{num_mpiprocs_per_machine}`` and ``{num_cores_per_mpiproc}``.
        code_runs: the codes, run one after the other.
        scheduler_stdout: file receiving the job's own standard output.
        scheduler_stderr: file receiving the job's own standard error.
        exit_code_file: file the script writes the codes' status into, as its
            last act after the codes (see the module docstring).

    Raises:
        ValueError: a field has a wrong type or value; the message names the field.
    """

    job_name: str = "plait-job"
    resources: JobResources = field(default_factory=JobResources)
    max_wallclock_seconds: int | None = None
    queue_name: str | None = None
    account: str | None = None
    qos: str | None = None
    max_memory_kb: int | None = None
    custom_scheduler_commands: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    prepend_text: str = ""
    append_text: str = ""
    mpirun_command: list[str] = field(default_factory=_default_mpirun_command)
    code_runs: tuple[CodeRun, ...] = ()
    scheduler_stdout: str = "_scheduler-stdout.txt"
    scheduler_stderr: str = "_scheduler-stderr.txt"
    exit_code_file: str = ".plait-exit-code"

    def __post_init__(self) -> None:
        if not isinstance(self.job_name, str):
            raise ValueError(f"JobTemplate.job_name must be a string, not {self.job_name!r}")
        if not isinstance(self.resources, JobResources):
            raise ValueError(
                "JobTemplate.resources must be a JobResources (use JobResources.from_dict for a mapping),"
                f" not {self.resources!r}"
            )
        _check_positive_int("JobTemplate", "max_wallclock_seconds", self.max_wallclock_seconds, optional=True)
        _check_positive_int("JobTemplate", "max_memory_kb", self.max_memory_kb, optional=True)
        for name in ("queue_name", "account", "qos"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"JobTemplate.{name} must be a non-empty string or None, not {value!r}")
        for name in ("custom_scheduler_commands", "prepend_text", "append_text"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"JobTemplate.{name} must be a string, not {getattr(self, name)!r}")
        if not isinstance(self.environment, Mapping):
            raise ValueError(f"JobTemplate.environment must be a mapping, not {self.environment!r}")
        for key, value in self.environment.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ValueError(f"JobTemplate.environment has an invalid variable name {key!r}")
            if not isinstance(value, str) or "\0" in value:
                raise ValueError(
                    f"JobTemplate.environment[{key!r}] must be a string without NUL, not {value!r}"
                )
        if isinstance(self.mpirun_command, str) or not all(isinstance(a, str) for a in self.mpirun_command):
            raise ValueError(
                f"JobTemplate.mpirun_command must be a list of strings, not {self.mpirun_command!r}"
            )
        object.__setattr__(self, "mpirun_command", list(self.mpirun_command))
        object.__setattr__(self, "code_runs", tuple(self.code_runs))
        for run in self.code_runs:
            if not isinstance(run, CodeRun):
                raise ValueError(f"JobTemplate.code_runs must hold CodeRun objects, not {run!r}")
        for name in ("scheduler_stdout", "scheduler_stderr", "exit_code_file"):
            _check_file_name("JobTemplate", name, getattr(self, name), optional=False)


_MPIRUN_PLACEHOLDERS = (
    "tot_num_mpiprocs",
    "num_machines",
    "num_mpiprocs_per_machine",
    "num_cores_per_mpiproc",
)


def _fill_mpirun(template: JobTemplate) -> list[str]:
    """The mpirun command with its placeholders replaced from the resources."""
    values = {name: getattr(template.resources, name) for name in _MPIRUN_PLACEHOLDERS}
    filled = []
    for arg in template.mpirun_command:
        for _, name, _, _ in string.Formatter().parse(arg):
            if name is None:
                continue
            if name not in values:
                raise ValueError(
                    f"JobTemplate.mpirun_command uses an unknown placeholder {{{name}}} in {arg!r};"
                    f" known: {', '.join('{' + n + '}' for n in _MPIRUN_PLACEHOLDERS)}"
                )
            if values[name] is None:
                raise ValueError(
                    f"JobTemplate.mpirun_command uses {{{name}}} but the job resources do not set it"
                    " (give num_mpiprocs_per_machine or tot_num_mpiprocs)"
                )
        filled.append(arg.format(**values))
    return filled


class Scheduler(abc.ABC):
    """Base class of every scheduler plugin.

    A plugin implements :meth:`_header`, :meth:`submit`, :meth:`query` and
    :meth:`kill`, may add shell lines with :meth:`_preamble`, and registers
    its class under the ``plait.schedulers`` entry point group.  Instances
    hold only options, no connection and no job list, so one instance may
    serve every transport and every job concurrently.

    Options are keyword arguments of the constructor; a plugin declares the
    ones it accepts, with their defaults, in :attr:`default_options`.  Every
    plugin accepts ``command_timeout`` (seconds a scheduler command may take
    before the transport kills it and raises its retryable
    ``TransportTimeoutError``; ``None`` for no limit).

    Errors: a failed scheduler command raises :class:`SchedulerError` with
    ``retryable`` set (see :mod:`plait.schedulers.errors`).  A plugin lists
    what its tools print when the scheduler is unreachable or busy
    (:attr:`unavailable_pattern`) and when it refuses a request
    (:attr:`refused_pattern`), and builds its errors with
    :meth:`_command_error`; or it raises a subclass, or passes
    ``retryable=``, itself.
    """

    #: name under the ``plait.schedulers`` entry point group.
    plugin_name: ClassVar[str] = ""
    #: the options this plugin accepts, with their defaults.
    default_options: ClassVar[Mapping[str, Any]] = {"command_timeout": 120.0}
    #: what a failed command prints when the scheduler cannot be reached or is busy now (retryable);
    #: searched in its stderr and stdout by :meth:`_command_error`, before ``refused_pattern``.
    unavailable_pattern: ClassVar[re.Pattern[str] | None] = None
    #: what a failed command prints when the scheduler refuses the request itself (not retryable).
    refused_pattern: ClassVar[re.Pattern[str] | None] = None

    def __init__(self, **options: Any) -> None:
        """Keep the options.

        Raises:
            ValueError: an option this plugin does not know (naming it and the known ones).
        """
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for the {self.plugin_name!r}"
                f" scheduler; accepted: {', '.join(sorted(self.default_options)) or 'none'}"
            )
        timeout = options.get("command_timeout", self.default_options.get("command_timeout"))
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ValueError(
                f"scheduler option command_timeout={timeout!r} must be a number of seconds > 0, or None"
            )
        self.options: dict[str, Any] = {**self.default_options, **options}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    # -- launch-time checks ----------------------------------------------------------------------
    def validate_job_options(self, options: Mapping[str, Any]) -> None:
        """Refuse calculation options this scheduler cannot honour, before anything is stored.

        ``options`` are a calculation's ``metadata.options`` (aiida-core's names:
        ``resources``, ``max_wallclock_seconds``, ``max_memory_kb``,
        ``environment_variables``, ``queue_name``, ``scheduler_stdout``...).  The
        engine calls this when a calculation is launched, so a bad value is one
        error line at launch instead of a job that fails after it was recorded.
        A plugin with extra limits overrides it and calls ``super()`` first (the
        ``direct`` plugin refuses more than one machine).  Options it does not
        know are ignored: the calculation's spec checks their types.

        Checked here: ``resources`` (see :class:`JobResources`), a wall time and a
        memory limit that are positive integers, environment variable names that
        a shell accepts and values without NUL, queue/account/qos names and
        file names without a newline or NUL, texts without NUL.

        Raises:
            InvalidJobOptionError: naming the option, its value and the reason.
        """
        from plait.schedulers.errors import InvalidJobOptionError

        resources = options.get("resources")
        if resources is not None:
            if not isinstance(resources, Mapping):
                raise InvalidJobOptionError("resources", resources, "must be a dict")
            try:
                JobResources.from_dict(resources)
            except (ValueError, TypeError) as exc:
                raise InvalidJobOptionError("resources", dict(resources), str(exc)) from None
        for name in ("max_wallclock_seconds", "max_memory_kb"):
            value = options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidJobOptionError(name, value, "must be a positive integer (or not given)")
        environment = options.get("environment_variables")
        if environment is not None:
            if not isinstance(environment, Mapping):
                raise InvalidJobOptionError("environment_variables", environment, "must be a dict")
            for key, value in environment.items():
                if not isinstance(key, str) or not _ENV_NAME.match(key):
                    raise InvalidJobOptionError(
                        "environment_variables",
                        key,
                        "is not a valid variable name (letters, digits and _, not starting with a digit)",
                    )
                if isinstance(value, bool) or not isinstance(value, (str, int, float)) or "\0" in str(value):
                    raise InvalidJobOptionError(
                        f"environment_variables[{key!r}]", value, "must be a string without NUL"
                    )
        for name in (
            "queue_name",
            "account",
            "qos",
            "scheduler_stdout",
            "scheduler_stderr",
            "input_filename",
            "output_filename",
        ):
            value = options.get(name)
            if isinstance(value, str) and ("\n" in value or "\r" in value or "\0" in value):
                raise InvalidJobOptionError(name, value, "must not contain a newline or NUL character")
        for name in ("custom_scheduler_commands", "prepend_text", "append_text"):
            value = options.get(name)
            if isinstance(value, str) and "\0" in value:
                raise InvalidJobOptionError(name, value, "must not contain a NUL character")
        for name in ("additional_retrieve_list",):
            for item in options.get(name) or ():
                # a name, or the (source glob, target folder, depth) form; the engine checks the rest
                names = item[:2] if isinstance(item, list | tuple) and len(item) == 3 else [item]
                for text in names:
                    if not isinstance(text, str) or "\n" in text or "\r" in text or "\0" in text:
                        raise InvalidJobOptionError(
                            name, item, "must hold file names without a newline or NUL character"
                        )
                if not names[0]:
                    raise InvalidJobOptionError(name, item, "must hold file names, not an empty name")
        self._check_expressible(options)

    #: the calculation option behind each :class:`JobTemplate` field whose name differs.
    _OPTION_OF_FIELD: ClassVar[Mapping[str, str]] = {"environment": "environment_variables"}

    def _check_expressible(self, options: Mapping[str, Any]) -> None:
        """Build the template the options describe and this plugin's script header from it.

        The same checks as when the job is written after it was stored (the
        template's field checks, then :meth:`_header` and :meth:`_preamble`,
        which refuse what this scheduler cannot express), done at launch.

        Raises:
            InvalidJobOptionError: naming the option the template or the plugin refused.
        """
        from plait.schedulers.errors import InvalidJobOptionError

        fields_of_options = {
            name: options[name]
            for name in (
                "max_wallclock_seconds",
                "queue_name",
                "account",
                "qos",
                "max_memory_kb",
                "custom_scheduler_commands",
                "prepend_text",
                "append_text",
                "scheduler_stdout",
                "scheduler_stderr",
            )
            if options.get(name) is not None
        }
        environment = options.get("environment_variables") or {}
        try:
            template = JobTemplate(
                resources=JobResources.from_dict(options.get("resources") or {}),
                environment={str(key): str(value) for key, value in environment.items()},
                **fields_of_options,
            )
            self._header(template)
            self._preamble(template)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            match = re.match(r"(?:JobTemplate|JobResources)\.(\w+)", message)
            field_name = match.group(1) if match else ""
            option = self._OPTION_OF_FIELD.get(field_name, field_name)
            if message.startswith("JobResources") or option not in options:
                option = "resources" if message.startswith("JobResources") else (option or "options")
            value = options.get(option, options) if option != "options" else dict(options)
            raise InvalidJobOptionError(option, value, f"is refused: {message}") from None

    def failure_from_output(self, stdout: str, stderr: str) -> str | None:
        """What the job's own scheduler output says about how it ended, or None.

        Called by the engine after a job left the scheduler without writing its
        exit-code file, with the retrieved ``scheduler_stdout`` and
        ``scheduler_stderr``; returns one of :data:`FAILURE_KINDS` when the
        output shows why (aiida-core's ``Scheduler.parse_output``, reduced to the
        failure kind).  The ``direct`` plugin recognises the line its wall-time
        wrapper writes.  The default knows nothing: ``None``.
        """
        return None

    # -- the script ------------------------------------------------------------------------------
    def get_submit_script(self, template: JobTemplate) -> str:
        """The whole job script for ``template``, as text.

        Its parts, in order:

        1. ``#!/bin/bash`` and the scheduler header (:meth:`_header`);
        2. ``custom_scheduler_commands``, verbatim;
        3. the plugin's preamble (:meth:`_preamble`, e.g. PBS's ``cd`` to the
           submission folder), then the job's folder is remembered;
        4. ``export NAME='value'`` for each environment variable;
        5. ``prepend_text``;
        6. each code run: quoted command line, mpirun prefix when ``withmpi``,
           quoted redirections.  After each, the script remembers the first
           non-zero exit status;
        7. ``echo "$status" > <exit_code_file>``: written only when the script
           gets here, so a job killed while its codes run leaves no such file.
           A relative name is taken in the job's folder even if
           ``prepend_text`` changed directory;
        8. ``append_text``;
        9. ``exit`` with the codes' status, so the scheduler's own accounting
           (SLURM's FAILED, PBS's Exit_status) agrees with the file.

        The script does not use ``set -e``: every code runs even if an
        earlier one failed, and the exit-code file must be written whatever
        the codes returned.

        Raises:
            ValueError: the template asks for something this scheduler cannot
                express, or ``mpirun_command`` uses a placeholder the resources do not set.
        """
        lines = ["#!/bin/bash"]
        lines.extend(self._header(template))
        if template.custom_scheduler_commands.strip():
            lines.append(template.custom_scheduler_commands.rstrip("\n"))
        lines.append("")
        lines.extend(self._preamble(template))
        lines.append('__plait_workdir="$PWD"')
        lines.append("")
        if template.environment:
            lines.extend(f"export {key}={shlex.quote(value)}" for key, value in template.environment.items())
            lines.append("")
        if template.prepend_text.strip():
            lines.append(template.prepend_text.rstrip("\n"))
            lines.append("")

        mpirun = _fill_mpirun(template) if any(run.withmpi for run in template.code_runs) else []
        lines.append("__plait_status=0")
        for run in template.code_runs:
            lines.append(self._code_line(run, mpirun))
            lines.append('__plait_rc=$?; [ "$__plait_status" -ne 0 ] || __plait_status=$__plait_rc')
        exit_code_file = shlex.quote(template.exit_code_file)
        if not template.exit_code_file.startswith("/"):
            exit_code_file = f'"$__plait_workdir"/{exit_code_file}'
        lines.append(f'echo "$__plait_status" > {exit_code_file}')
        lines.append("")
        if template.append_text.strip():
            lines.append(template.append_text.rstrip("\n"))
            lines.append("")
        lines.append('exit "$__plait_status"')
        return "\n".join(lines) + "\n"

    @staticmethod
    def _code_line(run: CodeRun, mpirun: list[str]) -> str:
        words = [*(mpirun if run.withmpi else []), *run.cmdline]
        line = " ".join(shlex.quote(word) for word in words)
        if run.stdin_name is not None:
            line += f" < {shlex.quote(run.stdin_name)}"
        if run.stdout_name is not None:
            line += f" > {shlex.quote(run.stdout_name)}"
        if run.join_files:
            line += " 2>&1"
        elif run.stderr_name is not None:
            line += f" 2> {shlex.quote(run.stderr_name)}"
        return line

    @abc.abstractmethod
    def _header(self, template: JobTemplate) -> list[str]:
        """The scheduler directives (``#SBATCH ...``, ``#PBS ...``), one line each, no shebang.

        Raises:
            ValueError: the template asks for something this scheduler cannot express.
        """

    def _preamble(self, template: JobTemplate) -> list[str]:
        """Shell lines the plugin needs before anything of the user's (none by default)."""
        return []

    # -- talking to the scheduler -----------------------------------------------------------------
    async def _run(self, transport: Transport, command: str, *, workdir: str | None = None) -> CommandResult:
        """Run ``command`` through the transport with this plugin's ``command_timeout``.

        Transport errors propagate untouched (the engine retries the retryable ones).
        """
        return await transport.exec_command_wait(
            command, workdir=workdir, timeout=self.options.get("command_timeout")
        )

    def _command_error(self, reason: str, command: str, result: CommandResult) -> SchedulerError:
        """The error for a scheduler command that failed, of the class its output calls for.

        In order: :attr:`unavailable_pattern` found in stderr or stdout gives
        :class:`SchedulerUnavailableError` (retryable); exit code 127 or
        "command not found" (the scheduler's tool is not installed, or not on
        the remote shell's PATH) a :class:`SchedulerError` that is not
        retryable; :attr:`refused_pattern` a :class:`SchedulerRefusedError`
        (not retryable); anything else a plain :class:`SchedulerError`
        (retryable: the cause is unknown).  Raise what it returns.
        """
        text = f"{result.stderr}\n{result.stdout}"
        fields: dict[str, Any] = {
            "command": command,
            "returncode": result.returncode,
            "stderr": result.stderr,
            "stdout": result.stdout,
        }
        if self.unavailable_pattern is not None and self.unavailable_pattern.search(text):
            return SchedulerUnavailableError(reason, **fields)
        if result.returncode == 127 or "command not found" in result.stderr:
            return SchedulerError(reason, retryable=False, **fields)
        if self.refused_pattern is not None and self.refused_pattern.search(text):
            return SchedulerRefusedError(reason, **fields)
        return SchedulerError(reason, **fields)

    async def _submit_printing_id(
        self, transport: Transport, workdir: str, command: str, job_id_of: Callable[[str], str]
    ) -> str:
        """Run a submit command whose last output line carries the job id; return the id.

        ``job_id_of`` turns that line into the id, or returns "" when it holds none.

        Raises:
            SchedulerError: the command failed (classified by :meth:`_command_error`), or
                printed no job id (:class:`SchedulerOutputError`: the job may have been
                submitted, so it is not retried).
        """
        tool = command.split(None, 1)[0]
        result = await self._run(transport, command, workdir=workdir)
        if result.returncode != 0:
            raise self._command_error(f"{tool} refused the job", command, result)
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        job_id = job_id_of(lines[-1]) if lines else ""
        if not job_id:
            raise SchedulerOutputError(
                f"{tool} printed no job id (stdout {result.stdout!r})",
                command=command,
                returncode=result.returncode,
                stderr=result.stderr,
                stdout=result.stdout,
            )
        return job_id

    @abc.abstractmethod
    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        """Submit the script ``script_name`` that already sits in the folder ``workdir``.

        The job runs in ``workdir`` (relative names in the script are relative to it).

        Returns:
            the job id, as the scheduler names it (``"1234"``, ``"1234.server"``).

        Raises:
            SchedulerError: the scheduler refused the script (naming the command,
                its exit code and its standard error), or printed no job id.  Its
                ``retryable`` says whether submitting again may help: a refusal
                of the job itself (invalid partition, account, a rejected script)
                is a :class:`SchedulerRefusedError`, not retryable; an unreachable
                or busy scheduler a :class:`SchedulerUnavailableError`, retryable.
            TransportError: the transport failed (not wrapped).
        """

    @abc.abstractmethod
    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """The state of every job in ``job_ids``, with ONE scheduler command.

        Every requested id is a key of the result.  A job the scheduler does
        not list (any more) is ``JobInfo.vanished(job_id)``: ``DONE``, with
        ``raw_state=""`` and ``reason="not listed by the scheduler"``.
        Empty ``job_ids`` gives ``{}`` without running anything.

        Raises:
            SchedulerError: the scheduler command failed for another reason than
                unknown job ids (``retryable`` as for :meth:`submit`), or printed
                something that cannot be understood (:class:`SchedulerOutputError`).
            ValueError: a job id that this scheduler could never have returned.
            TransportError: the transport failed (not wrapped).
        """

    @abc.abstractmethod
    async def kill(self, transport: Transport, job_id: str) -> None:
        """Cancel the job ``job_id``; a job that already finished or is unknown is not an error.

        Returns once the scheduler accepted the request; the job may take a
        moment to leave (query it to see it ``FAILED``/``DONE``).

        Raises:
            SchedulerError: the scheduler refused to cancel a job it still has
                (a denied permission: :class:`SchedulerRefusedError`).
            TransportError: the transport failed (not wrapped).
        """

    # -- the probe of ``plait computer test`` ------------------------------------------------------
    #: a job id this scheduler accepts but will never have given out, queried by the default
    #: :meth:`probe`: the built-ins use ``"999999999"`` (Linux pids stop at 4194304, SLURM's MaxJobId
    #: at 67043328, so every scheduler answers "not listed" for it).  ``None`` (the default) means
    #: the plugin cannot be probed unless it overrides :meth:`probe` itself.
    probe_job_id: ClassVar[str | None] = None

    @property
    def can_probe(self) -> bool:
        """True when :meth:`probe` can ask the scheduler something (a probe job id, or an own probe)."""
        return self.probe_job_id is not None or type(self).probe is not Scheduler.probe

    async def probe(self, transport: Transport) -> str:
        """Ask the scheduler something harmless, to show that it answers; nothing is submitted.

        ``plait computer test`` calls it on the computer's transport.  The
        default queries :attr:`probe_job_id`, a job that cannot exist, with
        :meth:`query`, so it runs the plugin's real status command; a plugin
        whose ids have no such value overrides this method instead (e.g. with
        its tool's version command).

        Returns:
            one line saying what the scheduler answered.

        Raises:
            NotImplementedError: the plugin has no probe (:attr:`can_probe` is False).
            SchedulerError: the scheduler command failed (as for :meth:`query`).
            TransportError: the transport failed (not wrapped).
        """
        if self.probe_job_id is None:
            raise NotImplementedError(
                f"the {self.plugin_name or type(self).__name__} scheduler plugin has no probe"
                " (set probe_job_id or override probe)"
            )
        answers = await self.query(transport, [self.probe_job_id])
        info = answers.get(self.probe_job_id)
        if info is None:
            raise SchedulerOutputError(
                f"the status query of job {self.probe_job_id} did not report that job",
                command="query",
                returncode=0,
            )
        return f"the {self.plugin_name} scheduler answered a status query (nothing was submitted)"


def checked_job_id(job_id: str, pattern: re.Pattern[str], kind: str) -> str:
    """``job_id`` when ``pattern`` matches it whole, for a scheduler plugin about to put it in a command.

    Raises:
        ValueError: ``job_id`` is not a str of the form ``pattern`` describes (``kind`` names the
            scheduler in the message: "'x' is not a PBS job id"), before anything runs.
    """
    if not isinstance(job_id, str) or not pattern.match(job_id):
        raise ValueError(f"{job_id!r} is not {kind} job id")
    return job_id
