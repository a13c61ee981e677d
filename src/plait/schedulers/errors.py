"""Errors of the scheduler layer.

A scheduler plugin raises :class:`SchedulerError` when the *scheduler* refuses
or fails a request (``sbatch`` rejects a script, ``squeue`` cannot reach its
controller, ``qstat`` prints something that cannot be understood).  The error
carries the command line, its exit code and its standard error, so that the
message a user reads in the process report is enough to reproduce the problem
by hand on the cluster.

A failure of the *transport* underneath (a dropped SSH connection, a command
time-out) is not wrapped: it propagates as the transport's own
:class:`plait.transports.errors.TransportError`, whose ``retryable`` flag tells
the engine to retry or pause instead of failing the calculation.
"""

from __future__ import annotations

__all__ = ["SchedulerError"]


class SchedulerError(Exception):
    """The scheduler refused or failed a command, or printed something unreadable.

    Attributes:
        command: the exact command line that was run (as passed to the transport).
        returncode: its exit code (``0`` when the command succeeded but its output
            could not be understood).
        stderr: its standard error, as printed.
        stdout: its standard output, when that helps to understand the failure.
        reason: the human-readable reason, without the command decoration.
    """

    def __init__(
        self,
        reason: str,
        *,
        command: str,
        returncode: int,
        stderr: str = "",
        stdout: str = "",
    ) -> None:
        self.reason = reason
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        super().__init__(self._format())

    def _format(self) -> str:
        message = f"{self.reason} (command `{self.command}` exited with {self.returncode}"
        detail = self.stderr.strip()
        if detail:
            message += f": {detail}"
        return message + ")"

    def __reduce__(self):  # keep the structured fields when copied between processes/threads
        return (
            _rebuild,
            (type(self), self.reason, self.command, self.returncode, self.stderr, self.stdout),
        )


def _rebuild(
    cls: type[SchedulerError], reason: str, command: str, returncode: int, stderr: str, stdout: str
) -> SchedulerError:
    return cls(reason, command=command, returncode=returncode, stderr=stderr, stdout=stdout)
