"""Bells (database broker on SQLite and PostgreSQL, RabbitMQ), control requests, claiming and parking."""

from __future__ import annotations

import asyncio
import threading

import pytest

import plait.storage
from plait.broker import BrokerError, create_broker
from plait.broker.control import ControlRequest, ControlServer, ControlTimeout, post_request, wait_for_reply
from plait.orm import Int
from plait.storage import create_profile, get_backend, get_profile


async def test_sqlite_bell_wakes_a_waiter_in_this_process():
    broker = create_broker(get_profile())
    await broker.start()
    assert not await broker.wait_for_work(0.05)  # nothing rang
    asyncio.get_running_loop().call_later(0.05, broker.ring_work)
    assert await broker.wait_for_work(5.0)
    threading.Thread(target=lambda: broker.ring_control("me")).start()  # from another thread
    assert await broker.wait_for_control("me", 5.0)
    assert "SQLite" in await broker.describe()
    await broker.close()


async def test_postgres_notify_reaches_another_connection(postgres_profile):
    listener = create_broker(get_profile())
    ringer = create_broker(get_profile())
    await listener.start()
    await ringer.start()
    try:
        waiter = asyncio.ensure_future(listener.wait_for_work(10.0))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(ringer.ring_work)  # a NOTIFY on its own connection
        assert await waiter
        control = asyncio.ensure_future(listener.wait_for_control("worker-a", 10.0))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(ringer.ring_control, "worker-b")  # someone else's bell
        await asyncio.sleep(0.3)
        assert not control.done()
        await asyncio.to_thread(ringer.ring_control, "worker-a")
        assert await control
        assert "LISTEN/NOTIFY" in await listener.describe()
    finally:
        await listener.close()
        await ringer.close()


@pytest.fixture
def rabbitmq_profile(monkeypatch):
    from conftest import RABBITMQ_URL, require_server

    require_server("RabbitMQ", "127.0.0.1", 5672)
    create_profile("rmq", broker_url=RABBITMQ_URL)
    monkeypatch.setenv("PLAIT_PROFILE", "rmq")
    plait.storage.reset()
    return get_profile()


@pytest.mark.rabbitmq
async def test_rabbitmq_bells_fan_out_and_route(rabbitmq_profile):
    first, second = create_broker(rabbitmq_profile), create_broker(rabbitmq_profile)
    await first.start()
    await second.start()
    try:
        waits = [asyncio.ensure_future(b.wait_for_work(10.0)) for b in (first, second)]
        controls = asyncio.ensure_future(second.wait_for_control("runner-2", 10.0))

        async def ring_until_heard(ring, *heard: asyncio.Future) -> None:
            # the queues are bound by the first wait, a few round trips after it starts: a bell rung
            # before that is lost (by design), so ring until it is heard
            while not all(f.done() for f in heard):
                await ring()
                await asyncio.sleep(0.1)

        await asyncio.wait_for(ring_until_heard(first.publish_work, *waits), 10.0)
        assert all(await asyncio.gather(*waits))  # both workers hear the work bell
        await asyncio.wait_for(ring_until_heard(lambda: first.publish_control("runner-2"), controls), 10.0)
        assert await controls  # runner-2's queue is bound now
        other = asyncio.ensure_future(second.wait_for_control("runner-2", 1.0))
        await first.publish_control("runner-1")
        assert not await other  # a bell for runner-1 does not reach runner-2
        mine = asyncio.ensure_future(second.wait_for_control("runner-2", 10.0))
        await first.publish_control("runner-2")
        assert await mine
        assert (await first.describe()).startswith("rabbitmq (amqp://guest:***@")
    finally:
        await first.close()
        await second.close()


@pytest.mark.rabbitmq
async def test_unreachable_rabbitmq_is_one_clear_error(rabbitmq_profile):
    rabbitmq_profile.broker_url = "amqp://guest:secret@127.0.0.1:1/"
    broker = create_broker(rabbitmq_profile)
    broker.connect_timeout = 2.0
    with pytest.raises(BrokerError, match=r"cannot reach RabbitMQ at amqp://guest:\*\*\*@127.0.0.1:1/"):
        await broker.start()


async def test_control_request_round_trip():
    handled = []

    async def handler(request: ControlRequest) -> dict:
        handled.append((request.pk, request.action, request.payload))
        return {"ok": True, "message": f"{request.action} done"}

    server = asyncio.ensure_future(ControlServer("runner-x", handler, poll_interval=0.05).run())
    try:
        request = ControlRequest(pk=7, action="pause", payload={"why": "test"}, reply_to="cli-1")
        await asyncio.to_thread(post_request, "runner-x", request)
        reply = await asyncio.to_thread(wait_for_reply, "cli-1", request.request_id, 10.0)
        assert reply == {"ok": True, "message": "pause done"}
        assert handled == [(7, "pause", {"why": "test"})]
        with pytest.raises(ControlTimeout):
            await asyncio.to_thread(wait_for_reply, "cli-1", "never-sent", 0.2)
    finally:
        server.cancel()
    with pytest.raises(ValueError, match="unknown control action 'explode'"):
        post_request("runner-x", ControlRequest(pk=1, action="explode"))


def _submitted(count: int) -> list[int]:
    from plait import submit
    from wf_library import Counter

    return [submit(Counter, n=Int(1)).pk for _ in range(count)]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_claims_split_the_work(kind, request):
    if kind == "postgresql":
        request.getfixturevalue("postgres_profile")
    pks = set(_submitted(40))
    backend = get_backend()
    claimed: list[list[int]] = [[], [], [], []]

    def claimer(index: int) -> None:
        while True:
            got = backend.claim_runnable(f"worker-{index}", 30.0, 3)
            if not got:
                return
            claimed[index].extend(got)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [pk for part in claimed for pk in part]
    assert sorted(everything) == sorted(pks)  # each process claimed exactly once
    assert backend.claim_runnable("late", 30.0, 10) == []  # all leased now


def test_parked_parent_is_runnable_exactly_when_its_last_child_ends():
    backend = get_backend()
    parent, first, second = _submitted(3)
    assert set(backend.claim_runnable("w", 30.0, 10)) == {parent, first, second}
    assert backend.park(parent, "w", [first, second], "waiting for 2")
    row = backend.get_process(parent)
    assert row["lease_owner"] is None and row["status"] == "waiting for 2"
    backend.release_leases("w")
    assert set(backend.claim_runnable("w2", 30.0, 10)) == {first, second}  # not the parent
    backend.update_process(first, state="finished")
    assert backend.release_waits_on(first) == []  # still waiting for the second
    backend.update_process(second, state="finished")
    assert backend.release_waits_on(second) == [parent]
    assert backend.claim_runnable("w3", 30.0, 10) == [parent]
    # parking on children that already ended does not park
    assert not backend.park(parent, "w3", [first, second], "waiting")
