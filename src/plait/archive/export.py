"""Writing a plait archive: choose the node set by the export rules, then stream it into the zip.

The set: the nodes asked for, every member of the groups asked for, and everything the export
rules tie to them (:data:`plait.orm.graph_traversal.EXPORT_RULES`: always the inputs of every
process, the data it created or returned and the processes it called; by default also the
creators of data and the callers of processes; switches widen or narrow that).  With ``all``,
every node, group and computer of the profile.  A process in the set that is not terminated is
refused (its record is not final), as aiida refuses unsealed processes.

The rows are read in batches of ``batch_size`` nodes inside one read transaction (one snapshot of
the profile) and written to the archive's SQLite database as they come; the files are copied from
the repository into the zip one by one, in chunks.  Only the set of pks is held in memory, and
with ``all`` not even that (the pks are paged through in order).  JSON columns are copied as the
text the database holds, never decoded and encoded again (it is half the time of an export of
small nodes); only a node's ``files`` is decoded, when it has any, to list the objects.  The
zip is written beside its destination and renamed into place at the end, so a failed export
leaves no half-written archive.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.archive import format as fmt
from plait.archive._progress import progress_bar
from plait.archive.errors import ArchiveExportError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from plait.orm import Group, Node
    from plait.storage.backend import StorageBackend

__all__ = ["ExportResult", "create_plait_archive"]

DEFAULT_BATCH_SIZE = 2000
_CHUNK = 1 << 20


@dataclass
class ExportResult:
    """What an export wrote (or, in a dry run, would write)."""

    path: Path
    #: rows per archive table (``nodes``, ``links``, ``groups``...); ``objects`` counts files
    counts: dict[str, int] = field(default_factory=dict)
    #: how the set was chosen (also in the manifest)
    parameters: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False


def _node_pk(item: Any) -> int:
    from plait.orm import Node

    if isinstance(item, Node):
        if item.pk is None:
            raise ArchiveExportError(f"{item!r} is not stored: only stored nodes can be exported")
        return item.pk
    if isinstance(item, bool) or not isinstance(item, int):
        raise TypeError(f"nodes: a node or a node pk, not {item!r} ({type(item).__name__})")
    return item


def _group_of(item: Any) -> Group:
    from plait.orm import Group, load_group

    if isinstance(item, Group):
        if item.pk is None:
            raise ArchiveExportError(f"group '{item.label}' is not stored")
        return item
    if isinstance(item, (int, str)) and not isinstance(item, bool):
        return load_group(item)
    raise TypeError(f"groups: a group, its label or pk, not {item!r} ({type(item).__name__})")


def _batches(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for pk in ids:
        batch.append(pk)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _refuse_active(active: dict[int, str]) -> None:
    if active:
        shown = sorted(active)[:10]
        listed = ", ".join(f"process {pk} is {active[pk]}" for pk in shown)
        more = f" (and {len(active) - len(shown)} more)" if len(active) > len(shown) else ""
        raise ArchiveExportError(
            f"cannot export {listed}{more}: only terminated processes are exported (their record is "
            "final); wait for them to end or kill them, or narrow the set (--no-call-calc-backward...)"
        )


@contextlib.contextmanager
def _snapshot(backend: StorageBackend) -> Iterator[Connection]:
    """A read transaction that sees one state of the profile throughout (PostgreSQL: REPEATABLE READ)."""
    with backend.database.read() as conn:
        if not backend.database.is_sqlite:  # SQLite's WAL read transaction is a snapshot already
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


def _all_ids(conn: Connection, column: Any, size: int) -> Iterator[list[int]]:
    """Every pk of ``column``'s table in ascending batches (keyset pagination: no set in memory)."""
    from sqlalchemy import select

    last = None
    while True:
        query = select(column).order_by(column).limit(size)
        if last is not None:
            query = query.where(column > last)
        batch = list(conn.execute(query).scalars())
        if not batch:
            return
        yield batch
        last = batch[-1]


#: where each archive table is keyed by the node pks of a batch (computers, groups: their own pk)
_KEYS = {
    "nodes": "id",
    "processes": "node_id",
    "links": "output_id",
    "logs": "node_id",
    "comments": "node_id",
    "computers": "id",
    "groups": "id",
}
_COMPUTER = fmt.COLUMNS["nodes"].index("computer_id")
_FILES = fmt.COLUMNS["nodes"].index("files")
_CALLER = fmt.COLUMNS["processes"].index("caller_id")


