"""Fixtures shared by the whole suite.

Every test gets its own ``$PLAIT_HOME`` with a fresh SQLite ``default``
profile.  The schema is created once per session by the real Alembic
migrations into a template file, and each test starts from a copy of it.

Servers (PostgreSQL, RabbitMQ, sshd, SLURM): a test that needs one and
cannot reach it *fails* when ``PLAIT_CI`` is set (``.ci/run`` sets it), and
is skipped with the reason only outside CI.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("PLAIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("PLAIT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
PLAIT_TABLES = (
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


def drop_plait_tables(url: str) -> None:
    """Remove plait's tables from a PostgreSQL database (tests share the `test` database)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for table in PLAIT_TABLES:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


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
def postgres_url() -> str:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def postgres_profile(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make a fresh PostgreSQL profile current (plait's tables dropped first)."""
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
