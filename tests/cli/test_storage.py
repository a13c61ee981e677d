"""``plait storage migrate`` and ``plait storage info``, on real databases at old revisions."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import plait.storage
from plait.orm import Int, load_node
from plait.storage import create_profile
from plait.storage.database import SCHEMA_REVISION, Database, SchemaVersionError
from plait.storage.migrations import upgrade

from .helpers import assert_one_line_error

OLD_NODE_UUID = str(uuid.uuid4())


def _old_database(url: str) -> None:
    """Bring an empty database to revision 0001 and put an Int node in it, with plain SQL."""
    engine = create_engine(url)
    with engine.begin() as conn:
        upgrade(conn, "0001")
        conn.execute(
            text(
                "INSERT INTO nodes "
                "(uuid, node_type, label, description, ctime, mtime, attributes, extras, files) "
                "VALUES (:uuid, 'data.core.int', 'old', 'made at revision 0001', "
                ":now, :now, :attributes, '{}', '{}')"
            ),
            {"uuid": OLD_NODE_UUID, "now": "2025-01-02 03:04:05.000000", "attributes": '{"value": 41}'},
        )
    engine.dispose()


@pytest.fixture
def old_profile(plait_home: Path) -> Path:
    """The default profile, with an SQLite database at revision 0001 holding one node."""
    profile = create_profile("default")
    path = profile.path / "database.sqlite"
    _old_database(f"sqlite:///{path}")
    return path


def test_migrate_upgrades_an_old_database_and_keeps_its_data(invoke, old_profile):
    with pytest.raises(SchemaVersionError, match="plait storage migrate"):
        plait.storage.get_backend()
    plait.storage.reset()
    refused = invoke("status", code=1)
    assert "plait storage migrate" in refused.stderr

    info = invoke("storage", "info").stdout
    assert re.search(
        rf"schema\s+revision 0001, this plait needs {SCHEMA_REVISION}: run `plait storage migrate`", info
    )
    assert re.search(r"nodes\s+1 \(1 data, 0 processes\)", info)

    result = invoke("storage", "migrate")
    assert f"from schema revision 0001 to {SCHEMA_REVISION}" in result.stdout
    assert f"Done: schema revision 0001 -> {SCHEMA_REVISION}." in result.stdout
    backups = list(old_profile.parent.glob("database.sqlite.backup-0001-*"))
    assert len(backups) == 1 and f"Backed up the database to {backups[0]}" in result.stdout
    assert Database(f"sqlite:///{backups[0]}").current_revision() == "0001"  # the copy is the old one

    plait.storage.reset()
    assert plait.storage.get_backend().database.current_revision() == SCHEMA_REVISION
    node = load_node(OLD_NODE_UUID)
    assert isinstance(node, Int) and node.value == 41 and node.label == "old"
    assert Int(1).store().pk == node.pk + 1  # and the database takes new nodes

    again = invoke("storage", "migrate").stdout
    assert f"already up to date (schema revision {SCHEMA_REVISION})" in again
    assert len(list(old_profile.parent.glob("database.sqlite.backup-*"))) == 1  # no new backup
    assert re.search(rf"schema\s+revision {SCHEMA_REVISION} \(up to date\)", invoke("storage", "info").stdout)


def test_migrate_without_backup_of_another_profile(invoke, plait_home):
    create_profile("default")
    other = create_profile("old")
    _old_database(f"sqlite:///{other.path / 'database.sqlite'}")
    result = invoke("-P", "old", "storage", "migrate", "--no-backup")
    assert "Backed up" not in result.stdout and "Done:" in result.stdout
    assert not list(other.path.glob("*.backup-*"))
    assert Database(f"sqlite:///{other.path / 'database.sqlite'}").current_revision() == SCHEMA_REVISION
    assert Database(f"sqlite:///{plait_home / 'profiles/default/database.sqlite'}").current_revision() is None


def test_migrate_creates_the_schema_of_an_empty_database(invoke, plait_home):
    info = invoke("storage", "info").stdout
    assert re.search(r"schema\s+none: an empty database", info)
    assert "nodes" not in info
    result = invoke("storage", "migrate")
    assert f"from schema revision none (empty database) to {SCHEMA_REVISION}" in result.stdout
    assert "Backed up" not in result.stdout


def test_migrate_refuses_a_database_from_a_newer_plait(invoke, old_profile):
    engine = create_engine(f"sqlite:///{old_profile}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    assert_one_line_error(
        invoke("storage", "migrate", code=1),
        "schema revision 9999, which this plait does not know",
        "newer plait",
    )
    assert re.search(r"schema\s+revision 9999", invoke("storage", "info").stdout)


def test_info_counts_nodes_processes_links_and_files(invoke, plait_home):
    invoke("demo")
    out = invoke("storage", "info").stdout
    backend = plait.storage.get_backend()
    nodes = backend.count_nodes()
    processes = sum(backend.count_processes().values())
    assert re.search(rf"nodes\s+{nodes} \({nodes - processes} data, {processes} processes\)", out)
    assert re.search(rf"processes\s+{processes} \(finished {processes}\)", out)
    links = re.search(r"links\s+(\d+)", out)
    assert links and int(links.group(1)) > processes
    assert re.search(r"computers\s+\d+", out)
    assert re.search(r"files\s+\d+ objects, [\d.]+ k?B", out)
    assert re.search(r"database size\s+[\d.]+ [kM]B", out)


def test_errors_are_one_line(invoke, plait_home):
    assert_one_line_error(invoke("-P", "nope", "storage", "info", code=1), "profile 'nope' does not exist")
    assert_one_line_error(invoke("-P", "nope", "storage", "migrate", code=1), "profile 'nope' does not exist")
    create_profile("unreachable", storage_url="postgresql://u:secret@127.0.0.1:1/db")
    line = assert_one_line_error(
        invoke("-P", "unreachable", "storage", "migrate", code=1),
        "cannot reach the database",
        "'unreachable'",
    )
    assert "secret" not in line
    assert_one_line_error(invoke("-P", "unreachable", "storage", "info", code=1), "cannot reach the database")


@pytest.mark.postgres
def test_migrate_postgresql(invoke, postgres_url, monkeypatch):
    from conftest import drop_plait_tables

    drop_plait_tables(postgres_url)
    _old_database(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    create_profile("pg", storage_url=postgres_url)
    monkeypatch.setenv("PLAIT_PROFILE", "pg")
    try:
        result = invoke("storage", "migrate")
        assert f"0001 to {SCHEMA_REVISION}" in result.stdout and "Backed up" not in result.stdout
        plait.storage.reset()
        assert load_node(OLD_NODE_UUID).value == 41
    finally:
        plait.storage.reset()
        drop_plait_tables(postgres_url)


# -- plait storage maintain -----------------------------------------------------------------------


def _objects(repository: Path) -> set[str]:
    return {p.parent.name + p.name for p in (repository / "objects").glob("??/*")}


def test_maintain_removes_only_files_no_node_refers_to(any_profile, invoke):
    from plait.orm import SinglefileData, delete_nodes

    backend = plait.storage.get_backend()
    shared_a = SinglefileData(b"shared content", filename="a.txt").store()
    shared_b = SinglefileData(b"shared content", filename="b.txt").store()
    alone = SinglefileData(b"only mine", filename="c.txt").store()
    kept = SinglefileData(b"still here", filename="d.txt").store()
    root = backend.repository.root
    assert len(_objects(root)) == 3

    delete_nodes([shared_a.pk, alone.pk], dry_run=False)
    assert len(_objects(root)) == 3  # deleting nodes leaves their files

    fresh = invoke("storage", "maintain").stdout  # the default grace period keeps files just written
    assert re.search(r"unreferenced\s+0 objects, 0 B removed", fresh)
    assert re.search(r"kept\s+1 unreferenced objects, 9 B, written after .*3600 s grace period", fresh)

    dry = invoke("storage", "maintain", "--dry-run", "--grace-period", "0").stdout
    assert re.search(r"objects\s+3 scanned", dry)
    assert re.search(r"unreferenced\s+1 objects, 9 B would be removed", dry)
    assert "not vacuumed (dry run)" in dry and "Dry run: nothing was removed." in dry
    assert len(_objects(root)) == 3

    out = invoke("storage", "maintain", "--grace-period", "0").stdout
    assert re.search(r"unreferenced\s+1 objects, 9 B removed", out)
    assert re.search(r"database\s+(SQLite|PostgreSQL): vacuumed, [\d.]+ [kM]?B -> [\d.]+ [kM]?B", out)
    if any_profile != "default":
        assert "VACUUM ANALYZE" in out
    assert len(_objects(root)) == 2
    assert load_node(shared_b.pk).get_content() == "shared content"  # the shared object stayed
    assert load_node(kept.pk).get_content() == "still here"
    again = invoke("storage", "maintain", "--grace-period", "0").stdout
    assert re.search(r"unreferenced\s+0 objects, 0 B removed", again)


def test_maintain_keeps_what_a_running_process_may_still_record(invoke):
    """A file put after a process started, while it runs, may be on its way to the process's node."""
    from plait.orm import CalcJobNode

    backend = plait.storage.get_backend()
    job = CalcJobNode().store()
    backend.insert_process({"node_id": job.pk, "state": "waiting", "process_label": "job"})
    key = backend.repository.put_bytes(b"the job script, not yet on its node")
    out = invoke("storage", "maintain", "--grace-period", "0").stdout
    assert re.search(rf"kept\s+1 unreferenced objects, .* before process {job.pk} started", out)
    assert backend.repository.has(key)
    backend.update_process(job.pk, state="finished")
    out = invoke("storage", "maintain", "--grace-period", "0").stdout
    assert re.search(r"unreferenced\s+1 objects, 35 B removed", out)
    assert not backend.repository.has(key)


def test_maintain_gives_the_space_of_deleted_rows_back(invoke):
    from plait.orm import Dict, delete_nodes

    backend = plait.storage.get_backend()
    pks = [Dict({"payload": "x" * 2000, "i": i}).store().pk for i in range(300)]
    delete_nodes(pks, dry_run=False)
    before = backend.database_size()
    dry = invoke("storage", "maintain", "-n").stdout
    free = re.search(r"of which ([\d.]+) ([kM]B) are free pages that VACUUM would give back", dry)
    assert free and float(free.group(1)) > 0
    out = invoke("storage", "maintain").stdout
    assert re.search(r"SQLite: vacuumed, [\d.]+ [kM]B -> [\d.]+ [kM]B \([\d.]+ [kM]B freed\)", out)
    assert backend.database_size() < before
    assert backend.database_free_bytes() == 0


def test_maintain_refuses_a_negative_grace_period(invoke):
    assert_one_line_error(invoke("storage", "maintain", "--grace-period", "-1", code=2), "--grace-period")
