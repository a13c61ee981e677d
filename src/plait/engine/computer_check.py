"""The diagnosis of a computer: the checks behind ``plait computer test``, as data.

:func:`check_computer` walks through what a calculation job will do on a
computer: open the connection, ask who we are there, create the work folder
and a test folder in it, upload a file and read it back, run a command, ask
the scheduler (its :meth:`~plait.schedulers.contract.Scheduler.probe`, so
nothing is submitted), remove the test folder, close the connection.  It
stops at the first failure, still cleaning up, and returns one
:class:`CheckResult` per step, each failure with its reason and a hint of
what to try next.  It prints nothing: the CLI prints the results (as each
arrives, through ``on_result``), and any other caller (a notebook, the web
dashboard) can show them its own way.

A scheduler plugin that cannot be probed (no ``probe_job_id`` and no
``probe`` of its own, see :attr:`~plait.schedulers.contract.Scheduler.can_probe`)
has its step skipped with the detail "the NAME plugin cannot be probed".
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.orm import Computer
    from plait.schedulers import Scheduler
    from plait.transports import Transport

__all__ = ["CheckResult", "ComputerCheck", "check_computer"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        key: which check (``"open"``, ``"whoami"``, ``"folder"``, ``"file"``,
            ``"command"``, ``"scheduler"``, ``"cleanup"``, ``"close"``).
        title: what it checks, for people (``"open the connection"``).
        status: ``"ok"``, ``"failed"`` or ``"skipped"``.
        seconds: how long it took; ``None`` when it did not run.
        detail: what it found (``"user alice"``), or why it was skipped.
        reason: for a failure, the error in one line.
        hint: for a failure, what to try next.
    """

    key: str
    title: str
    status: str
    seconds: float | None = None
    detail: str = ""
    reason: str = ""
    hint: str = ""


@dataclass
class ComputerCheck:
    """Every :class:`CheckResult` of one :func:`check_computer`, in the order the checks ran."""

    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> CheckResult | None:
        """The first failed check, or None when every check that ran passed."""
        return next((result for result in self.results if result.status == "failed"), None)

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return self.failed is None


class _Failed(Exception):
    """A check found something wrong that is not an exception of the transport (wrong output...)."""


