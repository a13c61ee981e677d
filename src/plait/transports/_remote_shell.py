"""Command lines that the SSH plugins send, and how they read the outcome.

The SSH server hands a command line to the user's login shell, so every
piece that plait adds is quoted with :func:`shlex.quote`, and the caller's
command itself runs under ``bash -c`` as the contract says.

* ``workdir``: the script first does ``cd -- <workdir>``; if that fails it
  prints a marker with a random token on stderr and exits, so the plugin
  can tell "no such working directory" from the command's own failure.
* ``timeout``: the command runs under GNU ``timeout``, which runs it in a
  process group of its own and kills the whole group when time is up (exit
  code 124, or 137 if it had to use SIGKILL).  Without ``timeout`` on the
  remote side the command runs as it is and the plugin's own deadline
  still ends the wait.
* Remote copies and deletions (``cp -a -T``, ``rm -rf``) run with
  ``LC_ALL=C`` so that their error messages can be classified.
"""

from __future__ import annotations

import secrets
import shlex

from .contract import CommandResult
from .errors import (
    IsADirectoryTransportError,
    NotADirectoryTransportError,
    PathExistsError,
    PathNotFoundError,
    PermissionDeniedError,
    TransportError,
)

#: seconds granted after SIGTERM before ``timeout`` sends SIGKILL.
KILL_AFTER = 2.0
#: extra seconds the plugin waits beyond ``timeout`` before closing the channel itself.
CLIENT_GRACE = KILL_AFTER + 8.0

_WORKDIR_MARKER = "plait: cannot enter the working directory"


def command_line(command: str, workdir: str | None, timeout: float | None) -> tuple[str, str | None]:
    """The line to send for ``exec_command_wait``, and the workdir marker to look for (or None)."""
    script = command
    marker = None
    if workdir is not None:
        marker = f"{_WORKDIR_MARKER} [{secrets.token_hex(8)}]"
        script = (
            f"cd -- {shlex.quote(workdir)} 2>/dev/null || "
            f"{{ printf '%s' {shlex.quote(marker)} >&2; exit 1; }}\n{command}"
        )
    run = f"bash -c {shlex.quote(script)}"
    if timeout is None:
        return run, marker
    limited = f"timeout --kill-after={KILL_AFTER:g} {max(timeout, 0.001):.3f} {run}"
    chooser = f"if command -v timeout >/dev/null 2>&1; then exec {limited}; else exec {run}; fi"
    return f"bash -c {shlex.quote(chooser)}", marker


def workdir_failed(result: CommandResult, marker: str | None) -> bool:
    """True when the command never ran because ``cd`` into the workdir failed."""
    return marker is not None and result.returncode == 1 and result.stderr == marker


def timed_out(returncode: int, elapsed: float, timeout: float | None) -> bool:
    """True when ``timeout`` ended the command (exit 124/137 once the time had passed)."""
    return timeout is not None and returncode in (124, 137) and elapsed >= timeout


def copy_command(source: str, destination: str) -> str:
    """``cp -a -T``: links stay links, a folder merges into an existing folder (GNU coreutils)."""
    return f"LC_ALL=C cp -a -T -- {shlex.quote(source)} {shlex.quote(destination)}"


def remove_tree_command(path: str) -> str:
    return f"LC_ALL=C rm -rf -- {shlex.quote(path)}"


def id_command() -> str:
    return "id -un"


def command_failure(result: CommandResult, *, host: str, operation: str, path: str) -> TransportError:
    """Classify a failed ``cp``/``rm`` from its (``LC_ALL=C``) stderr."""
    text = result.stderr.strip() or f"exit code {result.returncode}"
    error_class: type[TransportError] = TransportError
    if "Permission denied" in text or "Operation not permitted" in text or "Read-only" in text:
        error_class = PermissionDeniedError
    elif "cannot overwrite directory" in text:
        error_class = IsADirectoryTransportError
    elif "cannot overwrite non-directory" in text or "Not a directory" in text:
        error_class = NotADirectoryTransportError
    elif "No such file or directory" in text:
        error_class = PathNotFoundError
    elif "File exists" in text:
        error_class = PathExistsError
    return error_class(text, host=host, operation=operation, path=path)
