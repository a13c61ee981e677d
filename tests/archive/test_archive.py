"""plait archives: round trip on SQLite and PostgreSQL, idempotence, the export rules, refusals."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from plait.archive import (
    ArchiveExportError,
    ArchiveVersionError,
    CorruptArchiveError,
    ImportConflictError,
    UnsafeArchiveError,
    create_archive,
    import_archive,
    inspect_archive,
    safety,
)
from plait.orm.graph_traversal import EXPORT_RULES, traverse_graph

from .conftest import Graph, use


def _utc(value: Any) -> Any:
    """A time as naive UTC (SQLite gives it naive, PostgreSQL aware)."""
    import datetime as dt

    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def snapshot(backend: Any, uuids: set[str] | None = None) -> dict[str, Any]:
    """Everything an archive carries, keyed by UUIDs (pks differ between profiles)."""
    from sqlalchemy import select

    from plait.storage.schema import comments, computers, group_nodes, groups, links, logs, nodes, processes

    with backend.database.read() as conn:
        node_rows = [dict(r._mapping) for r in conn.execute(select(nodes))]
        if uuids is not None:
            node_rows = [r for r in node_rows if r["uuid"] in uuids]
        uuid_of = {r["id"]: r["uuid"] for r in node_rows}
        comps = {r.id: r for r in conn.execute(select(computers))}
        out: dict[str, Any] = {
            "nodes": {
                r["uuid"]: (
                    r["node_type"],
                    r["process_type"],
                    r["label"],
                    r["description"],
                    r["attributes"],
                    r["extras"],
                    r["files"],
                    r["node_hash"],
                    r["ctime"].replace(tzinfo=None),
                    comps[r["computer_id"]].uuid if r["computer_id"] else None,
                )
                for r in node_rows
            },
            "processes": {
                uuid_of[r.node_id]: (
                    r.state,
                    r.exit_status,
                    r.exit_message,
                    r.process_label,
                    uuid_of.get(r.caller_id),
                    r.call_key is not None,
                    _utc(r.mtime),
                    (r.paused, r.submitted, r.lease_owner, r.checkpoint),
                )
                for r in conn.execute(select(processes))
                if r.node_id in uuid_of
            },
            "links": sorted(
                (uuid_of[r.input_id], uuid_of[r.output_id], r.link_type, r.label)
                for r in conn.execute(select(links))
                if r.input_id in uuid_of and r.output_id in uuid_of
            ),
            "logs": sorted(
                (uuid_of[r.node_id], r.level, r.message, json.dumps(r.extra), r.time.replace(tzinfo=None))
                for r in conn.execute(select(logs))
                if r.node_id in uuid_of
            ),
            "comments": sorted(
                (r.uuid, uuid_of[r.node_id], r.user_email, r.content)
                for r in conn.execute(select(comments))
                if r.node_id in uuid_of
            ),
            "groups": sorted(
                (g.uuid, g.label, g.description, json.dumps(g.extras, sort_keys=True))
                for g in conn.execute(select(groups))
            ),
            "members": sorted(
                (g.uuid, uuid_of[m.node_id])
                for g in conn.execute(select(groups))
                for m in conn.execute(select(group_nodes).where(group_nodes.c.group_id == g.id))
                if m.node_id in uuid_of
            ),
        }
    out["contents"] = {
        key: backend.repository.get_bytes(key) for r in node_rows for key, _ in (r["files"] or {}).values()
    }
    return out


def test_round_trip_into_a_fresh_profile(
    graph: Graph, target: str, fresh_sqlite_profile: Any, tmp_path: Path
) -> None:
    path = tmp_path / "graph.plait"
    source = use("default")
    made = create_archive(path, nodes=[graph.result, graph.code], groups=[graph.group])
    assert made.counts["nodes"] == 9 and made.counts["objects"] == 1 and made.counts["computers"] == 1
    expected = snapshot(source)
    exported = set(expected["nodes"])

    backend = use(target)
    assert backend.count_nodes() == 0
    done = import_archive(path)
    assert done.added["nodes"] == 9 and done.existing["nodes"] == 0
    assert done.added["logs"] == 1 and done.added["comments"] == 1 and done.added["files"] == 1
    assert done.added["groups"] == 1 and done.added["group_nodes"] == 1
    assert set(done.node_pks) == {pk for pk in done.node_pks}  # archive pks of every node
    got = snapshot(backend, exported)
    for key in ("nodes", "processes", "links", "logs", "comments", "groups", "members", "contents"):
        assert got[key] == expected[key], key
    # the imported graph is a graph: loaded through the ORM, provenance and files work
    from plait.orm import load_code, load_group, load_node

    result = load_node(done.node_pks[graph.result])
    assert result.label == "the sum" and result.get_extra("rating") == {"stars": 5}
    assert result.creator is not None and result.creator.pk == done.node_pks[graph.calc]
    assert [c.content for c in result.get_comments()] == ["checked by hand"]
    length = load_node(done.node_pks[graph.length])
    assert load_group("archived").count() == 1
    blob = length.creator.inputs.f  # type: ignore[union-attr]
    assert blob.get_object_content("hello.txt") == "hello archive\n" * 50
    assert done.relabelled == [] and load_code("bash@localhost").pk == done.node_pks[graph.code]

    # and back: an archive made from the target holds the same records
    again = tmp_path / "again.plait"
    create_archive(again, all=True)
    assert inspect_archive(again).counts["nodes"] == 9
    # whose JSON and times were copied as the target stores them (SQLite's text, PostgreSQL's
    # jsonb::text): imported into a third profile, it is the same graph again
    third = use(fresh_sqlite_profile("third"))
    import_archive(again)
    got = snapshot(third, exported)
    for key in ("nodes", "processes", "links", "logs", "comments", "groups", "members", "contents"):
        assert got[key] == expected[key], key


def test_a_computer_label_taken_by_another_is_suffixed(
    graph: Graph, fresh_sqlite_profile: Any, tmp_path: Path
) -> None:
    from plait.orm import Computer, load_code

    path = tmp_path / "code.plait"
    use("default")
    create_archive(path, nodes=[graph.code])
    use(fresh_sqlite_profile("mine"))
    own = Computer.get("localhost")  # this profile's localhost (made on first use): another computer
    done = import_archive(path)
    assert done.relabelled == [("computer", "localhost", "localhost-imported-1")]
    code = load_code("bash@localhost-imported-1")  # label@computer finds the code by its new label
    assert code.pk == done.node_pks[graph.code] and code.computer.pk != own.pk
    assert sum(import_archive(path).added.values()) == 0  # and a second import matches it again


def test_a_group_label_taken_by_another_is_suffixed(
    graph: Graph, fresh_sqlite_profile: Any, tmp_path: Path
) -> None:
    from plait.orm import Group, load_group

    path = tmp_path / "group.plait"
    use("default")
    create_archive(path, groups=[graph.group])
    use(fresh_sqlite_profile("mine"))
    Group("archived").store()
    Group("archived-imported-1").store()
    done = import_archive(path)
    assert done.relabelled == [("group", "archived", "archived-imported-2")]
    assert load_group("archived").count() == 0 and load_group("archived-imported-2").count() == 1
    again = import_archive(path)  # matched by UUID: nothing added, the members there already
    assert again.added["groups"] == 0 and again.existing["group_nodes"] == 1


def test_a_second_import_adds_nothing(graph: Graph, fresh_sqlite_profile: Any, tmp_path: Path) -> None:
    path = tmp_path / "g.plait"
    use("default")
    create_archive(path, groups=[graph.group])
    backend = use(fresh_sqlite_profile("other"))
    first = import_archive(path, group="from-colleague")
    before = snapshot(backend)
    second = import_archive(path, group="from-colleague")
    assert sum(second.added.values()) == 0, second.added
    assert (
        second.existing["nodes"] == first.added["nodes"] and second.existing["links"] == first.added["links"]
    )
    assert snapshot(backend) == before
    from plait.orm import load_group

    assert load_group("from-colleague").count() == first.added["nodes"]
    # into the profile it came from: every node is there already, nothing is added
    use("default")
    assert sum(import_archive(path).added.values()) == 0


def test_export_rules_and_their_switches(graph: Graph, tmp_path: Path) -> None:
    use("default")

    def found(*pks: int, **rules: bool) -> set[int]:
        return traverse_graph(list(pks), EXPORT_RULES, **rules).nodes

    everything = {graph.workflow, graph.calc, graph.result, graph.x, graph.y}
    assert found(graph.result) == everything  # creator, its caller, their inputs
    assert found(graph.result, create_backward=False) == {graph.result}
    assert found(graph.result, call_calc_backward=False) == {graph.calc, graph.result, graph.x, graph.y}
    assert found(graph.calc) == everything  # the caller (call_calc_backward), the created data
    assert found(graph.x) == {graph.x}
    assert found(graph.x, input_calc_forward=True) >= {graph.calc, graph.result}
    assert found(graph.workflow, return_backward=True) == everything
    with pytest.raises(ValueError, match="export rule 'create_forward' is fixed"):
        found(graph.calc, create_forward=False)
    with pytest.raises(ValueError, match="unknown export rule 'sideways'"):
        create_archive(tmp_path / "x.plait", nodes=[graph.x], sideways=True)
    bare = create_archive(
        tmp_path / "x.plait", nodes=[graph.result], include_comments=False, include_logs=False, dry_run=True
    )
    assert bare.counts["nodes"] == 5 and bare.counts["comments"] == 0 and bare.counts["logs"] == 0
    counted = create_archive(tmp_path / "x.plait", nodes=[graph.result], create_backward=False, dry_run=True)
    assert counted.counts["nodes"] == 1 and not (tmp_path / "x.plait").exists()


def test_deletion_uses_the_same_walk(graph: Graph) -> None:
    from plait.orm import delete_nodes
    from plait.orm.graph_traversal import DELETE_RULES

    use("default")
    planned, deleted = delete_nodes([graph.x])
    assert not deleted and planned == traverse_graph([graph.x], DELETE_RULES).nodes


def test_a_process_that_is_not_terminated_is_not_exported(tmp_path: Path) -> None:
    from plait.orm import CalcFunctionNode

    backend = use("default")
    node = CalcFunctionNode(label="busy").store()
    backend.insert_process({"node_id": node.pk, "state": "running", "process_label": "busy"})
    with pytest.raises(ArchiveExportError, match=f"process {node.pk} is running"):
        create_archive(tmp_path / "a.plait", nodes=[node])
    assert not (tmp_path / "a.plait").exists()
    with pytest.raises(ArchiveExportError, match="exists already"):
        (tmp_path / "b.plait").write_text("mine")
        create_archive(tmp_path / "b.plait", nodes=[])
    assert (tmp_path / "b.plait").read_text() == "mine"


# -- refusals: a crafted bad archive, and nothing imported -------------------------------------------


@pytest.fixture
def good(graph: Graph, tmp_path: Path) -> Path:
    use("default")
    path = tmp_path / "good.plait"
    create_archive(path, nodes=[graph.result, graph.length])
    return path


def rewrite(
    source: Path, target: Path, replace: dict[str, bytes] | None = None, extra: list[Any] | None = None
) -> Path:
    """A copy of ``source`` with some members' content replaced and more members added."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = (replace or {}).get(info.filename, old.read(info))
            new.writestr(info.filename, data)
        for info, data in extra or ():
            new.writestr(info, data)
    return target


