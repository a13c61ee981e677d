"""Two installations, one RabbitMQ virtual host, the same profile name: bells never cross (issue 11).

Exchanges were named ``plait.<profile>.work``: every ``default`` profile on a vhost shared them,
so one user's workers woke (and polled) for another's work, and a control bell for one runner
id reached a runner of the other installation.  They now carry the profile's uuid.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import plait.storage
from plait.broker import create_broker
from plait.broker.rabbitmq import exchange_names
from plait.storage import Profile, create_profile, load_profile_config


@pytest.fixture
def rabbitmq_url():
    from conftest import RABBITMQ_URL, require_server

    require_server("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


def _profile_in(home: Path, monkeypatch: pytest.MonkeyPatch, broker_url: str) -> Profile:
    """The profile ``default`` of the installation ``home`` (RabbitMQ broker), as plait loads it."""
    monkeypatch.setenv("PLAIT_HOME", str(home))
    plait.storage.reset()
    create_profile("shared-name", broker_url=broker_url)
    return load_profile_config("shared-name")


def test_exchange_names_carry_the_profile_uuid(tmp_path, monkeypatch):
    first = _profile_in(tmp_path / "a", monkeypatch, "amqp://guest:guest@127.0.0.1:5672/")
    second = _profile_in(tmp_path / "b", monkeypatch, "amqp://guest:guest@127.0.0.1:5672/")
    assert first.name == second.name and first.uuid != second.uuid
    assert exchange_names(first) == (
        f"plait.shared-name.{first.uuid}.work",
        f"plait.shared-name.{first.uuid}.control",
    )
    assert set(exchange_names(first)).isdisjoint(exchange_names(second))


@pytest.mark.rabbitmq
async def test_two_installations_with_one_profile_name_do_not_hear_each_other(
    tmp_path, monkeypatch, rabbitmq_url
):
    ours = _profile_in(tmp_path / "ours", monkeypatch, rabbitmq_url)
    theirs = _profile_in(tmp_path / "theirs", monkeypatch, rabbitmq_url)
    ringer, our_listener, their_listener = create_broker(ours), create_broker(ours), create_broker(theirs)
    for broker in (ringer, our_listener, their_listener):
        await broker.start()
    try:
        ours_hears = asyncio.ensure_future(our_listener.wait_for_work(10.0))
        theirs_hears = asyncio.ensure_future(their_listener.wait_for_work(1.0))
        their_control = asyncio.ensure_future(their_listener.wait_for_control("runner-1", 1.0))
        our_control = asyncio.ensure_future(our_listener.wait_for_control("runner-1", 10.0))
        await asyncio.sleep(0.3)  # queues bound
        await ringer.publish_work()
        await ringer.publish_control("runner-1")  # the same runner id in both installations
        assert await ours_hears and await our_control  # the bells work ...
        assert not await theirs_hears  # ... and stay in their installation
        assert not await their_control
    finally:
        for broker in (ringer, our_listener, their_listener):
            await broker.close()
