"""SQLite writes of one interpreter take turns on one kept connection (``Database.write``).

Checking a connection out of the pool and back in for every write transaction cost a fifth of
a daemon worker's time when it parked thousands of work chains, so the writers, which queue on
the interpreter's write lock anyway, share one connection kept open for them.  These tests pin
what that must not break: every thread's write commits, a failed write is rolled back and the
next one works, and a connection is never used after ``dispose`` or by another process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event, text

from plait.storage.database import Database


@pytest.fixture
def database(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER NOT NULL)"))
    yield db
    db.dispose()


def _checkouts(db: Database) -> list[int]:
    seen: list[int] = []
    event.listen(db.engine, "checkout", lambda *args: seen.append(1))
    return seen


def _values(db: Database) -> list[int]:
    with db.read() as conn:
        return sorted(conn.execute(text("SELECT x FROM t")).scalars())


def test_writes_from_many_threads_share_one_connection_and_all_commit(database: Database):
    checkouts = _checkouts(database)
    drivers: set[int] = set()
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for x in range(start, start + 50):
                with database.write() as conn:
                    drivers.add(id(conn.connection.driver_connection))
                    conn.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": x})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(1000 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert _values(database) == sorted(1000 * i + k for i in range(4) for k in range(50))
    assert len(drivers) == 1  # one driver connection for the 200 writes
    assert len(checkouts) == 1  # the one read above; no write checked a connection out


def test_a_failed_write_is_rolled_back_and_the_next_write_works(database: Database):
    with pytest.raises(RuntimeError, match="half way"):
        with database.write() as conn:
            conn.execute(text("INSERT INTO t (x) VALUES (1)"))
            raise RuntimeError("half way")
    with pytest.raises(Exception, match="NOT NULL"):
        with database.write() as conn:
            conn.execute(text("INSERT INTO t (x) VALUES (2)"))
            conn.execute(text("INSERT INTO t (x) VALUES (NULL)"))
    with database.write() as conn:
        conn.execute(text("INSERT INTO t (x) VALUES (3)"))
    assert _values(database) == [3]


def test_dispose_closes_the_write_connection_and_a_later_write_opens_another(database: Database):
    with database.write() as conn:
        conn.execute(text("INSERT INTO t (x) VALUES (1)"))
        first = conn
    database.dispose()
    assert first.closed
    with database.write() as conn:
        assert conn is not first
        conn.execute(text("INSERT INTO t (x) VALUES (2)"))
    assert _values(database) == [1, 2]


def test_a_connection_opened_by_another_process_is_not_used(database: Database):
    """After a fork the parent's connection is the parent's: the child opens its own."""
    with database.write() as conn:
        first = conn
    database._writer_pid = -1  # what os.getpid() differing after a fork looks like
    with database.write() as conn:
        assert conn is not first
        conn.execute(text("INSERT INTO t (x) VALUES (7)"))
    assert _values(database) == [7]


def test_writes_wait_for_the_write_in_progress(database: Database):
    """Two threads never write on the kept connection at once: the second waits for the first."""
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with database.write() as conn:
            conn.execute(text("INSERT INTO t (x) VALUES (1)"))
            inside.set()
            release.wait(30)
            order.append("first commits")

    def second() -> None:
        inside.wait(30)
        with database.write() as conn:
            order.append("second begins")
            conn.execute(text("INSERT INTO t (x) VALUES (2)"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(30)
    threads[1].join(0.3)
    assert threads[1].is_alive()  # waiting for the lock
    release.set()
    for thread in threads:
        thread.join(30)
    assert order == ["first commits", "second begins"]
    assert _values(database) == [1, 2]
