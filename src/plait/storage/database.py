"""The connection to a profile's database: SQLite (default) or PostgreSQL.

Transactions come in two kinds:

* :meth:`Database.write` — a write transaction.  On SQLite it starts with
  ``BEGIN IMMEDIATE``: the write lock is taken up front, so a writer waits
  (up to the busy timeout) instead of failing with "database is locked"
  when another process committed in between, which is what a deferred
  transaction does when it upgrades a stale read lock.
* :meth:`Database.read` — a read-only snapshot.

SQLite runs in WAL mode (readers never block the writer) with
``synchronous=NORMAL``: a commit survives a crash of the process, which is
what checkpoints need; a power cut may lose the last commits.

The schema is created by the Alembic migrations on a fresh database.  A
database whose schema is older than this version of plait is refused with
a message telling to run ``plait storage migrate``; it is never migrated
behind the user's back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

__all__ = ["SCHEMA_REVISION", "Database", "SchemaVersionError"]

#: the Alembic revision this version of plait expects (the head of migrations/versions).
SCHEMA_REVISION = "0008"

#: seconds a writer waits for SQLite's write lock before giving up.
SQLITE_BUSY_TIMEOUT = 60.0


class SchemaVersionError(Exception):
    """The database schema does not match this version of plait."""


def _json_serializer(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class Database:
    """A profile's database engine, schema check and transaction helpers."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: Engine = self._create_engine(url, echo)
        self._checked = False
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        #: SQLite: the one connection every write of this interpreter uses while it holds
        #: ``_write_lock`` (and the pid that opened it), see :meth:`write`
        self._writer: Connection | None = None
        self._writer_pid = 0

    def _create_engine(self, url: str, echo: bool) -> Engine:
        if self.is_sqlite:
            engine = create_engine(
                url,
                echo=echo,
                json_serializer=_json_serializer,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
                pool_size=8,
                max_overflow=32,
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                # Take transaction control away from the driver so BEGIN is ours.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # straight to the driver: through exec_driver_sql a BEGIN cost as much as a
                # small UPDATE, and a daemon worker begins thousands of transactions a minute
                driver = conn.connection.driver_connection
                assert driver is not None
                writing = conn.get_execution_options().get("plait_write")
                driver.execute("BEGIN IMMEDIATE" if writing else "BEGIN")

            return engine
        return create_engine(
            url,
            echo=echo,
            json_serializer=_json_serializer,
            pool_size=8,
            max_overflow=32,
            pool_pre_ping=True,
            # a server that does not answer fails in 10 s, unless the URL says otherwise
            connect_args={} if "connect_timeout=" in url else {"connect_timeout": 10},
        )

    # -- schema ----------------------------------------------------------------
    def ensure_schema(self, *, lock_dir: Path | None = None) -> None:
        """Create the schema on an empty database; refuse a database of another version.

        Raises:
            SchemaVersionError: the database was made by another version of plait.
        """
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            revision = self.current_revision()
            if revision is None:
                with _file_lock(lock_dir):
                    if self.current_revision() is None:
                        self.migrate()
                revision = self.current_revision()
            if revision != SCHEMA_REVISION:
                raise SchemaVersionError(
                    f"the database {self.display_url} has schema revision {revision}, this plait needs "
                    f"{SCHEMA_REVISION}: run `plait storage migrate` (back it up first)"
                )
            self._checked = True

    @property
    def display_url(self) -> str:
        """The URL without a password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def current_revision(self) -> str | None:
        """The Alembic revision stored in the database, or None for an empty database."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
                conn.rollback()
        except (OperationalError, ProgrammingError):
            return None
        return row[0] if row else None

    def migrate(self, revision: str = "head", *, lock_dir: Path | None = None) -> None:
        """Run the Alembic migrations up to ``revision`` (imports Alembic only here).

        With ``lock_dir`` (the profile folder) two processes migrating at once
        queue on a file lock instead of racing.
        """
        from plait.storage.migrations import upgrade

        with _file_lock(lock_dir), self.engine.begin() as conn:
            upgrade(conn, revision)

    @staticmethod
    def known_revisions() -> list[str]:
        """Every revision of the migrations shipped with this plait, oldest first."""
        from alembic.script import ScriptDirectory

        from plait.storage.migrations import alembic_config

        script = ScriptDirectory.from_config(alembic_config())
        return [rev.revision for rev in reversed(list(script.walk_revisions()))]

    # -- transactions ----------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on success and rolled back on error.

        On SQLite the threads of one interpreter queue for the write lock on a
        Python lock first: SQLite's own busy handler makes a waiting writer
        sleep in growing steps (up to 100 ms each), so with a dozen threads
        writing, most of the time went to sleeping while the lock was free.
        Other interpreters on the same file still meet SQLite's handler.  A
        thread that waits longer than the busy timeout goes on to SQLite,
        which then answers as before (``database is locked``).
        """
        queued = self.is_sqlite and self._write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT)
        try:
            # The writes of one interpreter take turns on one connection kept open for them:
            # checking a connection out of the pool and back in for each transaction cost a
            # fifth of a daemon worker's time when it parked thousands of work chains.  Without
            # the lock (PostgreSQL, or a wait that timed out) a write has a connection of its own.
            conn = self._writer_connection() if queued else self._open_write_connection()
            try:
                with conn.begin():
                    yield conn
            finally:
                if not queued:
                    conn.close()
        finally:
            if queued:
                self._write_lock.release()

    def _open_write_connection(self) -> Connection:
        return self.engine.connect().execution_options(plait_write=True)

    def _writer_connection(self) -> Connection:
        """(holding ``_write_lock``) The kept write connection, opened on first use.

        A new one after a fork (the parent's belongs to the parent) or once the old one was
        closed or invalidated.
        """
        conn = self._writer
        if conn is None or conn.closed or conn.invalidated or self._writer_pid != os.getpid():
            conn = self._open_write_connection()
            self._writer, self._writer_pid = conn, os.getpid()
        elif conn.in_transaction():  # never expected: a caller used it outside its block
            conn.rollback()
        return conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (rolled back at the end)."""
        with self.engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    def analyze(self) -> None:
        """Refresh the statistics the query planner reads (``ANALYZE``), after a bulk load.

        An SQLite database has none until it is analysed, and without them SQLite guesses that a
        lookup of one ``node_type`` finds ten rows: a query of the inputs of ten thousand
        calculations with ``attributes.value > N`` then starts from every calculation instead
        of from the index of values (``ix_nodes_attributes_value``), seven times slower at
        10,000 calculations.  PostgreSQL's autovacuum analyses changed tables by itself, some
        time after a load; this does it now.  A few seconds for a million nodes.
        """
        with self.write() as conn:  # both databases analyse inside a transaction (unlike VACUUM)
            conn.exec_driver_sql("ANALYZE")

    def dispose(self) -> None:
        """Close every pooled connection (and the kept write connection, once no write runs)."""
        if self._writer is not None and self._write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT):
            try:
                writer, self._writer = self._writer, None
                if writer is not None and self._writer_pid == os.getpid():
                    writer.close()
            finally:
                self._write_lock.release()
        self.engine.dispose()


@contextlib.contextmanager
def _file_lock(folder: Path | None) -> Iterator[None]:
    """Serialise schema creation between processes sharing a profile folder."""
    if folder is None:
        yield
        return
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".schema.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
