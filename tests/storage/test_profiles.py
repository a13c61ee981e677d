"""Profiles: creation, defaults, errors."""

from __future__ import annotations

import pytest

import plait.storage
from plait.storage import (
    ProfileError,
    create_profile,
    get_profile,
    list_profiles,
    load_profile,
    load_profile_config,
    set_default_profile,
)


def test_default_profile_exists_and_is_sqlite(plait_home):
    profile = get_profile()
    assert profile.name == "default" and profile.storage_backend == "sqlite"
    assert profile.path == plait_home / "profiles" / "default"
    assert profile.broker_url == "database"


def test_default_profile_is_created_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "fresh"))
    plait.storage.reset()
    assert list_profiles() == []
    backend = plait.storage.get_backend()
    assert list_profiles() == ["default"]
    assert (tmp_path / "fresh" / "profiles" / "default" / "database.sqlite").is_file()
    assert backend.count_nodes() == 0


def test_create_list_set_default_and_switch():
    create_profile("second")
    assert list_profiles() == ["default", "second"]
    assert get_profile().name == "default"
    set_default_profile("second")
    plait.storage.reset()
    assert get_profile().name == "second"
    load_profile("default")
    assert get_profile().name == "default"


def test_env_variable_selects_profile(monkeypatch):
    create_profile("other")
    monkeypatch.setenv("PLAIT_PROFILE", "other")
    plait.storage.reset()
    assert get_profile().name == "other"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "invalid profile name"),
        ({"name": "default"}, "already exists"),
        ({"name": "x", "storage_url": "mysql://h/db"}, "unsupported database URL"),
        ({"name": "y", "broker_url": "redis://h"}, "unsupported broker"),
    ],
)
def test_bad_profiles_are_refused(kwargs, message):
    with pytest.raises(ProfileError, match=message):
        create_profile(**kwargs)


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ProfileError, match=r"profile 'nope' does not exist \(known profiles: default\)"):
        load_profile_config("nope")
    with pytest.raises(ProfileError, match="does not exist"):
        set_default_profile("nope")


def test_postgres_url_is_normalised():
    profile = create_profile("pgurl", storage_url="postgres://u@h:5432/db")
    assert profile.storage_url == "postgresql+psycopg://u@h:5432/db"
    assert profile.storage_backend == "postgresql"


def test_rabbitmq_scheme_is_stored_as_amqp():
    profile = create_profile("mq", broker_url="rabbitmq://guest:guest@127.0.0.1:5672/")
    assert profile.broker_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert load_profile_config("mq").broker_url == "amqp://guest:guest@127.0.0.1:5672/"
