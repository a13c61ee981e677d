"""``plait status``."""

from __future__ import annotations

import plait.storage
from plait.cli import status as status_module
from plait.cli.status import ServiceStatus
from plait.storage import create_profile
from plait.storage.database import SCHEMA_REVISION

from .helpers import assert_one_line_error


def test_status_of_the_default_profile(invoke, plait_home):
    result = invoke("status")
    out = result.stdout
    assert "default (default)" in out
    assert str(plait_home / "profiles" / "default") in out
    assert "sqlite" in out and "database.sqlite" in out
    assert f"reachable, schema revision {SCHEMA_REVISION}" in out
    assert "database (embedded in the storage database)" in out
    assert "daemon" in out and "not running" in out


def test_status_counts_nodes(invoke, demo_pk):
    count = plait.storage.get_backend().count_nodes()
    assert count > 0
    lines = [line.split() for line in invoke("status").stdout.splitlines()]
    assert ["nodes", str(count)] in lines


def test_status_fails_when_the_database_is_unreachable(invoke):
    create_profile("broken", storage_url="postgresql://someone:s3cret@127.0.0.1:1/nothing")
    result = invoke("-P", "broken", "status", code=1)
    assert "unreachable" in result.stdout and "FAILED" in result.stdout
    assert "s3cret" not in result.output and "someone:***@127.0.0.1:1" in result.stdout
    assert_one_line_error(result, "the database of profile 'broken' is not usable")


def test_status_hides_the_broker_password(invoke):
    create_profile("mq", broker_url="amqp://guest:hunter2@localhost:5672/plait")
    result = invoke("-P", "mq", "status")
    assert "amqp://guest:***@localhost:5672/plait" in result.stdout
    assert "hunter2" not in result.stdout


def test_daemon_hook_is_shown(invoke, monkeypatch):
    seen = []

    def running(profile):
        seen.append(profile.name)
        return ServiceStatus(True, "running, 2 workers")

    monkeypatch.setattr(status_module, "_daemon_status", running)
    result = invoke("status")
    assert seen == ["default"]
    assert "ok  running, 2 workers" in result.stdout
