"""Killing the server in the middle of a large transfer through the pool, then bringing it back.

The transfer must fail with a clear, retryable TransportError naming the
host, within a bounded time, without a half-written file under the final
name; after sshd restarts on the same port, the next pool request
reconnects.  Each test has its own sshd (``fault_sshd``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.transports import (
    BlockingTransport,
    ConnectionFailedError,
    ConnectionLostError,
    Transport,
    TransportPool,
)
from plait.transports._local_files import is_temporary_name
from plait.transports.ssh import SshTransport
from plait.transports.ssh_blocking import BlockingSshTransport
from plait.transports.testing import LoopbackSshd

pytestmark = pytest.mark.sshd

BIG = 128 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as out:
        for _ in range(BIG // (8 * 1024 * 1024)):
            out.write(os.urandom(8 * 1024 * 1024))  # random: compression cannot make it fast
    return path


def factory_for(kind: str, server: LoopbackSshd) -> Callable[[], Transport | BlockingTransport]:
    options = server.transport_options() | {"keepalive_interval": 1.0, "keepalive_count_max": 3}
    if kind == "ssh":
        return lambda: SshTransport(server.host, **options)
    return lambda: BlockingSshTransport(server.host, **options)


async def wait_for_partial_file(folder: Path, transfer: asyncio.Task[None]) -> None:
    """Return once a temporary file in ``folder`` holds more than a MiB (the transfer is under way)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not transfer.done():
        for entry in os.scandir(folder):
            if is_temporary_name(entry.name) and entry.stat().st_size > 1024 * 1024:
                return
        await asyncio.sleep(0.002)
    raise AssertionError("the transfer finished (or never started) before the server could be killed")


# paramiko reads ahead in a thread of its own (SFTPFile.prefetch); when the server dies that thread
# ends with "Socket is closed", after the download itself has failed with ConnectionLostError.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("kind", ["ssh", "ssh-blocking"])
@pytest.mark.parametrize("direction", ["put", "get"])
async def test_killing_sshd_mid_transfer(
    kind: str, direction: str, fault_sshd: LoopbackSshd, big_file: Path, tmp_path: Path
) -> None:
    pool = TransportPool(idle_timeout=30.0)
    key = (kind, fault_sshd.host, fault_sshd.username)
    factory = factory_for(kind, fault_sshd)
    remote = tmp_path / "remote"
    local = tmp_path / "local"
    remote.mkdir()
    local.mkdir()
    if direction == "put":
        target, watched = remote / "big.bin", remote
    else:
        target, watched = local / "big.bin", local
    try:
        async with pool.request(key, factory) as transport:
            if direction == "put":
                transfer = asyncio.create_task(transport.put(big_file, str(target)))
            else:
                transfer = asyncio.create_task(transport.get(str(big_file), target))
            await wait_for_partial_file(watched, transfer)
            fault_sshd.kill()
            killed = time.monotonic()
            with pytest.raises((ConnectionLostError, ConnectionFailedError)) as caught:
                await asyncio.wait_for(transfer, 60)
            assert time.monotonic() - killed < 20
        error = caught.value
        assert error.retryable and error.host == fault_sshd.host and fault_sshd.host in str(error)
        assert error.operation == direction
        assert not target.exists(), "a half-written file is under the final name"
        if direction == "get":
            assert os.listdir(local) == []  # the local temporary file was removed too

        fault_sshd.start()  # same port, same keys
        async with pool.request(key, factory) as transport:
            await transport.write_bytes(str(remote / "after"), b"reconnected")
            assert await transport.read_bytes(str(remote / "after")) == b"reconnected"
        assert pool.statistics().opens == 2
    finally:
        await pool.close()