class _Checklist:
    """Runs checks one after the other, records each as it ends, and stops at the first failure."""

    def __init__(
        self,
        step_timeout: float,
        hints: Callable[[str, BaseException], str],
        on_result: Callable[[CheckResult], None] | None,
    ) -> None:
        self.timeout = step_timeout
        self.hints = hints
        self.on_result = on_result
        self.outcome = ComputerCheck()

    @property
    def failed(self) -> CheckResult | None:
        return self.outcome.failed

    async def run(
        self, key: str, title: str, check: Callable[[], Awaitable[str]], *, always: bool = False
    ) -> bool:
        """Run ``check`` (it returns the detail to show); False if it failed or was skipped."""
        if self.failed is not None and not always:
            self._record(CheckResult(key, title, "skipped"))
            return False
        start = time.perf_counter()
        try:
            detail = await asyncio.wait_for(check(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = _reason(exc, self.timeout)
            result = CheckResult(
                key, title, "failed", time.perf_counter() - start, "", reason, self.hints(key, exc)
            )
            self._record(result)
            return False
        self._record(CheckResult(key, title, "ok", time.perf_counter() - start, detail))
        return True

    def skip(self, key: str, title: str, detail: str) -> None:
        self._record(CheckResult(key, title, "skipped", None, detail))

    def _record(self, result: CheckResult) -> None:
        self.outcome.results.append(result)
        if self.on_result is not None:
            self.on_result(result)


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    from plait.schedulers import SchedulerError

    text = " ".join(str(exc).split())
    if isinstance(exc, _Failed | SchedulerError | ValueError) or _is_transport_error(exc):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_transport_error(exc: BaseException) -> bool:
    from plait.transports import TransportError

    return isinstance(exc, TransportError)


def _hints(found: Computer, work_dir: str) -> Callable[[str, BaseException], str]:
    """The hint for a failure of check ``key``: what to try next."""
    from plait.schedulers import SchedulerError
    from plait.transports import (
        AuthenticationError,
        ConnectionFailedError,
        HostKeyError,
        TransportTimeoutError,
    )  # every other TransportError when opening is a connection problem too

    label = found.label
    configure = f"plait computer configure {label}"

    def hint(key: str, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError | TransportTimeoutError):
            return (
                f"the computer did not answer in time: check the host name '{found.hostname}', your network "
                "or VPN, or give it longer with --timeout"
            )
        if key == "open":
            if isinstance(exc, ValueError | TypeError):
                return f"fix the configuration: `{configure} --show`, then `{configure} ...`"
            if isinstance(exc, HostKeyError):
                return f"if you trust this host and its key: `{configure} --allow-unknown-host-key`"
            if isinstance(exc, AuthenticationError):
                return (
                    "check the user name and key: "
                    f"`{configure} --username NAME --key-filename ~/.ssh/id_ed25519`; "
                    f"`ssh {found.hostname}` should log in with them without a password"
                )
            if isinstance(exc, ConnectionFailedError) or _is_transport_error(exc):
                return (
                    f"check the host name '{found.hostname}' and the port (`{configure} --port N`), and that "
                    f"`ssh {found.hostname}` works from this machine; a cluster behind a gateway needs "
                    f"`{configure} --proxy-jump GATEWAY`"
                )
            return f"check the configuration: `{configure} --show`"
        if key == "folder":
            return (
                f"the work folder {work_dir} must be a folder the remote user can create and write in; "
                "set up a computer with another --work-dir"
            )
        if key == "file":
            return "the test folder is not writable, or the disk or quota is full"
        if key == "command":
            return (
                "commands run through `bash -c` in a non-interactive shell: the shell's startup files "
                "(~/.bashrc) must print nothing and must not exit"
            )
        if key == "scheduler":
            if isinstance(exc, SchedulerError):
                return (
                    f"is the {found.scheduler_type} scheduler's command on the PATH of a non-interactive "
                    f"shell on {found.hostname}, and does it answer there?"
                )
            return f"check the scheduler options: `plait computer show {label}`"
        if key == "cleanup":
            return "remove the test folder by hand"
        return ""

    return hint


async def check_computer(
    found: Computer,
    *,
    step_timeout: float = 60.0,
    on_result: Callable[[CheckResult], None] | None = None,
) -> ComputerCheck:
    """Check, step by step, that calculation jobs can run on the computer ``found``.

    Call :meth:`~plait.orm.Computer.get_config` first (it reads the
    database; this coroutine should not).  Each check may take
    ``step_timeout`` seconds; ``on_result`` is called with each result as
    soon as its check ends (the CLI prints it then).  Bad scheduler options
    are reported by the scheduler check, not raised.

    Returns:
        the results, one per check, in order; ``failed`` is the first failure.

    Raises:
        asyncio.CancelledError: only when cancelled; every other error is a failed check.
    """
    from plait.transports import as_async

    scheduler: Scheduler | None = None
    scheduler_error: Exception | None = None
    try:
        scheduler = found.get_scheduler()
    except Exception as exc:  # bad scheduler options: reported by the scheduler check
        scheduler_error = exc
    context: dict[str, Any] = {"user": None, "test_dir": None}
    work_dir = found.work_dir
    checks = _Checklist(step_timeout, _hints(found, work_dir), on_result)
    transport: Transport | None = None

    def connected() -> Transport:
        # every check after "open" runs only once "open" succeeded (cleanup: once a folder was made)
        assert transport is not None
        return transport

    async def connect() -> str:
        nonlocal transport
        transport = as_async(found.get_transport())
        await transport.open()
        return f"{found.transport_type} to {found.hostname}"

    async def whoami() -> str:
        context["user"] = user = (await connected().whoami()).strip()
        return f"user {user}"

    async def make_folder() -> str:
        base = work_dir.replace("{username}", context["user"] or "")
        await connected().mkdir(base, parents=True, exist_ok=True)
        test_dir = posixpath.join(base, f"plait-test-{uuid.uuid4().hex[:12]}")
        await connected().mkdir(test_dir)
        context["test_dir"] = test_dir
        return test_dir

    async def transfer() -> str:
        path = posixpath.join(context["test_dir"], "plait-test.bin")
        payload = f"plait test {uuid.uuid4()}\n".encode() + bytes(range(256))
        await connected().write_bytes(path, payload)
        back = await connected().read_bytes(path)
        if back != payload:
            raise _Failed(
                f"read back {len(back)} bytes that differ from the {len(payload)} bytes written to {path}"
            )
        return f"{len(payload)} bytes written and read back"

    async def command() -> str:
        result = await connected().exec_command_wait(
            "echo plait-test", workdir=context["test_dir"], timeout=step_timeout
        )
        if result.returncode != 0:
            raise _Failed(
                f"`echo plait-test` exited with {result.returncode}: "
                f"{' '.join(result.stderr.split()) or 'no message'}"
            )
        if result.stdout.strip() != "plait-test":
            raise _Failed(
                f"`echo plait-test` printed {result.stdout.strip()!r} instead of 'plait-test' "
                "(something prints text when the shell starts)"
            )
        return "echo plait-test"

    async def ask_scheduler() -> str:
        if scheduler_error is not None:
            raise scheduler_error
        assert scheduler is not None  # get_scheduler() either returned one or raised scheduler_error
        return await scheduler.probe(connected())

    async def cleanup() -> str:
        await connected().rmtree(context["test_dir"])
        return f"removed {context['test_dir']}"

    async def close() -> str:
        await connected().close()
        return ""

    try:
        await checks.run("open", "open the connection", connect)
        await checks.run("whoami", "log in (whoami)", whoami)
        await checks.run("folder", "create the work and test folders", make_folder)
        await checks.run("file", "upload a file and read it back", transfer)
        await checks.run("command", "run a command", command)
        if checks.failed is None and scheduler is not None and not scheduler.can_probe:
            checks.skip(
                "scheduler", "ask the scheduler", f"the {found.scheduler_type} plugin cannot be probed"
            )
        else:
            await checks.run("scheduler", "ask the scheduler", ask_scheduler)
    finally:
        if context["test_dir"] is not None:
            await checks.run("cleanup", "remove the test folder", cleanup, always=True)
        else:
            checks.skip("cleanup", "remove the test folder", "")
        if transport is not None and transport.is_open:
            await checks.run("close", "close the connection", close, always=True)
        else:
            checks.skip("close", "close the connection", "")
            if transport is not None:  # a half-open connection, or the adapter's thread
                with contextlib.suppress(Exception):
                    await transport.close()
    return checks.outcome
