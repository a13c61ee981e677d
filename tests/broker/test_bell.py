"""The work bell of a process: one broker connection per interpreter, for the profile in use."""

from __future__ import annotations

import types

import pytest

import plait.broker
import plait.storage
from plait.engine import bell


class FakeBroker:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def close(self) -> None:
        self.log.append(f"close {self.name}")

    def ring_work(self) -> None:
        self.log.append(f"ring {self.name}")


@pytest.fixture
def fake_profiles(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], dict[str, str]]:
    log: list[str] = []
    current = {"name": "one"}

    def get_profile() -> types.SimpleNamespace:
        return types.SimpleNamespace(name=current["name"], broker_url="amqp://x", storage_backend="sqlite")

    monkeypatch.setattr(plait.storage, "get_profile", get_profile)
    monkeypatch.setattr(plait.broker, "create_broker", lambda profile: FakeBroker(profile.name, log))
    monkeypatch.setattr(bell, "_ringer", None)
    monkeypatch.setattr(bell, "_ringer_profile", None)
    return log, current


def test_switching_profile_closes_the_bell_of_the_profile_before(fake_profiles):
    """Defect guarded: the ringer of the profile used before stayed open (a RabbitMQ connection or a
    PostgreSQL LISTEN of a profile nobody used any more) when a script switched profiles."""
    log, current = fake_profiles
    bell.ring_work()
    bell.ring_work()
    current["name"] = "two"
    bell.ring_work()
    assert log == ["start one", "ring one", "ring one", "close one", "start two", "ring two"]
