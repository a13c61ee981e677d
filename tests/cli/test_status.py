"""``plait status``."""

from __future__ import annotations

import subprocess

import plait.storage
from plait.cli import status as status_module
from plait.cli.status import ServiceStatus
from plait.storage import create_profile
from plait.storage.database import SCHEMA_REVISION

from .helpers import assert_one_line_error, plait_command


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
    # a wrong password (or no server): unreachable either way, and the password is never shown
    create_profile("mq", broker_url="amqp://guest:hunter2@127.0.0.1:5672/plait")
    result = invoke("-P", "mq", "status", code=1)
    assert "amqp://guest:***@127.0.0.1:5672/plait" in result.output
    assert "hunter2" not in result.output
    assert_one_line_error(result, "the broker of profile 'mq' is not reachable")


def test_daemon_hook_is_shown(invoke, monkeypatch):
    seen = []

    def running(profile):
        seen.append(profile.name)
        return ServiceStatus(True, "running, 2 workers")

    monkeypatch.setattr(status_module, "_daemon_status", running)
    result = invoke("status")
    assert seen == ["default"]
    assert "ok  running, 2 workers" in result.stdout


def test_status_of_a_rabbitmq_broker(invoke):
    from conftest import RABBITMQ_URL, require_server

    require_server("RabbitMQ", "127.0.0.1", 5672)
    create_profile("mq", broker_url=RABBITMQ_URL)
    result = invoke("-P", "mq", "status")
    broker = next(line for line in result.stdout.splitlines() if line.startswith("broker"))
    assert "ok  rabbitmq (amqp://guest:***@127.0.0.1:5672/), reachable" in broker
    assert "guest:guest" not in result.stdout


def test_status_fails_when_the_rabbitmq_broker_is_unreachable(invoke):
    create_profile("mq", broker_url="amqp://guest:guest@127.0.0.1:1/")  # nothing listens on port 1
    result = invoke("-P", "mq", "status", code=1)
    broker = next(line for line in result.stdout.splitlines() if line.startswith("broker"))
    assert "FAILED" in broker and "127.0.0.1:1" in broker
    assert "database  ok  reachable" in result.stdout  # the database is fine: only the broker fails
    line = assert_one_line_error(result, "the broker of profile 'mq' is not reachable", "127.0.0.1:1")
    assert "guest:guest" not in result.output and "guest:***@" in line


def test_an_unreachable_broker_is_one_line_from_the_console_script(plait_home):
    """The AMQP library logs the failure itself; the console script still prints one line, no log noise."""
    create_profile("mq", broker_url="amqp://guest:guest@127.0.0.1:1/")
    command = [*plait_command(), "-P", "mq", "status"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: the broker of profile 'mq' is not reachable: cannot reach RabbitMQ")
    assert "amqp://guest:***@127.0.0.1:1/" in lines[0]
