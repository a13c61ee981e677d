"""Transports for testing a scheduler plugin without a scheduler: a scripted fake and a counting wrapper.

A scheduler plugin only ever calls
:meth:`~plait.transports.contract.Transport.exec_command_wait` (see
:mod:`plait.schedulers.contract`), so:

* :class:`FakeTransport` is a complete :class:`~plait.transports.contract.Transport`
  whose ``exec_command_wait`` answers each command from a script of answers
  (by command prefix or predicate) and records every call, so a test can check
  the exact command lines a plugin ran and feed it captured scheduler output.
  Every other method fails the test: a scheduler plugin that reaches for files
  breaks the contract.
* :class:`CountingTransport` wraps a real, open transport (a
  :class:`~plait.transports.delegating.DelegatingTransport`) and records the
  commands that went through it, to prove that a status query of many jobs is
  one command.

Both are real ``Transport`` objects, so they are passed wherever the engine
passes one, and type checkers agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from plait.transports.contract import CommandResult, FileAttributes, LocalPath, Transport
from plait.transports.delegating import DelegatingTransport

__all__ = ["Call", "CountingTransport", "FakeTransport"]


@dataclass
class Call:
    """One ``exec_command_wait`` call, as :class:`FakeTransport` recorded it."""

    command: str
    stdin: str | bytes | None
    workdir: str | None
    timeout: float | None


class FakeTransport(Transport):
    """A transport whose commands are answered from a script; nothing is run.

    Build the script with :meth:`on` (a result for a command prefix) and
    :meth:`raising` (an exception, e.g. a ``TransportTimeoutError``); the
    first answer whose prefix or predicate matches the command line wins.
    The fake is open from the start (a scheduler plugin never opens a
    transport) and stays usable after :meth:`close`.

    Raises:
        AssertionError: from ``exec_command_wait``, for a command no answer
            matches (the plugin ran something the test did not expect); from
            every file method, which a scheduler plugin must not use.
    """

    plugin_name = "fake"

    def __init__(self, hostname: str = "fake") -> None:
        self.hostname = hostname
        self.answers: list[tuple[Callable[[str], bool], CommandResult | Exception]] = []
        self.calls: list[Call] = []

    def __repr__(self) -> str:
        return f"FakeTransport(hostname={self.hostname!r}, {len(self.calls)} call(s))"

    def on(self, prefix: str, returncode: int = 0, stdout: str = "", stderr: str = "") -> FakeTransport:
        """Answer a command starting with ``prefix`` (``""``: any command) with this result."""
        self.answers.append(
            (lambda command: command.startswith(prefix), CommandResult(returncode, stdout, stderr))
        )
        return self

    def when(self, matches: Callable[[str], bool], answer: CommandResult | Exception) -> FakeTransport:
        """Answer (or raise) ``answer`` for a command line ``matches`` accepts."""
        self.answers.append((matches, answer))
        return self

    def raising(self, prefix: str, error: Exception) -> FakeTransport:
        """Raise ``error`` for a command starting with ``prefix`` (a transport failure)."""
        self.answers.append((lambda command: command.startswith(prefix), error))
        return self

    @property
    def commands(self) -> list[str]:
        """The command lines run so far, in order."""
        return [call.command for call in self.calls]

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Record the call and return (or raise) the first matching answer."""
        self.calls.append(Call(command, stdin, workdir, timeout))
        for matches, answer in self.answers:
            if matches(command):
                if isinstance(answer, Exception):
                    raise answer
                return answer
        raise AssertionError(f"unexpected command: {command!r}")

    async def whoami(self) -> str:
        return "fake-user"

    # -- lifecycle: always open ----------------------------------------------------------------------
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def is_open(self) -> bool:
        return True

    # -- what a scheduler plugin must never call -----------------------------------------------------
    def _not_for_schedulers(self, operation: str) -> NoReturn:
        raise AssertionError(
            f"a scheduler plugin called transport.{operation}(); it may only run commands (exec_command_wait)"
        )

    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        self._not_for_schedulers("mkdir")

    async def listdir(self, path: str = ".", pattern: str | None = None) -> list[str]:
        self._not_for_schedulers("listdir")

    async def listdir_with_attributes(
        self, path: str = ".", pattern: str | None = None
    ) -> dict[str, FileAttributes]:
        self._not_for_schedulers("listdir_with_attributes")

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        self._not_for_schedulers("stat")

    async def exists(self, path: str) -> bool:
        self._not_for_schedulers("exists")

    async def isdir(self, path: str) -> bool:
        self._not_for_schedulers("isdir")

    async def isfile(self, path: str) -> bool:
        self._not_for_schedulers("isfile")

    async def put(self, localpath: LocalPath, remotepath: str) -> None:
        self._not_for_schedulers("put")

    async def get(self, remotepath: str, localpath: LocalPath) -> None:
        self._not_for_schedulers("get")

    async def puttree(self, localpath: LocalPath, remotepath: str) -> None:
        self._not_for_schedulers("puttree")

    async def gettree(self, remotepath: str, localpath: LocalPath) -> None:
        self._not_for_schedulers("gettree")

    async def read_bytes(self, path: str) -> bytes:
        self._not_for_schedulers("read_bytes")

    async def write_bytes(self, path: str, data: bytes) -> None:
        self._not_for_schedulers("write_bytes")

    async def copy(self, source: str, destination: str) -> None:
        self._not_for_schedulers("copy")

    async def remove(self, path: str) -> None:
        self._not_for_schedulers("remove")

    async def rmtree(self, path: str) -> None:
        self._not_for_schedulers("rmtree")

    async def rename(self, source: str, destination: str) -> None:
        self._not_for_schedulers("rename")

    async def chmod(self, path: str, mode: int) -> None:
        self._not_for_schedulers("chmod")

    async def symlink(self, target: str, link_path: str) -> None:
        self._not_for_schedulers("symlink")


class CountingTransport(DelegatingTransport):
    """Wraps an open transport and records the command lines run through it (to prove batched polling).

    Raises:
        TypeError: ``inner`` is not an async :class:`~plait.transports.contract.Transport`.
    """

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.commands: list[str] = []

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Record ``command``, then run it on the wrapped transport."""
        self.commands.append(command)
        return await super().exec_command_wait(command, stdin=stdin, workdir=workdir, timeout=timeout)
