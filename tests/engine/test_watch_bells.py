"""watch() is woken by the process's state bell, and its poll still delivers when the bell is lost.

The poll is made (almost) never to look again by a huge ``MIN_INTERVAL`` and ``interval``: then
every event after the first can only come from a bell.  And the reverse: with the bell silenced
and the profile's broker unreachable, the poll alone still follows the process.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

import pytest

import plait
from plait.engine import lifecycle
from plait.orm import Computer, InstalledCode, Int, ProcessState

NEVER = 3600.0
watch_module = sys.modules["plait.engine.watch"]  # the module (plait.engine.watch is the function)


def _created_process() -> int:
    from plait.calculations.arithmetic import ArithmeticAddCalculation

    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node = plait.submit(ArithmeticAddCalculation, code=code, x=Int(1), y=Int(2))
    assert node.pk is not None
    return node.pk


def _change_in_a_thread(pk: int, seen: list[plait.engine.watch.ProcessEvent]) -> threading.Thread:
    """Write two status lines, then kill: each write waits until watch saw the one before."""

    def writer() -> None:
        for status in ("first", "second"):
            count = len(seen)
            assert lifecycle.set_unheld(pk, status=status)
            _wait_until(lambda n=count: len(seen) > n)
        assert lifecycle.end_unheld(pk, ProcessState.KILLED, log_level="WARNING", log="killed: test")

    thread = threading.Thread(target=writer, daemon=True)
    return thread


def _wait_until(condition, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("watch saw nothing for 20 s")
        time.sleep(0.01)


async def _follow(pk: int, interval: float) -> list:
    seen: list = []
    thread = _change_in_a_thread(pk, seen)

    async def collect() -> None:
        async for event in plait.watch(pk, interval=interval):
            seen.append(event)
            if len(seen) == 1:
                thread.start()

    await asyncio.wait_for(collect(), 30)
    thread.join(5)
    return seen


async def test_watch_is_woken_by_the_state_bell_not_the_poll(monkeypatch):
    pk = _created_process()
    monkeypatch.setattr(watch_module, "MIN_INTERVAL", NEVER)
    seen = await _follow(pk, interval=NEVER)
    assert [e.process_status for e in seen[1:]] == ["first", "second", None]
    assert seen[-1].terminal and seen[-1].state is ProcessState.KILLED


async def test_watch_polls_when_the_bell_is_lost_and_the_broker_unreachable(monkeypatch):
    import plait.storage

    plait.storage.create_profile("deadbroker", broker_url="amqp://guest:guest@127.0.0.1:1/")
    monkeypatch.setenv("PLAIT_PROFILE", "deadbroker")
    plait.storage.reset()
    monkeypatch.setattr(lifecycle, "ring_state", lambda pk: None)  # every state bell is lost
    pk = _created_process()
    seen = await _follow(pk, interval=0.1)
    assert [e.process_status for e in seen[1:]] == ["first", "second", None]
    assert seen[-1].terminal


def test_a_broker_without_state_bells_refuses_to_listen():
    from plait.broker import Broker, BrokerError

    class Plain(Broker):
        async def start(self) -> None: ...
        async def close(self) -> None: ...
        def ring_work(self) -> None: ...
        async def wait_for_work(self, timeout: float) -> bool:
            return False

        def ring_control(self, recipient: str) -> None: ...
        async def wait_for_control(self, recipient: str, timeout: float) -> bool:
            return False

    broker = Plain(plait.storage.get_profile())
    broker.ring_state(1)  # rings nothing, raises nothing
    with pytest.raises(BrokerError, match="no state bells"):
        asyncio.run(broker.listen_state(1, lambda: None))


async def test_the_database_broker_carries_state_bells_on_postgresql(postgres_url, monkeypatch):
    import plait.storage
    from conftest import drop_plait_tables
    from plait.broker.database import DatabaseBroker

    drop_plait_tables(postgres_url)
    plait.storage.create_profile("pgbells", storage_url=postgres_url)
    monkeypatch.setenv("PLAIT_PROFILE", "pgbells")
    plait.storage.reset()
    plait.storage.get_backend()
    broker = DatabaseBroker(plait.storage.get_profile())
    await broker.start()
    try:
        heard: list[int] = []
        rung = asyncio.Event()
        stop = await broker.listen_state(7, lambda: (heard.append(7), rung.set()))
        broker.ring_state(8)  # nobody listens for 8
        broker.ring_state(7)
        await asyncio.wait_for(rung.wait(), 20)  # the NOTIFY came back through LISTEN
        await stop()
        await stop()  # twice is a no-op
        assert heard == [7]
    finally:
        await broker.close()


def test_a_state_bell_rings_only_once_the_outer_transaction_has_committed():
    """A lifecycle write inside an enclosing transaction (a work chain's checkpoint and its park are
    one) rang the state bell at once: a watcher reading the row on that bell read it from before
    the commit, saw nothing new, and slept until its poll.  The bell waits for the outer commit,
    and a rolled back block rings nothing."""
    from plait.engine import bell
    from plait.storage import get_backend

    pk = _created_process()
    backend = get_backend()
    seen: list[str | None] = []

    def on_bell() -> None:  # what a watcher does: read the row it was told changed
        seen.append(get_backend().get_process(pk)["status"])

    bell._state_listeners.setdefault(pk, []).append(on_bell)
    try:
        with backend.transaction():
            assert lifecycle.set_unheld(pk, status="inside a block")
            assert seen == []  # not yet committed: nobody is told
        assert seen == ["inside a block"]
        with pytest.raises(RuntimeError), backend.transaction():
            assert lifecycle.set_unheld(pk, status="rolled back")
            raise RuntimeError("the block fails")
        assert seen == ["inside a block"]
        assert backend.get_process(pk)["status"] == "inside a block"
        assert lifecycle.set_unheld(pk, status="alone")  # its own transaction: rung after it
        assert seen == ["inside a block", "alone"]
    finally:
        bell._state_listeners.pop(pk, None)