def _fetch(conn: Connection, table: Any, name: str, ids: list[int], sqlite: bool) -> list[tuple[Any, ...]]:
    """The rows of profile ``table`` keyed by ``ids`` (sorted), as archive table ``name``'s tuples.

    JSON columns are copied as the text the profile holds (see :func:`format.stored_columns`).
    Sorted ids that fill most of their range are asked for as that range (and the rows between
    them dropped here): a ``BETWEEN`` is far cheaper to send than an ``IN`` of 2,000 values.
    """
    from sqlalchemy import select

    key_name = _KEYS[name]
    key = table.c[key_name]
    query = select(*fmt.stored_columns(table, name, sqlite=sqlite))
    low, high = ids[0], ids[-1]
    ranged = high - low < 2 * len(ids)
    query = query.where(key.between(low, high) if ranged else key.in_(ids))
    convert = fmt.text_row_converter(name)
    rows = [convert(r) for r in conn.execute(query).all()]
    if ranged and high - low + 1 != len(ids):
        wanted = set(ids)
        position = fmt.COLUMNS[name].index(key_name)
        rows = [r for r in rows if r[position] in wanted]
    return rows


def create_plait_archive(
    path: str | os.PathLike[str],
    *,
    nodes: Iterable[Node | int] | None = None,
    groups: Iterable[Group | str | int] | None = None,
    all: bool = False,
    overwrite: bool = False,
    include_comments: bool = True,
    include_logs: bool = True,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    compression: int = fmt.DEFAULT_COMPRESSION,
    backend: StorageBackend | None = None,
    progress: bool | None = None,
    **traversal_rules: bool,
) -> ExportResult:
    """Write the archive (see :func:`plait.archive.create_archive`, which documents the arguments)."""
    from sqlalchemy import func, select

    from plait.orm.graph_traversal import EXPORT_RULES, applied_rules, traverse_graph
    from plait.orm.node import _backend
    from plait.storage.backend import TERMINAL_STATES
    from plait.storage.schema import comments, computers, group_nodes, links, logs, processes
    from plait.storage.schema import groups as groups_table
    from plait.storage.schema import nodes as nodes_table

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if compression not in range(10):
        raise ValueError(f"compression must be an int from 0 to 9, not {compression!r}")
    target = Path(path)
    if target.exists() and not target.is_file():
        raise ArchiveExportError(f"'{target}' exists and is not a file")
    if target.exists() and not overwrite and not dry_run:
        raise ArchiveExportError(f"'{target}' exists already: choose another name or overwrite it (--force)")
    rules = applied_rules(EXPORT_RULES, "export", **traversal_rules)
    backend = backend or _backend()
    if all and (nodes or groups):
        raise ValueError("all=True exports everything: give no nodes or groups with it")
    chosen_groups = [] if all else [_group_of(g) for g in (groups or ())]
    seeds = [] if all else [_node_pk(n) for n in (nodes or ())]

    # -- the node set -----------------------------------------------------------------------
    node_set: set[int] | None = None  # None: every node (all=True), read batch by batch
    group_ids: list[int] = []
    if not all:
        group_ids = [g.pk for g in chosen_groups if g.pk is not None]
        with backend.database.read() as conn:
            for gid in group_ids:
                seeds.extend(
                    conn.execute(select(group_nodes.c.node_id).where(group_nodes.c.group_id == gid)).scalars()
                )
        found = traverse_graph(seeds, EXPORT_RULES, backend, **traversal_rules)
        if found.missing:
            listed = ", ".join(str(pk) for pk in sorted(found.missing)[:10])
            raise ArchiveExportError(f"no node with pk {listed}: nothing was exported")
        node_set = found.nodes
        _refuse_active(found.active)

    parameters = {
        "all": bool(all),
        "nodes": sorted(set(seeds)) if not all else None,
        "groups": [g.label for g in chosen_groups] if not all else None,
        "include_comments": include_comments,
        "include_logs": include_logs,
        "traversal_rules": rules,
    }
    result = ExportResult(path=target, parameters=parameters, dry_run=dry_run)

    with tempfile.TemporaryDirectory(prefix="plait-export-") as scratch:
        db_path = os.path.join(scratch, fmt.DATABASE)
        db = fmt.create_database(db_path)
        sqlite = backend.database.is_sqlite
        counts = dict.fromkeys(fmt.SCHEMA, 0)
        computer_ids: set[int] = set()
        with _snapshot(backend) as conn:
            if node_set is None:
                active = {
                    int(pk): str(state)
                    for pk, state in conn.execute(
                        select(processes.c.node_id, processes.c.state).where(
                            processes.c.state.not_in(TERMINAL_STATES)
                        )
                    ).all()
                }
                _refuse_active(active)
                group_ids = list(
                    conn.execute(select(groups_table.c.id).order_by(groups_table.c.id)).scalars()
                )
                total = int(conn.execute(select(func.count()).select_from(nodes_table)).scalar_one())
                node_batches = _all_ids(conn, nodes_table.c.id, batch_size)
            else:
                total = len(node_set)
                node_batches = _batches(sorted(node_set), batch_size)
            with progress_bar("Exporting nodes", total, progress) as advance:
                for batch in node_batches:
                    node_rows = _fetch(conn, nodes_table, "nodes", batch, sqlite)
                    if len(node_rows) != len(batch):
                        raise ArchiveExportError(
                            "nodes were deleted while the archive was written: run again"
                        )
                    objects: dict[str, int] = {}
                    for row in node_rows:
                        if row[_COMPUTER] is not None:
                            computer_ids.add(row[_COMPUTER])
                        if row[_FILES] != "{}":
                            for key, size in json.loads(row[_FILES]).values():
                                objects[key] = size
                    fmt.insert_tuples(db, "nodes", node_rows)
                    process_rows = _fetch(conn, processes, "processes", batch, sqlite)
                    for i, row in enumerate(process_rows):
                        if row[_CALLER] is not None and node_set is not None and row[_CALLER] not in node_set:
                            # the caller stays behind (call_*_backward off)
                            process_rows[i] = (*row[:_CALLER], None, *row[_CALLER + 1 :])
                    fmt.insert_tuples(db, "processes", process_rows)
                    link_rows = _fetch(conn, links, "links", batch, sqlite)
                    if node_set is not None:
                        link_rows = [r for r in link_rows if r[0] in node_set]
                    fmt.insert_tuples(db, "links", link_rows)
                    if include_logs:
                        fmt.insert_tuples(db, "logs", _fetch(conn, logs, "logs", batch, sqlite))
                    if include_comments:
                        fmt.insert_tuples(db, "comments", _fetch(conn, comments, "comments", batch, sqlite))
                    db.executemany(
                        "INSERT OR IGNORE INTO objects (sha256, size) VALUES (?, ?)", objects.items()
                    )
                    advance(len(batch))
                if all:
                    computer_ids.update(conn.execute(select(computers.c.id)).scalars())
                if computer_ids:
                    fmt.insert_tuples(
                        db, "computers", _fetch(conn, computers, "computers", sorted(computer_ids), sqlite)
                    )
                if group_ids:
                    fmt.insert_tuples(
                        db, "groups", _fetch(conn, groups_table, "groups", sorted(set(group_ids)), sqlite)
                    )
                    for gid in group_ids:
                        members = conn.execute(
                            select(group_nodes.c.node_id).where(group_nodes.c.group_id == gid)
                        ).scalars()
                        for batch in _batches(members, batch_size):
                            db.executemany(
                                "INSERT INTO group_nodes (group_id, node_id) VALUES (?, ?)",
                                [(gid, n) for n in batch],
                            )
        for table in counts:
            counts[table] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        result.counts = counts
        if dry_run:
            db.close()
            return result
        fmt.finish_database(db)
        _write_zip(target, db_path, backend, counts, parameters, compression, progress)
    return result


