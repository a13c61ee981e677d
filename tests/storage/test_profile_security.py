"""Attack tests: another local user reads or takes over nothing of a profile (issue 11: nobody else gets in).

Every folder plait makes is mode 700 and every file 600 whatever the umask; a looser folder of
this user is tightened; a folder of another user is refused; a ``profile.toml`` holding a
password that others can read is refused with the ``chmod`` that fixes it; passwords can come
from the environment or a secrets file instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait.storage
from plait.storage import ProfileError, create_profile, load_profile_config


def rewrite(config: Path, *, drop: str, add: dict[str, str]) -> None:
    """Rewrite ``profile.toml`` without the key ``drop`` and with ``add`` (mode 600 kept)."""
    import tomllib

    import tomli_w

    data = tomllib.loads(config.read_text())
    data.pop(drop)
    config.write_text(tomli_w.dumps({**add, **data}))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``$PLAIT_HOME`` that does not exist yet (plait makes it)."""
    home = tmp_path / "fresh" / "plait-home"
    monkeypatch.setenv("PLAIT_HOME", str(home))
    plait.storage.reset()
    yield home
    plait.storage.reset()


def test_every_folder_is_700_and_every_file_600_whatever_the_umask(fresh_home, monkeypatch):
    with umask(0):  # the worst umask: nothing is taken away from 0o777 / 0o666
        create_profile("open")
        monkeypatch.setenv("PLAIT_PROFILE", "open")
        plait.storage.reset()
        backend = plait.storage.get_backend()
        key = backend.repository.put_bytes(b"a secret result")
        from plait.orm import Int

        Int(3).store()  # the database writes (and makes -wal/-shm)
        folder = fresh_home / "profiles" / "open"
        database = folder / "database.sqlite"
        for path in (fresh_home, fresh_home / "profiles", folder, folder / "repository"):
            assert mode(path) == 0o700, path
        for path in (fresh_home / "config.toml", folder / "profile.toml", database):
            assert mode(path) == 0o600, path
        extra = [Path(f"{database}{s}") for s in ("-wal", "-shm") if Path(f"{database}{s}").exists()]
        assert extra, "SQLite in WAL mode made no -wal/-shm file"
        for path in extra:
            assert mode(path) == 0o600, path
        objects = folder / "repository" / "objects"
        assert mode(objects) == 0o700
        assert mode(objects / key[:2]) == 0o700
        assert mode(objects / key[:2] / key[2:]) == 0o600


def test_looser_folders_and_files_of_this_user_are_tightened(plait_home):
    """An installation made by an older plait (umask 022): plait owns it, so it closes it."""
    folder = plait_home / "profiles" / "default"
    database = folder / "database.sqlite"
    for path in (plait_home, plait_home / "profiles", folder):
        os.chmod(path, 0o755)
    os.chmod(folder / "profile.toml", 0o644)
    os.chmod(database, 0o644)
    load_profile_config("default")
    for path in (plait_home, plait_home / "profiles", folder):
        assert mode(path) == 0o700, path
    assert mode(folder / "profile.toml") == 0o600
    assert mode(database) == 0o600


def test_a_profile_file_holding_a_password_that_others_can_read_is_refused(plait_home):
    create_profile("rmq", broker_url="amqp://guest:s3cret@127.0.0.1:5672/")
    config = plait_home / "profiles" / "rmq" / "profile.toml"
    os.chmod(config, 0o644)
    with pytest.raises(ProfileError) as caught:
        load_profile_config("rmq")
    message = str(caught.value)
    assert f"chmod 600 {config}" in message
    assert "s3cret" not in message
    assert mode(config) == 0o644  # refused, not silently tightened: the password may be known already
    os.chmod(config, 0o600)
    assert load_profile_config("rmq").broker_url == "amqp://guest:s3cret@127.0.0.1:5672/"


