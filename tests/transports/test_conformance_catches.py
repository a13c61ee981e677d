"""The conformance suite catches the mistakes a plugin author really makes.

Each broken plugin below is a :class:`LocalTransport` (or a
:class:`DelegatingTransport` around one) with one deliberate mistake; the
suite's test for that promise must fail on it, and pass on the real
``LocalTransport``.  The suite's test methods are called directly, with
the fixtures made here, so each check runs once and fast.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from plait.transports import CommandResult, FileAttributes, Transport
from plait.transports.delegating import DelegatingTransport
from plait.transports.errors import TransportClosedError, TransportTimeoutError
from plait.transports.local import LocalTransport
from plait.transports.testing import EngineConfiguration, TransportConformance

CHUNK = 16 * 1024


class Suite(TransportConformance):
    large_file_size = 1024 * 1024


@pytest.fixture
def suite() -> Suite:
    return Suite()


@pytest.fixture
def remote_root(tmp_path: Path) -> str:
    root = tmp_path / "remote"
    root.mkdir()
    return str(root)


# -- the broken plugins -----------------------------------------------------------


class WritesIntoTheFinalName(DelegatingTransport):
    """Streams the data straight into ``path``, as a naive SFTP upload does."""

    async def _stream(self, data: bytes, path: str) -> None:
        with open(path, "wb") as target:
            for start in range(0, len(data), CHUNK):
                target.write(data[start : start + CHUNK])
                target.flush()
                await asyncio.sleep(0.001)  # the network, between two packets

    async def put(self, localpath: str | os.PathLike[str], remotepath: str) -> None:
        await self._stream(Path(localpath).read_bytes(), remotepath)

    async def write_bytes(self, path: str, data: bytes) -> None:
        await self._stream(data, path)


class KillsOnlyTheShell(LocalTransport):
    """On time-out kills ``bash`` but not its process group.

    With ``drain`` it then waits for the output, which the children keep open
    (it hangs); without, it returns at once and leaves the children running.
    """

    drain = True

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            if self.drain:
                await process.communicate()  # the children still hold the pipes open
            raise TransportTimeoutError(
                "timed out", host=self.hostname, operation="exec_command_wait", path=workdir
            ) from None
        assert process.returncode is not None
        return CommandResult(process.returncode, stdout.decode(), stderr.decode())


class KillsOnlyTheShellAndReturns(KillsOnlyTheShell):
    drain = False


class OnlyStatKnowsItIsClosed(DelegatingTransport):
    """close() flips a flag that only ``stat`` looks at; the inner transport stays open."""

    closed = False

    async def close(self) -> None:
        self.closed = True

    @property
    def is_open(self) -> bool:
        return not self.closed and self.inner.is_open

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        if self.closed:
            raise TransportClosedError("closed", host=self.hostname, operation="stat", path=path)
        return await super().stat(path, follow_symlinks=follow_symlinks)


class BlocksTheLoop(LocalTransport):
    """Runs commands with a blocking ``subprocess.run`` inside ``async def``."""

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        done = subprocess.run(["bash", "-c", command], capture_output=True, cwd=workdir, timeout=timeout)
        return CommandResult(done.returncode, done.stdout.decode(), done.stderr.decode())


class TakesHostNotHostname(LocalTransport):
    def __init__(self, host: str) -> None:  # the engine passes hostname=...
        super().__init__(host)


# -- each mistake is caught, the real plugin passes --------------------------------


@pytest.mark.parametrize("method", ["put", "write_bytes"])
async def test_a_write_into_the_final_name_is_caught(
    suite: Suite, remote_root: str, tmp_path: Path, method: str
) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "good").mkdir()
    async with WritesIntoTheFinalName(LocalTransport()) as broken:
        with pytest.raises(AssertionError, match=f"{method} let a reader see the file at sizes"):
            await suite.test_an_independent_reader_never_sees_a_partial_file(
                broken, remote_root, Path(remote_root), tmp_path / "broken", method
            )
    async with LocalTransport() as good:
        await suite.test_an_independent_reader_never_sees_a_partial_file(
            good, remote_root, Path(remote_root), tmp_path / "good", method
        )


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (KillsOnlyTheShell, "did not return within"),
        (KillsOnlyTheShellAndReturns, "of the timed-out command are still running"),
    ],
)
async def test_a_timeout_that_kills_only_the_shell_is_caught(
    suite: Suite, plugin: type[KillsOnlyTheShell], message: str
) -> None:
    suite.timeout_grace = 1.0  # the broken plugin would otherwise hang for 300 s
    async with plugin() as broken:
        with pytest.raises((AssertionError, pytest.fail.Exception), match=message):
            await suite.test_exec_timeout_kills_the_whole_process_group(broken)


async def test_the_real_timeout_kills_the_process_group(suite: Suite) -> None:
    async with LocalTransport() as good:
        await suite.test_exec_timeout_kills_the_whole_process_group(good)


async def test_methods_working_after_close_are_caught(suite: Suite, remote_root: str, tmp_path: Path) -> None:
    inner = LocalTransport()
    async with inner:
        broken = OnlyStatKnowsItIsClosed(inner)
        with pytest.raises(AssertionError, match="after close\\(\\): mkdir still works; listdir still works"):
            await suite.test_closed_transport_refuses_every_method(broken, remote_root, tmp_path)
    (tmp_path / "good").mkdir()
    good = LocalTransport()
    await good.open()
    await suite.test_closed_transport_refuses_every_method(good, remote_root, tmp_path / "good")


async def test_an_async_plugin_that_blocks_the_loop_is_caught(
    suite: Suite, remote_root: str, tmp_path: Path
) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "good").mkdir()
    async with BlocksTheLoop() as broken:
        with pytest.raises(AssertionError, match=r"stood still .*'exec_command_wait'"):
            await suite.test_calls_do_not_block_the_event_loop(broken, remote_root, tmp_path / "broken")
    async with LocalTransport() as good:
        await suite.test_calls_do_not_block_the_event_loop(good, remote_root, tmp_path / "good")


async def test_a_constructor_the_engine_cannot_call_is_caught(suite: Suite) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"TakesHostNotHostname\(hostname=\.\.\., \*\*options\)"):
        await suite.test_built_as_the_engine_builds_it(EngineConfiguration(TakesHostNotHostname, "localhost"))
    await suite.test_built_as_the_engine_builds_it(EngineConfiguration(LocalTransport, "localhost"))


def test_the_delegating_base_forwards_every_contract_method() -> None:
    contract = {
        name for name, member in vars(Transport).items() if getattr(member, "__isabstractmethod__", False)
    }
    assert contract <= set(vars(DelegatingTransport)), contract - set(vars(DelegatingTransport))
    assert not DelegatingTransport.__abstractmethods__