def manifest_with(source: Path, **changes: Any) -> bytes:
    with zipfile.ZipFile(source) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    manifest.update(changes)
    return json.dumps(manifest).encode()


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("objects/ab/" + "c" * 62)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def object_name(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return next(n for n in archive.namelist() if n.startswith("objects/"))


BAD = {
    "truncated": (CorruptArchiveError, "not a zip archive or is truncated"),
    "not-a-zip": (CorruptArchiveError, "not a zip archive"),
    "object-checksum": (CorruptArchiveError, "checksum mismatch"),
    "database-checksum": (CorruptArchiveError, "'database.sqlite': checksum mismatch"),
    "version": (ArchiveVersionError, "version 99 is unknown"),
    "dotdot": (UnsafeArchiveError, "'../evil.sh': '..' in the path"),
    "absolute": (UnsafeArchiveError, "'/etc/evil': absolute path"),
    "symlink": (UnsafeArchiveError, "a symbolic link"),
    "stranger": (UnsafeArchiveError, "'notes.txt' is not part of the plait archive format"),
    "bomb": (UnsafeArchiveError, "zip bomb"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_archive_is_refused_and_nothing_is_imported(
    case: str, good: Path, tmp_path: Path, fresh_sqlite_profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / f"{case}.plait"
    if case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "not-a-zip":
        bad.write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    elif case == "object-checksum":
        rewrite(good, bad, {object_name(good): b"tampered content"})
    elif case == "database-checksum":
        rewrite(good, bad, {"manifest.json": manifest_with(good, database={"sha256": "0" * 64})})
    elif case == "version":
        rewrite(good, bad, {"manifest.json": manifest_with(good, version=99)})
    elif case == "dotdot":
        rewrite(good, bad, extra=[("../evil.sh", b"rm -rf ~")])
    elif case == "absolute":
        rewrite(good, bad, extra=[("/etc/evil", b"x")])
    elif case == "symlink":
        rewrite(good, bad, extra=[(symlink_entry(), b"/etc/passwd")])
    elif case == "stranger":
        rewrite(good, bad, extra=[("notes.txt", b"hi")])
    elif case == "bomb":
        monkeypatch.setattr(safety, "EXPANSION_FLOOR", 1 << 16)
        rewrite(good, bad, extra=[("objects/00/" + "0" * 62, bytes(4 << 20))])
    backend = use(fresh_sqlite_profile("victim"))
    error, message = BAD[case]
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_archive(bad)
    assert backend.count_nodes() == 0 and backend.list_groups() == []
    assert not list(backend.repository.iter_keys())


def test_a_uuid_with_other_content_stops_the_whole_import(
    good: Graph, graph: Graph, fresh_sqlite_profile: Any
) -> None:
    from sqlalchemy import update

    from plait.storage.schema import nodes

    source = use("default")
    x_uuid = source.get_node(graph.x)["uuid"]
    backend = use(fresh_sqlite_profile("clash"))
    import_archive(good)
    with backend.transaction() as conn:
        conn.execute(update(nodes).where(nodes.c.uuid == x_uuid).values(attributes={"value": 99}))
        conn.execute(nodes.delete().where(nodes.c.uuid != x_uuid))  # the rest goes: an import would add it
    with pytest.raises(
        ImportConflictError, match=f"node {x_uuid} exists in this profile .* attributes differ"
    ):
        import_archive(good)
    assert backend.count_nodes() == 1


def with_database_change(source: Path, target: Path, tmp_path: Path, sql: str) -> Path:
    """A copy of ``source`` whose database had ``sql`` run on it (its checksum made to match)."""
    import hashlib
    import sqlite3

    database = tmp_path / "changed.sqlite"
    with zipfile.ZipFile(source) as archive:
        database.write_bytes(archive.read("database.sqlite"))
    conn = sqlite3.connect(database)
    conn.execute(sql)
    conn.commit()
    conn.close()
    data = database.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    manifest = manifest_with(
        source, database={"member": "database.sqlite", "sha256": digest, "size": len(data)}
    )
    return rewrite(source, target, {"database.sqlite": data, "manifest.json": manifest})


MALFORMED = {
    "json": (
        "UPDATE nodes SET attributes = '{\"value\": 1' WHERE id = (SELECT min(id) FROM nodes)",
        "malformed",
    ),
    "nan": ("UPDATE nodes SET attributes = '{\"value\": NaN}' WHERE id = (SELECT min(id) FROM nodes)", "NaN"),
    # valid JSON text whose number is no finite float: storage refuses infinities as it refuses NaN
    "overflow": (
        "UPDATE nodes SET attributes = '{\"value\": 1e999}' WHERE id = (SELECT min(id) FROM nodes)",
        "1e999 is not a finite number",
    ),
    "overflow-negative": (
        "UPDATE nodes SET extras = '{\"a\": [1, -2.5E+400]}' WHERE id = (SELECT max(id) FROM nodes)",
        "-2.5E\\+400 is not a finite number",
    ),
    "long-mantissa": (
        'UPDATE nodes SET attributes = \'{"value": 1' + "0" * 400 + ".5}' "
        "WHERE id = (SELECT min(id) FROM nodes)",
        "is not a finite number",
    ),
    "time": ("UPDATE nodes SET ctime = 'yesterday' WHERE id = (SELECT max(id) FROM nodes)", "malformed"),
    "extras": ("UPDATE nodes SET extras = '{''a'': 1}' WHERE id = (SELECT max(id) FROM nodes)", "malformed"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_node_value_is_refused(
    case: str, good: Path, tmp_path: Path, fresh_sqlite_profile: Any
) -> None:
    # the import passes the archive's JSON text on without encoding it again: it must still be JSON,
    # without NaN (storage refuses it), and times must be times
    sql, message = MALFORMED[case]
    bad = with_database_change(good, tmp_path / f"{case}.plait", tmp_path, sql)
    backend = use(fresh_sqlite_profile("victim"))
    with pytest.raises(CorruptArchiveError, match=message):
        import_archive(bad)
    assert backend.count_nodes() == 0


def test_the_pk_map_finds_every_pk_with_and_without_gaps() -> None:
    from plait.archive.importer import _PkMap

    for keys in ([5, 6, 7, 8], [5, 6, 9, 10, 40]):
        mapping = _PkMap()
        for i, key in enumerate(keys):
            mapping.add(key, 100 + i, new=i % 2 == 0)
        assert [mapping[k] for k in keys] == [100 + i for i in range(len(keys))]
        assert [mapping.is_new(k) for k in keys] == [i % 2 == 0 for i in range(len(keys))]
        signed = mapping.signed()
        assert [signed(k) for k in keys] == [(100 + i) * (1 if i % 2 == 0 else -1) for i in range(len(keys))]
        for missing in (4, 11, 41, 7 if 7 not in keys else 0):
            with pytest.raises(KeyError):
                mapping[missing]
            with pytest.raises(KeyError):
                signed(missing)
        with pytest.raises(CorruptArchiveError, match="out of order"):
            mapping.add(keys[-1], 1, new=True)


def test_new_pks_are_taken_as_a_run_only_when_the_rows_show_one(graph: Graph) -> None:
    """The SQLite import reads its new pks as one run after the largest pk only when exactly those
    rows, with the expected first and last UUIDs, are there; else it falls back to UUIDs."""
    from plait.archive.importer import _Writer

    backend = use("default")
    if not backend.database.is_sqlite:
        pytest.skip("the run of pks is read on SQLite only")
    writer = _Writer(backend)
    with backend.transaction() as db:
        top = writer.last_pk(db)
        uuid_of = dict(db.exec_driver_sql("SELECT id, uuid FROM nodes").all())
        assert top == max(uuid_of)
        below = top - 3  # the last three rows stand for an insert of three
        first, last = uuid_of[below + 1], uuid_of[top]
        assert writer.inserted_run(db, below, 3, first, last) == range(below + 1, top + 1)
        assert writer.inserted_run(db, below, 3, last, first) is None  # not in the rows' order
        assert writer.inserted_run(db, below, 4, first, last) is None  # another count
        assert writer.inserted_run(db, top, 1, last, last) is None  # nothing above the largest