def test_the_cli_refuses_it_in_one_line(plait_home):
    from click.testing import CliRunner

    from plait.cli.main import cli

    create_profile("pgpass", storage_url="postgresql://u:pw@127.0.0.1:1/db")
    config = plait_home / "profiles" / "pgpass" / "profile.toml"
    os.chmod(config, 0o640)
    result = CliRunner().invoke(cli, ["profile", "show", "pgpass"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert f"chmod 600 {config}" in lines[0]


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_profile_folder_of_another_user_is_refused(plait_home):
    folder = plait_home / "profiles" / "default"
    os.chown(folder, 65534, 65534)
    try:
        with pytest.raises(ProfileError, match="belongs to uid 65534"):
            load_profile_config("default")
    finally:
        os.chown(folder, 0, 0)


def test_the_database_password_can_come_from_the_environment(plait_home, monkeypatch):
    create_profile("pg", storage_url="postgresql://plait@db.example:5432/plait")
    monkeypatch.setenv("PLAIT_DB_PASSWORD", "p@ss/word")
    profile = load_profile_config("pg")
    assert profile.storage_url == "postgresql+psycopg://plait:p%40ss%2Fword@db.example:5432/plait"
    assert "p%40ss" not in (plait_home / "profiles" / "pg" / "profile.toml").read_text()
    from sqlalchemy.engine import make_url

    assert make_url(profile.storage_url).password == "p@ss/word"


def test_a_password_in_the_url_wins_over_the_environment(plait_home, monkeypatch):
    create_profile("pg", storage_url="postgresql://plait:own@db.example:5432/plait")
    monkeypatch.setenv("PLAIT_DB_PASSWORD", "other")
    assert ":own@" in load_profile_config("pg").storage_url


def test_the_storage_url_can_come_from_a_secrets_file(plait_home, postgres_url):
    """End to end on this run's PostgreSQL database: profile.toml names the file, not the URL."""
    from conftest import drop_plait_tables

    drop_plait_tables(postgres_url)
    create_profile("pgfile", storage_url=postgres_url)
    folder = plait_home / "profiles" / "pgfile"
    secret = folder / "storage.url"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, postgres_url.encode() + b"\n")
    os.close(fd)
    config = folder / "profile.toml"
    rewrite(config, drop="storage_url", add={"storage_url_file": "storage.url"})
    profile = load_profile_config("pgfile")
    assert profile.storage_url_file == "storage.url"
    assert profile.storage_backend == "postgresql"
    assert "storage_url =" not in config.read_text()
    plait.storage.load_profile("pgfile")
    assert plait.storage.get_backend().database.current_revision()

    os.chmod(secret, 0o644)
    plait.storage.reset()
    with pytest.raises(ProfileError, match=re.escape(f"chmod 600 {secret}")):
        load_profile_config("pgfile")


def test_a_missing_secrets_file_is_named(plait_home):
    folder = plait_home / "profiles" / "default"
    rewrite(folder / "profile.toml", drop="storage_url", add={"storage_url_file": "nothere.url"})
    with pytest.raises(ProfileError, match=re.escape("nothere.url")):
        load_profile_config("default")


def test_an_older_profile_without_uuid_gets_one_written_once(plait_home):
    config = plait_home / "profiles" / "default" / "profile.toml"
    text = "\n".join(line for line in config.read_text().splitlines() if not line.startswith("uuid"))
    config.write_text("# my notes\n" + text + "\n")
    first = load_profile_config("default")
    assert first.uuid
    written = config.read_text()
    assert f'uuid = "{first.uuid}"' in written and "# my notes" in written
    assert load_profile_config("default").uuid == first.uuid
    assert mode(config) == 0o600


def test_new_profiles_have_distinct_uuids(plait_home):
    made = create_profile("a")
    assert made.uuid != create_profile("b").uuid
    assert load_profile_config("a").uuid == made.uuid


def test_a_postgresql_url_without_a_database_is_refused(plait_home):
    for url in ("postgresql://plait@127.0.0.1:5432", "postgresql://plait@127.0.0.1:5432/", "postgres://h"):
        with pytest.raises(ProfileError, match="names no database"):
            create_profile("nodb", storage_url=url)
    assert not (plait_home / "profiles" / "nodb").exists()


def test_a_relative_sqlite_path_is_made_absolute(plait_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile = create_profile("rel", storage_url="sqlite:///data.sqlite")
    assert profile.storage_url == f"sqlite:///{tmp_path / 'data.sqlite'}"
    monkeypatch.chdir("/")
    assert load_profile_config("rel").storage_url == f"sqlite:///{tmp_path / 'data.sqlite'}"
    with pytest.raises(ProfileError, match="names no file"):
        create_profile("mem", storage_url="sqlite:///:memory:")
