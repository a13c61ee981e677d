"""``plait profile setup`` refuses URLs that would put plait's data somewhere unintended (issue 11).

A PostgreSQL URL without a database name used libpq's default database (plait's tables went
into someone else's database); a relative SQLite path depended on the folder plait was run
from; a broker URL was never tried, so a wrong password showed up only in the daemon's log.
"""

from __future__ import annotations

import os

import pytest

from .helpers import assert_one_line_error


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:1", "postgresql://postgres@127.0.0.1:1/", "postgres://postgres@h"],
)
def test_a_postgresql_url_without_a_database_name_is_refused(invoke, plait_home, url):
    """Refused before any connection (port 1: nothing listens, so a connection attempt would say so)."""
    result = invoke("profile", "setup", "nodb", "--db", url, code=None)
    assert_one_line_error(result, "names no database", "postgresql://user@host:5432/dbname")
    assert not (plait_home / "profiles" / "nodb").exists()


def test_the_password_of_a_refused_url_is_not_shown(invoke, plait_home):
    result = invoke("profile", "setup", "nodb", "--db", "postgresql://me:hunter2@127.0.0.1:1", code=None)
    line = assert_one_line_error(result, "names no database")
    assert "hunter2" not in line and "me:***@" in line


def test_a_relative_sqlite_path_is_made_absolute_and_said(invoke, plait_home, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke("profile", "setup", "rel", "--db", "sqlite:///data/rel.sqlite", code=None)
    assert result.exit_code != 0  # the folder data/ does not exist: SQLite cannot make the file
    (work / "data").mkdir()
    result = invoke("profile", "setup", "rel", "--db", "sqlite:///data/rel.sqlite")
    absolute = work / "data" / "rel.sqlite"
    assert f"made absolute: sqlite:///{absolute}" in result.stdout
    assert absolute.is_file()
    monkeypatch.chdir("/")  # the profile works from anywhere
    assert str(absolute) in invoke("profile", "show", "rel").stdout


def test_an_in_memory_sqlite_database_is_refused(invoke, plait_home):
    result = invoke("profile", "setup", "mem", "--db", "sqlite:///:memory:", code=None)
    assert_one_line_error(result, "names no file")


@pytest.fixture
def rabbitmq():
    from conftest import RABBITMQ_URL, require_server

    require_server("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


@pytest.mark.rabbitmq
def test_a_broker_with_a_wrong_password_is_refused_at_setup(invoke, plait_home, rabbitmq):
    result = invoke(
        "profile", "setup", "badmq", "--broker", "amqp://guest:wrong-pw@127.0.0.1:5672/", code=None
    )
    line = assert_one_line_error(
        result, "cannot use the broker amqp://guest:***@127.0.0.1:5672/", "not created"
    )
    assert "wrong-pw" not in line
    assert not (plait_home / "profiles" / "badmq").exists()


@pytest.mark.rabbitmq
def test_an_unreachable_broker_is_refused_at_setup(invoke, plait_home, rabbitmq):
    result = invoke("profile", "setup", "nomq", "--broker", "amqp://guest:guest@127.0.0.1:1/", code=None)
    assert_one_line_error(result, "cannot use the broker amqp://guest:***@127.0.0.1:1/", "not created")
    assert not (plait_home / "profiles" / "nomq").exists()


@pytest.mark.rabbitmq
def test_a_working_broker_is_accepted(invoke, plait_home, rabbitmq):
    result = invoke("profile", "setup", "mq", "--broker", rabbitmq)
    assert "broker   amqp://guest:***@" in result.stdout
    config = plait_home / "profiles" / "mq" / "profile.toml"
    assert os.stat(config).st_mode & 0o777 == 0o600  # it holds the broker's password
