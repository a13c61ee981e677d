"""``plait profile setup|list|show|set-default``."""

from __future__ import annotations

import uuid

import pytest

import plait.storage
from plait.storage import create_profile, list_profiles
from plait.storage.database import SCHEMA_REVISION

from .helpers import assert_one_line_error


def test_setup_creates_the_profile_and_its_schema(invoke, plait_home):
    result = invoke("profile", "setup", "work")
    assert "Created profile 'work'" in result.stdout
    assert f"schema revision {SCHEMA_REVISION}" in result.stdout
    assert "'work' is the default profile." in result.stdout  # the first profile becomes the default
    assert (plait_home / "profiles" / "work" / "database.sqlite").is_file()
    assert list_profiles() == ["work"]


def test_setup_second_profile_is_not_default_unless_asked(invoke):
    invoke("profile", "setup", "one")
    result = invoke("profile", "setup", "two")
    assert "profile set-default two" in result.stdout
    listing = invoke("profile", "list").stdout
    assert [line.split()[1] for line in listing.splitlines() if line.startswith("*")] == ["one"]

    invoke("profile", "setup", "three", "--set-default")
    listing = invoke("profile", "list").stdout
    assert [line.split()[1] for line in listing.splitlines() if line.startswith("*")] == ["three"]


def test_list_without_profiles(invoke):
    result = invoke("profile", "list")
    assert "No profiles yet" in result.stdout


def test_list_show_and_set_default(invoke, plait_home):
    invoke("profile", "setup", "alpha")
    # `profile setup` would try the broker and refuse (mq.example does not exist): made through the API
    create_profile("beta", broker_url="amqp://user:pw123@mq.example:5672/v")
    listing = invoke("profile", "list").stdout
    assert "alpha" in listing and "beta" in listing and "pw123" not in listing
    assert "amqp://user:***@mq.example:5672/v" in listing

    shown = invoke("profile", "show", "beta").stdout
    assert "beta" in shown and str(plait_home / "profiles" / "beta") in shown
    assert "amqp://user:***@mq.example:5672/v" in shown and "pw123" not in shown
    assert "(default)" not in shown

    shown = invoke("profile", "show").stdout  # the default one
    assert "alpha (default)" in shown

    assert "-P" in invoke("--help").stdout
    assert "beta" in invoke("-P", "beta", "profile", "show").stdout.splitlines()[0]

    result = invoke("profile", "set-default", "beta")
    assert "'beta' is now the default profile." in result.stdout
    assert "beta (default)" in invoke("profile", "show").stdout
    # beta's broker (mq.example) does not exist: status names the profile and fails on the broker
    assert "beta" in invoke("status", code=1).stdout.splitlines()[0]


def test_set_default_warns_about_the_environment(invoke, monkeypatch):
    invoke("profile", "setup", "alpha")
    invoke("profile", "setup", "beta")
    monkeypatch.setenv("PLAIT_PROFILE", "alpha")
    result = invoke("profile", "set-default", "beta")
    assert "$PLAIT_PROFILE=alpha" in result.stdout


def test_errors_are_one_line(invoke):
    invoke("profile", "setup", "taken")
    assert_one_line_error(invoke("profile", "setup", "taken", code=None), "profile 'taken' already exists")
    assert list_profiles() == ["taken"]  # and it is still there
    assert_one_line_error(
        invoke("profile", "setup", "bad/name", code=None), "invalid profile name 'bad/name'"
    )
    assert_one_line_error(
        invoke("profile", "setup", "m", "--db", "mysql://x@h/db", code=None), "unsupported database URL"
    )
    assert_one_line_error(
        invoke("profile", "setup", "b", "--broker", "redis://h", code=None), "unsupported broker"
    )
    assert_one_line_error(invoke("profile", "show", "nope", code=None), "profile 'nope' does not exist")
    assert_one_line_error(
        invoke("profile", "set-default", "nope", code=None), "profile 'nope' does not exist"
    )
    assert_one_line_error(invoke("profile", "setup", code=None), "Missing argument 'NAME'", code=2)


def test_setup_with_an_unreachable_database_leaves_nothing_behind(invoke, plait_home):
    invoke("profile", "setup", "first")
    config = (plait_home / "config.toml").read_bytes()
    result = invoke(
        "profile", "setup", "pg", "--db", "postgresql://u:topsecret@127.0.0.1:1/db", "--set-default", code=1
    )
    line = assert_one_line_error(
        result, "cannot use the database", "Connection refused", "'pg' was not created"
    )
    assert "topsecret" not in line and "u:***@127.0.0.1:1" in line
    assert not (plait_home / "profiles" / "pg").exists()
    assert (plait_home / "config.toml").read_bytes() == config  # the default is still 'first'
    assert list_profiles() == ["first"]


def test_setup_failure_as_the_first_profile_leaves_no_config(invoke, plait_home):
    invoke("profile", "setup", "pg", "--db", "postgresql://postgres@127.0.0.1:1/db", code=1)
    assert not (plait_home / "config.toml").exists()
    assert list_profiles() == []


def test_setup_with_a_missing_postgres_database(invoke, plait_home, postgres_url):
    from sqlalchemy.engine import make_url

    name = f"plait_missing_{uuid.uuid4().hex[:8]}"
    missing = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    result = invoke("profile", "setup", "gone", "--db", missing, code=1)
    assert_one_line_error(result, f'database "{name}" does not exist', "'gone' was not created")
    assert not (plait_home / "profiles" / "gone").exists()


@pytest.mark.postgres
def test_setup_on_postgresql(invoke, plait_home, postgres_url):
    """A profile on this run's PostgreSQL database: created, schema there (or already there), status ok."""
    from conftest import drop_plait_tables

    drop_plait_tables(postgres_url)  # start empty: an earlier test of this run may have left a schema
    name = f"pg-{uuid.uuid4().hex[:8]}"
    result = invoke("profile", "setup", name, "--db", postgres_url)
    shown_url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    assert f"{shown_url} (schema revision {SCHEMA_REVISION})" in result.stdout
    assert plait.storage.load_profile_config(name).storage_backend == "postgresql"

    status = invoke("-P", name, "status").stdout
    assert "postgresql" in status and f"reachable, schema revision {SCHEMA_REVISION}" in status

    # the profile works: a node stored through it is in PostgreSQL
    from plait.orm import Str, load_node

    plait.storage.load_profile(name)
    node = Str(f"hello from {name}").store()
    shown = invoke("-P", name, "node", "show", str(node.pk)).stdout
    assert f"hello from {name}" in shown
    plait.storage.reset()
    plait.storage.load_profile(name)
    assert load_node(node.pk).value == f"hello from {name}"


def test_show_without_name_does_not_need_storage(invoke, plait_home):
    create_profile("remote", storage_url="postgresql://x@127.0.0.1:1/y", make_default=True)
    shown = invoke("profile", "show").stdout
    assert "remote (default)" in shown and "postgresql+psycopg://x@127.0.0.1:1/y" in shown
