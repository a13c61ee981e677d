"""Errors of the scheduler layer.

A scheduler plugin raises :class:`SchedulerError` when the *scheduler* refuses
or fails a request (``sbatch`` rejects a script, ``squeue`` cannot reach its
controller, ``qstat`` prints something that cannot be understood).  The error
carries the command line, its exit code and its standard error, so that the
message a user reads in the process report is enough to reproduce the problem
by hand on the cluster.

Every error says whether trying again may help: :attr:`SchedulerError.retryable`,
as :class:`plait.transports.errors.TransportError` does.  The engine retries a
retryable error with a growing pause (a bounded number of times, then it
pauses the process), and pauses at once, with the reason, on one that is not.
The subclasses carry the default of each kind of failure:

* :class:`SchedulerError` itself, retryable: a failure whose cause the
  plugin does not know;
* :class:`SchedulerUnavailableError`, retryable: the scheduler cannot be
  reached or is too busy now (controller down or failing over, a socket
  time-out, "temporarily unable to accept job", an inactive partition or a
  disabled queue, a queue that is full);
* :class:`SchedulerRefusedError`, not retryable: the scheduler understood
  the request and refuses it (invalid partition, account, qos or resources,
  a limit the job violates, a script it rejects, a permission it denies).
  The same request will be refused again: the user must change something;
* :class:`SchedulerOutputError`, not retryable: the command printed what the
  plugin cannot read (a format it does not know), or a submit printed no
  job id (submitting again could run the job twice).

An unclassified failure is retryable because the engine's retries are
bounded: a persistent one ends as a pause with its message, as a refusal
does, only a few attempts later.  A plugin that knows better passes
``retryable=`` explicitly (a scheduler command that is not installed, exit
code 127, is ``SchedulerError(..., retryable=False)``).  Plugins usually build
their errors with :meth:`plait.schedulers.Scheduler._command_error`, which
picks the class from the command's output and the plugin's
``unavailable_pattern`` and ``refused_pattern``.

A failure of the *transport* underneath (a dropped SSH connection, a command
that exceeded the plugin's ``command_timeout``) is not wrapped: it propagates
as the transport's own :class:`~plait.transports.errors.TransportError`
(``TransportTimeoutError`` for a time-out), which is retryable too.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "InvalidJobOptionError",
    "SchedulerError",
    "SchedulerOutputError",
    "SchedulerRefusedError",
    "SchedulerUnavailableError",
]


class SchedulerError(Exception):
    """The scheduler refused or failed a command, or printed something unreadable.

    Attributes:
        command: the exact command line that was run (as passed to the transport).
        returncode: its exit code (``0`` when the command succeeded but its output
            could not be understood).
        stderr: its standard error, as printed.
        stdout: its standard output, when that helps to understand the failure.
        reason: the human-readable reason, without the command decoration.
        retryable: True when the same command may succeed if tried again later
            (the scheduler was unreachable or busy, or the cause is unknown);
            False when it cannot (the scheduler refused the request, its output
            cannot be read, its command is missing).  The class gives the
            default; the ``retryable`` argument overrides it for one error.
    """

    #: default for the class; an instance may override it.
    retryable: bool = True

    def __init__(
        self,
        reason: str,
        *,
        command: str,
        returncode: int,
        stderr: str = "",
        stdout: str = "",
        retryable: bool | None = None,
    ) -> None:
        self.reason = reason
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self._format())

    def _format(self) -> str:
        message = f"{self.reason} (command `{self.command}` exited with {self.returncode}"
        detail = self.stderr.strip()
        if detail:
            message += f": {detail}"
        return message + ")"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # keep the structured fields when copied
        return (
            _rebuild,
            (
                type(self),
                self.reason,
                self.command,
                self.returncode,
                self.stderr,
                self.stdout,
                self.retryable,
            ),
        )


def _rebuild(
    cls: type[SchedulerError],
    reason: str,
    command: str,
    returncode: int,
    stderr: str,
    stdout: str,
    retryable: bool | None = None,
) -> SchedulerError:
    return cls(
        reason, command=command, returncode=returncode, stderr=stderr, stdout=stdout, retryable=retryable
    )


class SchedulerUnavailableError(SchedulerError):
    """The scheduler cannot take the request now (unreachable, timing out, busy, queue inactive): retry."""

    retryable = True


class SchedulerRefusedError(SchedulerError):
    """The scheduler refuses the request itself (invalid option, limit, script, permission): do not retry."""

    retryable = False


class SchedulerOutputError(SchedulerError):
    """The command's output cannot be understood, or holds no job id: do not retry."""

    retryable = False


class InvalidJobOptionError(ValueError):
    """A calculation option the scheduler cannot honour, refused at launch (nothing stored).

    Raised by :meth:`plait.schedulers.Scheduler.validate_job_options`.

    Attributes:
        option: the option's name under ``metadata.options`` (``"max_wallclock_seconds"``).
        value: the value refused.
        reason: why, in a few words.
    """

    def __init__(self, option: str, value: Any, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"{option}={value!r} {reason}")
