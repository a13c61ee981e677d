"""Fixtures shared by the whole suite.

Every test gets its own ``$PLAIT_HOME`` with a fresh SQLite ``default``
profile.  The schema is created once per session by the real Alembic
migrations into a template file, and each test starts from a copy of it.

Servers (PostgreSQL, RabbitMQ, sshd, SLURM): a test that needs one and
cannot reach it *fails* when ``PLAIT_CI`` is set (``.ci/run`` sets it), and
is skipped with the reason only outside CI.

PostgreSQL: the run creates a database of its own,
``plait_test_<pid>_<random hex>``, on the server of ``PLAIT_TEST_POSTGRES``
(the URL of a database to connect to for ``CREATE DATABASE``, by default the
``postgres`` maintenance database on 127.0.0.1:5432), the first time a test
asks for it, and drops it when the session ends.  Every PostgreSQL test
works in that database; plait's tables are dropped between tests only there
(:func:`drop_plait_tables` refuses any other database).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

#: a database on the PostgreSQL server of the tests, to connect to for CREATE/DROP DATABASE (trust auth)
POSTGRES_SERVER_URL = os.environ.get("PLAIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("PLAIT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
PLAIT_TABLES = (
    "comments",
    "group_nodes",
    "groups",
    "process_waits",
    "process_checkpoints",
    "links",
    "logs",
    "processes",
    "nodes",
    "computer_configs",
    "computers",
    "broker_messages",
    "workers",
    "alembic_version",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``postgres`` each test that uses this run's PostgreSQL database (``-m postgres`` selects them)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("any_profile") == "postgresql"
        if on_postgres or "postgres_url" in names or "postgres_profile" in names:
            item.add_marker(pytest.mark.postgres)


def require_server(name: str, host: str, port: int) -> None:
    """Fail (in CI) or skip (elsewhere) when ``host:port`` does not accept connections."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if os.environ.get("PLAIT_CI"):
            pytest.fail(f"{message}: CI must start it (.ci/run)", pytrace=False)
        pytest.skip(message)


#: the databases this run created (and will drop): the only ones whose tables a test may drop
_CREATED_DATABASES: set[str] = set()


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _server_address(url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


def drop_plait_tables(url: str) -> None:
    """Remove plait's tables from a PostgreSQL database that this test run created.

    Raises:
        ValueError: the database is not one this run created (a shared or user database is never touched).
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if name not in _CREATED_DATABASES:
        raise ValueError(f"database {name!r} was not created by this test run: its tables are not dropped")
    engine = create_engine(_psycopg_url(url))
    with engine.begin() as conn:
        for table in PLAIT_TABLES:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    """A PostgreSQL database made for this run (``plait_test_<pid>_<hex>``), dropped at its end."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    require_server("PostgreSQL", *_server_address(POSTGRES_SERVER_URL))
    server = make_url(POSTGRES_SERVER_URL)
    maintenance = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"plait_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _CREATED_DATABASES.add(name)
    try:
        yield server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        # this interpreter's bell broker LISTENs in the database: close it, or it would keep reconnecting
        with contextlib.suppress(Exception):
            from plait.engine import bell

            bell._close_ringer()
        # FORCE (PostgreSQL 13+): ends the sessions a test or a daemon worker may have left open
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        _CREATED_DATABASES.discard(name)


@pytest.fixture(scope="session")
def _template_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the current schema, made once by the real migrations."""
    from plait.storage.database import Database

    folder = tmp_path_factory.mktemp("template-db")
    path = folder / "database.sqlite"
    database = Database(f"sqlite:///{path}")
    database.ensure_schema()
    database.dispose()
    return path


@pytest.fixture(autouse=True)
def plait_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _template_database: Path) -> Iterator[Path]:
    """An isolated ``$PLAIT_HOME`` with a ready SQLite ``default`` profile."""
    import plait.storage
    from plait.storage import create_profile

    home = tmp_path / "plait-home"
    monkeypatch.setenv("PLAIT_HOME", str(home))
    monkeypatch.delenv("PLAIT_PROFILE", raising=False)
    plait.storage.reset()
    profile = create_profile("default")
    shutil.copyfile(_template_database, profile.path / "database.sqlite")
    yield home
    plait.storage.reset()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """The URL (``postgresql://``) of this run's own PostgreSQL database; fails in CI, skips elsewhere."""
    require_server("PostgreSQL", *_server_address(POSTGRES_SERVER_URL))
    return request.getfixturevalue("_postgres_database")


@pytest.fixture
def postgres_profile(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make a fresh PostgreSQL profile current (plait's tables dropped first, in this run's database)."""
    import plait.storage
    from plait.storage import create_profile

    drop_plait_tables(postgres_url)
    create_profile("pg", storage_url=postgres_url)
    monkeypatch.setenv("PLAIT_PROFILE", "pg")
    plait.storage.reset()
    yield "pg"
    plait.storage.reset()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_profile(request: pytest.FixtureRequest) -> str:
    """Run the test once on the SQLite profile and once on a PostgreSQL profile."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_profile")
    return "default"
