"""The database: schema from migrations, SQLite settings, writers under contention, PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from plait.storage import get_backend
from plait.storage.database import SCHEMA_REVISION, Database, SchemaVersionError
from plait.storage.schema import metadata


def _compare(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    database = Database(url)
    database.ensure_schema()
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    database.dispose()
    return diff


def test_migrations_build_exactly_the_schema_on_sqlite(tmp_path):
    assert _compare(f"sqlite:///{tmp_path / 'x.sqlite'}") == []


def test_migrations_build_exactly_the_schema_on_postgresql(postgres_url):
    from conftest import drop_plait_tables

    drop_plait_tables(postgres_url)
    assert _compare(postgres_url.replace("postgresql://", "postgresql+psycopg://")) == []


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    backend = get_backend()
    with backend.database.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_old_schema_is_refused_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    database = Database(url)
    database.ensure_schema()
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    database.dispose()
    with pytest.raises(
        SchemaVersionError, match=f"revision 0000, this plait needs {SCHEMA_REVISION}.*plait storage migrate"
    ):
        Database(url).ensure_schema()


def test_concurrent_writers_wait_instead_of_failing():
    """Eight threads each commit 40 write transactions that read-then-write: no 'database is locked'."""
    from plait.orm import Int

    backend = get_backend()
    errors = []

    def writer(seed: int) -> None:
        try:
            for i in range(40):
                with backend.transaction():
                    backend.count_nodes()  # a read first: a deferred transaction would deadlock here
                    Int(seed * 1000 + i).store()
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert backend.count_nodes() == 8 * 40


def test_two_processes_write_the_same_sqlite_file(tmp_path):
    import subprocess
    import sys

    script = "from plait.orm import Int\nfor i in range(150):\n    Int(i).store()\n"
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert get_backend().count_nodes() == 450


def test_transaction_rolls_back_everything_on_error():
    from plait.orm import Int

    backend = get_backend()
    with pytest.raises(RuntimeError), backend.transaction():
        Int(1).store()
        Int(2).store()
        raise RuntimeError("stop")
    assert backend.count_nodes() == 0


def _upgrade_copies_node_types(url: str) -> None:
    """A database at 0005 with process rows, migrated to the head: each row gets its node's type."""
    from sqlalchemy.exc import IntegrityError

    database = Database(url)
    database.migrate("0005")
    with database.engine.begin() as conn:
        for pk, node_type in (
            (1, "process.calcfunction"),
            (2, "process.workflow.workchain"),
            (3, "data.core.int"),
        ):
            conn.execute(
                text(
                    "INSERT INTO nodes (id, uuid, node_type, label, description, ctime, mtime, attributes, "
                    "extras, files) VALUES (:pk, :uuid, :type, '', '', :now, :now, '{}', '{}', '{}')"
                ),
                {
                    "pk": pk,
                    "uuid": f"00000000-0000-0000-0000-00000000000{pk}",
                    "type": node_type,
                    "now": "2026-12-01",
                },
            )
        for pk in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO processes (node_id, state, paused, process_label, checkpoint_seq, "
                    "submitted, mtime) VALUES (:pk, 'finished', false, 'f', 0, false, '2026-12-01')"
                ),
                {"pk": pk},
            )
    database.migrate()
    assert database.current_revision() == SCHEMA_REVISION
    with database.engine.connect() as conn:
        copied = conn.execute(text("SELECT node_id, node_type FROM processes ORDER BY node_id")).all()
        # and migration 0008 their creation time
        differ = conn.execute(
            text(
                "SELECT count(*) FROM processes JOIN nodes ON id = node_id "
                "WHERE processes.ctime != nodes.ctime"
            )
        ).scalar_one()
        unset = conn.execute(text("SELECT count(*) FROM processes WHERE ctime IS NULL")).scalar_one()
    assert [tuple(r) for r in copied] == [(1, "process.calcfunction"), (2, "process.workflow.workchain")]
    assert differ == unset == 0
    with pytest.raises(IntegrityError), database.engine.begin() as conn:  # the column is NOT NULL
        conn.execute(
            text(
                "INSERT INTO processes (node_id, state, paused, process_label, checkpoint_seq, submitted, "
                "mtime) VALUES (3, 'finished', false, 'f', 0, false, '2026-12-01')"
            )
        )
    database.dispose()


def test_migrations_0006_and_0008_copy_each_process_node_type_and_ctime_on_sqlite(tmp_path):
    _upgrade_copies_node_types(f"sqlite:///{tmp_path / 'old.sqlite'}")


def test_migrations_0006_and_0008_copy_each_process_node_type_and_ctime_on_postgresql(postgres_url):
    from conftest import drop_plait_tables

    drop_plait_tables(postgres_url)
    _upgrade_copies_node_types(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    drop_plait_tables(postgres_url)


def _upgrade_flags_waiting_parents(url: str) -> None:
    """A database at 0006 with a parked parent, migrated to the head: its row says it waits."""
    database = Database(url)
    database.migrate("0006")
    with database.engine.begin() as conn:
        for pk in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO nodes (id, uuid, node_type, label, description, ctime, mtime, attributes, "
                    "extras, files) VALUES (:pk, :uuid, 'process.workflow.workchain', '', '', :now, :now, "
                    "'{}', '{}', '{}')"
                ),
                {"pk": pk, "uuid": f"00000000-0000-0000-0000-00000000000{pk}", "now": "2026-12-01"},
            )
            conn.execute(
                text(
                    "INSERT INTO processes (node_id, state, paused, process_label, checkpoint_seq, "
                    "submitted, mtime, node_type) VALUES (:pk, 'waiting', false, 'w', 0, true, "
                    "'2026-12-01', 'process.workflow.workchain')"
                ),
                {"pk": pk},
            )
        conn.execute(text("INSERT INTO process_waits (parent_id, child_id) VALUES (1, 2)"))
    database.migrate()
    with database.engine.connect() as conn:
        flags = conn.execute(text("SELECT node_id, waits_on_children FROM processes ORDER BY node_id")).all()
    assert [(pk, bool(flag)) for pk, flag in flags] == [(1, True), (2, False), (3, False)]
    database.dispose()


def test_migration_0007_flags_the_processes_that_wait_for_children_on_sqlite(tmp_path):
    _upgrade_flags_waiting_parents(f"sqlite:///{tmp_path / 'old.sqlite'}")


def test_migration_0007_flags_the_processes_that_wait_for_children_on_postgresql(postgres_url):
    from conftest import drop_plait_tables

    drop_plait_tables(postgres_url)
    _upgrade_flags_waiting_parents(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    drop_plait_tables(postgres_url)
