"""watch() follows a process run by a daemon worker, woken by state bells over RabbitMQ.

The watcher's poll is made (almost) never to look again: every event after the first then comes
from a bell the worker's lifecycle rang through RabbitMQ, into this interpreter's broker.  (That
the poll alone follows a daemon process is test_async_platform's SQLite case, which has no bell
between processes; a lost bell with the broker unreachable is tests/engine/test_watch_bells.py.)
"""

from __future__ import annotations

import asyncio
import sys

from plait.orm import Float, ProcessState
from plait.workflows.demo import NewtonSqrtWorkChain

NEVER = 3600.0


async def test_watch_hears_each_change_of_a_daemon_process_over_rabbitmq(daemon, monkeypatch):
    import plait.storage
    from conftest import RABBITMQ_URL, require_server

    require_server("RabbitMQ", "127.0.0.1", 5672)
    plait.storage.create_profile("rmqbells", broker_url=RABBITMQ_URL)
    monkeypatch.setenv("PLAIT_PROFILE", "rmqbells")
    plait.storage.reset()
    monkeypatch.setattr(sys.modules["plait.engine.watch"], "MIN_INTERVAL", NEVER)
    daemon(workers=1)
    node = await plait.asubmit(NewtonSqrtWorkChain, a=Float(2.0))

    async def follow() -> list:
        return [event async for event in plait.watch(node, interval=NEVER)]

    events = await asyncio.wait_for(follow(), 90)
    assert events[-1].terminal and events[-1].state is ProcessState.FINISHED and events[-1].exit_status == 0
    seqs = [e.checkpoint_seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) > 2  # the steps were heard one by one
    assert any(e.state is ProcessState.RUNNING for e in events)
