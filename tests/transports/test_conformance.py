"""The conformance suite against every built-in plugin and the ways the engine reaches them.

* ``local`` directly;
* ``ssh`` (asyncssh) directly and through the pool;
* ``ssh-blocking`` (paramiko) wrapped explicitly with ``as_async``, and
  through the pool, which wraps it itself.

The SSH ones talk to a real OpenSSH server on loopback (see conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plait.transports import Transport, TransportPool, as_async
from plait.transports.local import LocalTransport
from plait.transports.ssh import SshTransport
from plait.transports.ssh_blocking import BlockingSshTransport
from plait.transports.testing import EngineConfiguration, LoopbackSshd, TransportConformance

pytestmark = pytest.mark.sshd


class TestLocal(TransportConformance):
    @pytest.fixture
    def engine_configuration(self) -> EngineConfiguration:
        return EngineConfiguration(LocalTransport, "localhost")

    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        async with LocalTransport() as transport:
            yield transport

    @pytest.fixture
    def remote_root(self, tmp_path: Path) -> str:
        root = tmp_path / "remote"
        root.mkdir()
        return str(root)


class TestSsh(TransportConformance):
    """Uses the suite's default ``remote_root`` (``mktemp -d`` on the server)."""

    @pytest.fixture
    def engine_configuration(self, sshd: LoopbackSshd) -> EngineConfiguration:
        return EngineConfiguration(SshTransport, sshd.host, sshd.transport_options())

    @pytest.fixture
    async def transport(self, sshd: LoopbackSshd) -> AsyncIterator[Transport]:
        async with SshTransport(sshd.host, **sshd.transport_options()) as transport:
            yield transport


class TestSshThroughPool(TransportConformance):
    @pytest.fixture
    async def transport(self, sshd: LoopbackSshd) -> AsyncIterator[Transport]:
        pool = TransportPool(idle_timeout=5.0)
        key = ("ssh", sshd.host, sshd.username)
        try:
            async with pool.request(
                key, lambda: SshTransport(sshd.host, **sshd.transport_options())
            ) as transport:
                yield transport
        finally:
            await pool.close()


class TestAsAsyncSshBlocking(TransportConformance):
    @pytest.fixture
    def engine_configuration(self, sshd: LoopbackSshd) -> EngineConfiguration:
        return EngineConfiguration(BlockingSshTransport, sshd.host, sshd.transport_options())

    @pytest.fixture
    async def transport(self, sshd: LoopbackSshd) -> AsyncIterator[Transport]:
        async with as_async(BlockingSshTransport(sshd.host, **sshd.transport_options())) as transport:
            yield transport

    @pytest.fixture
    def remote_root(self, tmp_path: Path) -> str:
        root = tmp_path / "remote"
        root.mkdir()
        return str(root)


class TestSshBlockingThroughPool(TransportConformance):
    @pytest.fixture
    async def transport(self, sshd: LoopbackSshd) -> AsyncIterator[Transport]:
        pool = TransportPool(idle_timeout=5.0)
        key = ("ssh-blocking", sshd.host, sshd.username)
        try:
            async with pool.request(
                key, lambda: BlockingSshTransport(sshd.host, **sshd.transport_options())
            ) as transport:
                yield transport
        finally:
            await pool.close()