def _write_zip(
    target: Path,
    db_path: str,
    backend: StorageBackend,
    counts: dict[str, int],
    parameters: dict[str, Any],
    compression: int,
    progress: bool | None,
) -> None:
    """Objects, then the database, then the manifest, into a zip renamed to ``target`` at the end."""
    import sqlite3

    import plait
    from plait.storage.repository import ObjectNotFoundError

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compression) as archive:
            db = sqlite3.connect(db_path)
            try:
                with progress_bar("Archiving files", counts["objects"], progress) as advance:
                    for key, size in db.execute("SELECT sha256, size FROM objects ORDER BY sha256"):
                        info = zipfile.ZipInfo(fmt.object_member(key), date_time=(1980, 1, 1, 0, 0, 0))
                        info.compress_type = zipfile.ZIP_DEFLATED
                        info.file_size = int(size)
                        try:
                            source = backend.repository.open(key)
                        except ObjectNotFoundError:
                            raise ArchiveExportError(
                                f"the repository has no object {key} (a file of an exported node): "
                                "the profile's repository is damaged"
                            ) from None
                        with source, archive.open(info, "w", force_zip64=True) as sink:
                            while chunk := source.read(_CHUNK):
                                sink.write(chunk)
                        advance(1)
            finally:
                db.close()
            digest = hashlib.sha256()
            with open(db_path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            archive.write(db_path, fmt.DATABASE)
            manifest = {
                "format": fmt.FORMAT_NAME,
                "version": fmt.FORMAT_VERSION,
                "created": _dt.datetime.now(_dt.UTC).isoformat(),
                "plait_version": plait.__version__,
                "database": {
                    "member": fmt.DATABASE,
                    "sha256": digest.hexdigest(),
                    "size": os.path.getsize(db_path),
                },
                "counts": counts,
                "parameters": parameters,
            }
            archive.writestr(fmt.MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
