"""TransportPool: one connection per key, opened once, spaced, bounded, reopened after a drop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from plait.transports import (
    AsyncAdapter,
    ConnectionFailedError,
    ConnectionLostError,
    FileAttributes,
    PooledTransport,
    TransportClosedError,
    TransportPool,
    as_blocking,
)
from plait.transports.local import LocalTransport

KEY = ("local", "localhost", "me")


class Counted(LocalTransport):
    """A local transport that records its opens, can be slow to open, fail to open, or drop."""

    def __init__(self, log: list[float], *, open_delay: float = 0.0, fail: bool = False) -> None:
        super().__init__()
        self.log = log
        self.open_delay = open_delay
        self.fail = fail
        self.dropped = False
        self.in_stat = 0
        self.most_in_stat = 0

    async def open(self) -> None:
        self.log.append(time.monotonic())
        await asyncio.sleep(self.open_delay)
        if self.fail:
            raise ConnectionFailedError("no route to host", host=self.hostname, operation="open")
        await super().open()

    @property
    def is_open(self) -> bool:
        return super().is_open and not self.dropped

    async def stat(self, path: str, *, follow_symlinks: bool = True) -> FileAttributes:
        if self.dropped:
            raise ConnectionLostError(
                "the connection was lost", host=self.hostname, operation="stat", path=path
            )
        self.in_stat += 1
        self.most_in_stat = max(self.most_in_stat, self.in_stat)
        try:
            await asyncio.sleep(0.02)
            if self.dropped:  # dropped while the operation was in flight
                raise ConnectionLostError(
                    "the connection was lost", host=self.hostname, operation="stat", path=path
                )
            return await super().stat(path, follow_symlinks=follow_symlinks)
        finally:
            self.in_stat -= 1


class Factory:
    """Makes Counted transports and keeps them, so tests can look inside."""

    def __init__(self, **options: object) -> None:
        self.opens: list[float] = []
        self.made: list[Counted] = []
        self.options = options

    def __call__(self) -> Counted:
        transport = Counted(self.opens, **self.options)  # type: ignore[arg-type]
        self.made.append(transport)
        return transport


async def test_concurrent_first_requests_open_one_connection() -> None:
    pool = TransportPool()
    factory = Factory(open_delay=0.05)
    seen = []

    async def use() -> None:
        async with pool.request(KEY, factory) as transport:
            assert isinstance(transport, PooledTransport) and transport.is_open
            seen.append(transport.transport)
            assert await transport.isdir("/")

    await asyncio.gather(*(use() for _ in range(20)))
    assert len(factory.made) == 1 and len(set(map(id, seen))) == 1
    stats = pool.statistics()
    assert (stats.opens, stats.open_attempts, stats.open_connections, stats.requesters) == (1, 1, 1, 0)
    await pool.close()
    assert not factory.made[0].is_open
    assert pool.statistics().open_connections == 0


async def test_keys_get_their_own_connections() -> None:
    pool = TransportPool()
    factory = Factory()
    async with pool.request(("local", "a", "me"), factory), pool.request(("local", "b", "me"), factory):
        assert pool.statistics().open_connections == 2
    await pool.close()


async def test_idle_connections_close_and_busy_ones_stay() -> None:
    pool = TransportPool(idle_timeout=0.2)
    factory = Factory()
    for _ in range(5):  # requests keep coming: the connection stays
        async with pool.request(KEY, factory) as transport:
            await transport.isdir("/")
        await asyncio.sleep(0.05)
    assert len(factory.opens) == 1
    await asyncio.sleep(0.4)  # nobody asks: it is closed
    assert not factory.made[0].is_open
    assert pool.statistics().open_connections == 0
    async with pool.request(KEY, factory) as transport:
        assert await transport.isdir("/")
    assert len(factory.opens) == 2
    await pool.close()


async def test_new_connections_are_spaced_by_safe_interval() -> None:
    pool = TransportPool(idle_timeout=0.0)
    factory = Factory()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    for _ in range(3):
        async with pool.request(KEY, factory, safe_interval=0.3):
            pass
        await asyncio.sleep(0.02)  # let the idle close happen
    ticking.cancel()
    gaps = [later - earlier for earlier, later in zip(factory.opens, factory.opens[1:], strict=False)]
    assert len(factory.opens) == 3 and all(gap >= 0.29 for gap in gaps), gaps
    assert ticks >= 30  # the wait was an asyncio.sleep: the loop kept running
    await pool.close()


async def test_a_failed_open_is_shared_and_the_next_attempt_spaced() -> None:
    pool = TransportPool()
    factory = Factory(open_delay=0.05, fail=True)

    async def use() -> None:
        async with pool.request(KEY, factory, safe_interval=0.2):
            raise AssertionError("must not get here")

    results = await asyncio.gather(*(use() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionFailedError) and r.retryable for r in results)
    assert len(factory.opens) == 1
    with pytest.raises(ConnectionFailedError):
        await use()
    assert len(factory.opens) == 2 and factory.opens[1] - factory.opens[0] >= 0.19
    assert pool.statistics().opens == 0 and pool.statistics().open_attempts == 2
    await pool.close()


async def test_operations_per_connection_are_bounded() -> None:
    pool = TransportPool()
    factory = Factory()
    peak_in_flight = 0

    async def watch() -> None:
        nonlocal peak_in_flight
        while True:
            peak_in_flight = max(peak_in_flight, pool.statistics().in_flight)
            await asyncio.sleep(0.005)

    watching = asyncio.create_task(watch())
    async with pool.request(KEY, factory, max_concurrent_operations=3) as first:
        async with pool.request(KEY, factory, max_concurrent_operations=3) as second:
            await asyncio.gather(*(handle.stat("/") for handle in [first, second] * 10))
    watching.cancel()
    assert factory.made[0].most_in_stat == 3
    assert peak_in_flight == 3
    await pool.close()


async def test_blocking_factories_are_wrapped(tmp_path: Path) -> None:
    pool = TransportPool()
    async with pool.request(KEY, lambda: as_blocking(LocalTransport())) as transport:
        assert isinstance(transport.transport, AsyncAdapter)
        await transport.write_bytes(str(tmp_path / "f"), b"through a thread")
        assert await transport.read_bytes(str(tmp_path / "f")) == b"through a thread"
    await pool.close()


async def test_a_dropped_connection_fails_its_operation_and_is_reopened() -> None:
    pool = TransportPool()
    factory = Factory()
    async with pool.request(KEY, factory) as transport:
        await transport.stat("/")
        in_flight = asyncio.create_task(transport.stat("/"))
        await asyncio.sleep(0.005)
        factory.made[0].dropped = True
        with pytest.raises(ConnectionLostError) as caught:
            await in_flight
        assert caught.value.retryable
    async with pool.request(KEY, factory) as transport:
        assert (await transport.stat("/")).is_dir
    assert len(factory.made) == 2 and pool.statistics().opens == 2
    await pool.close()


async def test_the_next_operation_in_a_request_reconnects_too() -> None:
    pool = TransportPool()
    factory = Factory()
    async with pool.request(KEY, factory) as transport:
        factory.made[0].dropped = True
        assert not transport.is_open
        assert (await transport.stat("/")).is_dir  # the handle saw the drop before calling: it reopened
    assert len(factory.made) == 2
    await pool.close()


async def test_a_released_handle_refuses_operations() -> None:
    pool = TransportPool()
    factory = Factory()
    async with pool.request(KEY, factory) as transport:
        await transport.close()  # ends the handle, not the connection
        assert not transport.is_open and factory.made[0].is_open
        with pytest.raises(TransportClosedError):
            await transport.stat("/")
    with pytest.raises(TransportClosedError, match="released"):
        await transport.isdir("/")
    await pool.close()


async def test_a_cancelled_requester_does_not_cancel_the_shared_open() -> None:
    pool = TransportPool()
    factory = Factory(open_delay=0.1)

    async def use() -> bool:
        async with pool.request(KEY, factory) as transport:
            return await transport.isdir("/")

    impatient = asyncio.create_task(use())
    patient = asyncio.create_task(use())
    await asyncio.sleep(0.02)
    impatient.cancel()
    assert await patient is True
    assert impatient.cancelled() and len(factory.made) == 1
    assert pool.statistics().requesters == 0
    await pool.close()


async def test_a_closed_pool_refuses_requests() -> None:
    pool = TransportPool()
    factory = Factory()
    async with pool.request(KEY, factory):
        pass
    await pool.close()
    assert not factory.made[0].is_open
    with pytest.raises(RuntimeError, match="closed"):
        async with pool.request(KEY, factory):
            pass


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        TransportPool(idle_timeout=-1)
    pool = TransportPool()
    with pytest.raises(ValueError, match="max_concurrent_operations"):
        async with pool.request(KEY, Factory(), max_concurrent_operations=0):
            pass
    with pytest.raises(ValueError, match="safe_interval"):
        async with pool.request(KEY, Factory(), safe_interval=-1):
            pass
    await pool.close()
