"""Reading a plait archive into a profile: check everything first, then one transaction.

The order, and why:

1. **The zip** (:func:`plait.archive.safety.open_checked`): no truncated file, no member that
   could leave a folder, no symlink, no zip bomb; only the members of the format.
2. **The manifest**: format name and a version this plait reads.
3. **The database** is copied out with its SHA-256 checked, opened read-only with SQLite's
   defences on (``trusted_schema=OFF``, no views or triggers allowed, ``quick_check``), and its
   references checked (every link, process, log, comment, membership and file points at a
   record of the archive; every process is terminated; every file path stays inside its node).
4. **Every object**'s content is hashed against its name.
5. Then, in **one write transaction**: computers (by UUID; a label taken by another computer
   gets ``-imported-N``), nodes (by UUID: a node already there with the same content is kept as
   it is, one with other content stops the import), process rows of the new processes, links,
   logs of the new nodes, comments (by UUID), groups (by UUID; a label taken by another group
   gets ``-imported-N``) and their members, the import group, and the files into the repository.
   Anything failing rolls all of it back; files already put are unreferenced and go with the
   next ``plait storage maintain``.

Importing the same archive twice adds nothing the second time.  Rows are read from the archive
in batches; the map of archive pks to profile pks is the one structure that grows with the
archive (two arrays, 16 bytes a node).  Node rows and links go in through the driver's
``executemany`` with the JSON text of the archive checked (valid, no NaN, no number beyond a
float) but not encoded again (see :class:`_Writer`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import itertools
import json
import os
import re
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.archive import format as fmt
from plait.archive._progress import progress_bar
from plait.archive.errors import (
    ArchiveVersionError,
    CorruptArchiveError,
    ImportConflictError,
    UnsafeArchiveError,
)
from plait.archive.safety import MemberReader, copy_member, open_checked

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = ["ImportResult", "import_plait_archive", "read_manifest"]

DEFAULT_BATCH_SIZE = 2000
MAX_MANIFEST_BYTES = 1 << 20
TERMINAL = ("finished", "excepted", "killed")
LINK_TYPES = ("input_calc", "input_work", "create", "return", "call_calc", "call_work")
#: what an existing node must share with the archive's to be the same node
CONTENT = ("node_type", "process_type", "attributes", "files", "computer_id")


@dataclass
class ImportResult:
    """What an import added and what was there already."""

    path: Path
    #: rows added per kind: nodes, processes, links, logs, comments, computers, groups, group_nodes, files
    added: dict[str, int] = field(default_factory=dict)
    #: of the archive's rows, those the profile had already (matched by UUID; files by hash)
    existing: dict[str, int] = field(default_factory=dict)
    #: archive pk -> profile pk of every node (empty with ``pk_map=False``)
    node_pks: dict[int, int] = field(default_factory=dict)
    #: archive pk -> profile pk of every computer and group
    computer_pks: dict[int, int] = field(default_factory=dict)
    group_pks: dict[int, int] = field(default_factory=dict)
    #: computers and groups imported under another label: ``(kind, archive label, new label)``
    relabelled: list[tuple[str, str, str]] = field(default_factory=list)
    #: the pk of the group every imported node was added to (``group=``), or None
    import_group: int | None = None


def read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The manifest of an opened archive, its format and version checked.

    Raises:
        CorruptArchiveError: no manifest, or not JSON.
        ArchiveVersionError: another format, or a version this plait does not read.
    """
    try:
        info = archive.getinfo(fmt.MANIFEST)
    except KeyError:
        if "metadata.json" in archive.namelist():
            raise ArchiveVersionError(
                "this is an AiiDA archive (it has metadata.json), not a plait archive: "
                "import it with import_archive (`plait archive import`), which reads both"
            ) from None
        raise CorruptArchiveError(f"the archive has no {fmt.MANIFEST}: not a plait archive") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise UnsafeArchiveError(f"archive member {fmt.MANIFEST!r} is {info.file_size} bytes (at most 1 MiB)")
    chunks: list[bytes] = []
    copy_member(archive, fmt.MANIFEST, chunks.append)
    try:
        manifest = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise CorruptArchiveError(f"archive member {fmt.MANIFEST!r} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt.FORMAT_NAME:
        named = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArchiveVersionError(
            f"archive member {fmt.MANIFEST!r} names format {named!r}, not {fmt.FORMAT_NAME!r}"
        )
    version = manifest.get("version")
    if version not in fmt.READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in sorted(fmt.READABLE_VERSIONS))
        raise ArchiveVersionError(
            f"archive format version {version!r} is unknown to this plait (it reads {readable}): "
            "a newer plait may read it"
        )
    database = manifest.get("database")
    if not isinstance(database, dict) or not isinstance(database.get("sha256"), str):
        raise CorruptArchiveError(f"archive member {fmt.MANIFEST!r} gives no checksum of the database")
    return manifest


def _check_members(archive: zipfile.ZipFile) -> set[str]:
    """The object hashes among the members; refuse any member the format does not have."""
    keys: set[str] = set()
    for name in archive.namelist():
        if name in (fmt.MANIFEST, fmt.DATABASE) or name == fmt.OBJECTS or fmt.OBJECT_FOLDER.match(name):
            continue  # the members, and the folder entries some zip tools add
        match = fmt.OBJECT_MEMBER.match(name)
        if match is None:
            raise UnsafeArchiveError(f"archive member {name!r} is not part of the plait archive format")
        keys.add(match.group(1) + match.group(2))
    return keys


_ALLOWED_SQL = re.compile(r"^(table|index):")


@contextlib.contextmanager
def open_database(archive: zipfile.ZipFile, manifest: dict[str, Any]) -> Iterator[sqlite3.Connection]:
    """The archive's database, copied out with its checksum checked, opened read-only and checked."""
    with tempfile.TemporaryDirectory(prefix="plait-import-") as scratch:
        path = os.path.join(scratch, fmt.DATABASE)
        with open(path, "wb") as handle:
            copy_member(archive, fmt.DATABASE, handle.write, sha256=manifest["database"]["sha256"])
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise CorruptArchiveError(f"archive member {fmt.DATABASE!r} cannot be opened ({exc})") from None
        try:
            conn.row_factory = sqlite3.Row
            _check_database(conn)
            yield conn
        finally:
            conn.close()


def _check_database(conn: sqlite3.Connection) -> None:
    where = f"archive member {fmt.DATABASE!r}"
    try:
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("PRAGMA cell_size_check=ON")
        entries = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        for kind, name in entries:
            if kind not in ("table", "index"):
                raise UnsafeArchiveError(
                    f"{where}: a {kind} ({name!r}) — only tables and indexes are allowed"
                )
        tables = {name for kind, name in entries if kind == "table"}
        for table, columns in fmt.COLUMNS.items():
            if table not in tables:
                raise CorruptArchiveError(f"{where}: no table {table!r}")
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            missing = set(columns) - have
            if missing:
                raise CorruptArchiveError(f"{where}: table {table!r} lacks {', '.join(sorted(missing))}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise CorruptArchiveError(f"{where}: the database is damaged ({check})")
    except sqlite3.DatabaseError as exc:
        raise CorruptArchiveError(f"{where} is not a valid SQLite database ({exc})") from None


def _first(conn: sqlite3.Connection, query: str) -> Any:
    return conn.execute(query).fetchone()


def _check_references(conn: sqlite3.Connection, objects: set[str]) -> None:
    """Every row of the archive database points at records of the archive (else refuse, naming one)."""
    checks = [
        (
            "SELECT p.node_id FROM processes p LEFT JOIN nodes n ON n.id = p.node_id WHERE n.id IS NULL",
            "a process row refers to node {0}, which the archive lacks",
        ),
        (
            "SELECT p.node_id, p.caller_id FROM processes p LEFT JOIN nodes n ON n.id = p.caller_id "
            "WHERE p.caller_id IS NOT NULL AND n.id IS NULL",
            "process {0} names caller {1}, which the archive lacks",
        ),
        (
            f"SELECT node_id, state FROM processes WHERE state NOT IN {TERMINAL!r}",
            "process {0} is {1}: an archive holds terminated processes only",
        ),
        (
            "SELECT l.input_id, l.output_id FROM links l LEFT JOIN nodes a ON a.id = l.input_id "
            "LEFT JOIN nodes b ON b.id = l.output_id WHERE a.id IS NULL OR b.id IS NULL",
            "a link {0} -> {1} refers to a node the archive lacks",
        ),
        (
            f"SELECT input_id, output_id, link_type FROM links WHERE link_type NOT IN {LINK_TYPES!r}",
            "link {0} -> {1} has unknown type {2!r}",
        ),
        (
            "SELECT n.uuid, n.computer_id FROM nodes n LEFT JOIN computers c ON c.id = n.computer_id "
            "WHERE n.computer_id IS NOT NULL AND c.id IS NULL",
            "node {0} refers to computer {1}, which the archive lacks",
        ),
        (
            "SELECT g.group_id, g.node_id FROM group_nodes g LEFT JOIN groups a ON a.id = g.group_id "
            "LEFT JOIN nodes b ON b.id = g.node_id WHERE a.id IS NULL OR b.id IS NULL",
            "membership of node {1} in group {0} refers to a record the archive lacks",
        ),
        (
            "SELECT l.id, l.node_id FROM logs l LEFT JOIN nodes n ON n.id = l.node_id WHERE n.id IS NULL",
            "log {0} refers to node {1}, which the archive lacks",
        ),
        (
            "SELECT c.uuid, c.node_id FROM comments c LEFT JOIN nodes n ON n.id = c.node_id "
            "WHERE n.id IS NULL",
            "comment {0} refers to node {1}, which the archive lacks",
        ),
    ]
    for query, message in checks:
        row = _first(conn, query)
        if row is not None:
            raise CorruptArchiveError(f"archive database: {message.format(*tuple(row))}")
    listed = {row[0] for row in conn.execute("SELECT sha256 FROM objects")}
    if listed != objects:
        extra = sorted(objects - listed)
        lacking = sorted(listed - objects)
        if extra:
            raise UnsafeArchiveError(
                f"archive member {fmt.object_member(extra[0])!r} is not listed in the database's objects"
            )
        raise CorruptArchiveError(
            f"archive member {fmt.object_member(lacking[0])!r} is missing (listed in objects)"
        )
    from plait.transports.relative_paths import check_relative_path

    for uuid, files in conn.execute("SELECT uuid, files FROM nodes WHERE files != '{}'"):
        try:
            mapping = json.loads(files)
            assert isinstance(mapping, dict)
            for relpath, entry in mapping.items():
                key, size = entry
                assert isinstance(key, str) and isinstance(size, int)
                if check_relative_path(relpath, "file name") != relpath:
                    raise UnsafeArchiveError(
                        f"node {uuid}: file path {relpath!r} is not a clean relative path"
                    )
                if key not in objects:
                    raise CorruptArchiveError(
                        f"node {uuid}: file {relpath!r} refers to object {key}, not in the archive"
                    )
        except (ValueError, TypeError, AssertionError):
            raise CorruptArchiveError(f"node {uuid}: its files column is malformed") from None


def _archive_rows(
    conn: sqlite3.Connection, table: str, order: str, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """The rows of an archive table as profile values, in batches (one cursor, streamed)."""
    columns = fmt.COLUMNS[table]
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    while True:
        chunk = cursor.fetchmany(batch_size)
        if not chunk:
            return
        try:
            yield [{c: fmt.from_text(c, row[c]) for c in columns} for row in chunk]
        except ValueError as exc:
            raise CorruptArchiveError(
                f"archive database: a {table} row has a malformed value ({exc})"
            ) from None


def _free_label(label: str, taken: Any) -> str:
    """``label`` if ``taken(label)`` is false, else ``label-imported-N`` with the first free N."""
    if not taken(label):
        return label
    for number in range(1, 10000):
        candidate = f"{label[:230]}-imported-{number}"
        if not taken(candidate):
            return candidate
    raise ImportConflictError(f"no free label for '{label}' (tried {label}-imported-1 to -9999)")


class _PkMap:
    """Archive node pk -> profile pk, in two arrays (16 bytes a node, not a dict's ~100).

    Filled in ascending archive pk (the nodes are read ``ORDER BY id``) and looked up by
    bisection, or by subtraction while the archive pks have no gap.  A profile pk is stored
    negated when the node was there already, so one array also says which nodes this import added.
    """

    def __init__(self) -> None:
        from array import array

        self._keys = array("q")
        self._values = array("q")
        self._first: int | None = None  # the first key while the keys are consecutive

    def add(self, archive_pk: int, pk: int, *, new: bool) -> None:
        keys = self._keys
        if keys and archive_pk <= keys[-1]:
            raise CorruptArchiveError(f"archive database: node {archive_pk} comes twice or out of order")
        if keys and archive_pk != keys[-1] + 1:
            self._first = None  # a gap: look up by bisection from now on
        elif not keys:
            self._first = archive_pk
        keys.append(archive_pk)
        self._values.append(pk if new else -pk)

    def _value(self, archive_pk: int) -> int:
        from bisect import bisect_left

        first = self._first
        if first is not None:  # the archive pks are one run (an export of a whole profile): no search
            i = archive_pk - first
            if 0 <= i < len(self._values):
                return self._values[i]
            raise KeyError(archive_pk)
        i = bisect_left(self._keys, archive_pk)
        if i == len(self._keys) or self._keys[i] != archive_pk:
            raise KeyError(archive_pk)
        return self._values[i]

    def __getitem__(self, archive_pk: int) -> int:
        return abs(self._value(archive_pk))

    def signed(self) -> Callable[[int], int]:
        """A look-up for a hot loop: archive pk -> profile pk, negated when the node was there
        already (:exc:`KeyError` for a pk the archive lacks).  While the archive pks are one run
        it indexes the array directly, without a call per look-up into :meth:`_value`."""
        first, values = self._first, self._values
        if first is None:
            return self._value
        count = len(values)

        def signed(archive_pk: int) -> int:
            i = archive_pk - first
            if 0 <= i < count:
                return values[i]
            raise KeyError(archive_pk)

        return signed

    def is_new(self, archive_pk: int) -> bool:
        return self._value(archive_pk) > 0

    def __len__(self) -> int:
        return len(self._keys)

    def profile_pks(self) -> Iterator[int]:
        return (abs(v) for v in self._values)

    def as_dict(self) -> dict[int, int]:
        return {k: abs(v) for k, v in zip(self._keys, self._values, strict=True)}


#: the node columns an import writes, in order (all but ``id``), and where some of them are
_NODE_COLUMNS = tuple(c for c in fmt.COLUMNS["nodes"] if c != "id")
_NODE_JSON = tuple(c for c in _NODE_COLUMNS if c in fmt.JSON_COLUMNS)
_NODE_TIMES = tuple(c for c in _NODE_COLUMNS if c in fmt.TIME_COLUMNS)
_UUID, _CTIME, _MTIME = (_NODE_COLUMNS.index(c) for c in ("uuid", "ctime", "mtime"))
_COMPUTER, _ATTRIBUTES = _NODE_COLUMNS.index("computer_id"), _NODE_COLUMNS.index("attributes")
#: the time form an export writes (SQLite's stored time as ISO 8601 in UTC)
_EXPORT_TIME = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]."
    "[0-9][0-9][0-9][0-9][0-9][0-9]+00:00"
)


def _differences(there: Any, row: tuple[Any, ...]) -> list[str]:
    """The content columns in which the profile's node ``there`` (uuid, id, CONTENT...) and the
    archive's row differ (JSON compared as values)."""
    differ = []
    for i, key in enumerate(CONTENT, start=2):
        mine = row[_NODE_COLUMNS.index(key)]
        theirs = there[i]
        if key in fmt.JSON_COLUMNS:
            if theirs == mine:
                continue  # the same text (an archive of a SQLite profile, or imported before)
            mine = json.loads(mine)
            if isinstance(theirs, str):
                theirs = json.loads(theirs)
        if theirs != mine:
            differ.append(key)
    return differ


class _Writer:
    """Bulk writes of archive rows, the JSON columns passed on as the archive's (checked) text.

    Decoding every JSON value only for the storage layer to encode it again was most of an
    import's time, so node rows go in through the driver's ``executemany``: the JSON text
    checked (NaN, Infinity and numbers that overflow a float refused, as storage refuses them) and
    sent as it is (PostgreSQL: ``CAST(... AS jsonb)``, which normalises it), times checked by
    :meth:`datetime.fromisoformat` and sent as SQLite's storage text (SQLAlchemy's
    ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC) or as an aware datetime (PostgreSQL).  New pks are
    read back by UUID in batches, with one parameter per batch (SQLite ``json_each``,
    PostgreSQL ``= ANY``) instead of an ``IN`` list of thousands.
    """

    def __init__(self, backend: StorageBackend) -> None:
        self.sqlite = backend.database.is_sqlite
        mark = "?" if self.sqlite else "%s"
        json_mark = mark if self.sqlite else "CAST(%s AS jsonb)"
        time_mark = mark if self.sqlite else "CAST(%s AS timestamptz)"
        marks = ", ".join(
            json_mark if c in fmt.JSON_COLUMNS else time_mark if c in fmt.TIME_COLUMNS else mark
            for c in _NODE_COLUMNS
        )
        self.insert_nodes_sql = f"INSERT INTO nodes ({', '.join(_NODE_COLUMNS)}) VALUES ({marks})"
        self.insert_links_sql = (
            f"INSERT INTO links (input_id, output_id, link_type, label) VALUES ({', '.join([mark] * 4)})"
        )
        self.insert_members_sql = (
            f"INSERT INTO group_nodes (group_id, node_id) VALUES ({mark}, {mark}) ON CONFLICT DO NOTHING"
        )
        self.by_uuid = "IN (SELECT value FROM json_each(?))" if self.sqlite else "= ANY(%s)"

    def time_sql(self, column: str) -> str:
        """SQL (on the archive database) giving ``column``'s time as the insert takes it, or NULL
        when it is not in the form an export writes (then :meth:`time` converts it)."""
        converted = f"substr({column}, 1, 10) || ' ' || substr({column}, 12, 15)" if self.sqlite else column
        return f"CASE WHEN {column} GLOB '{_EXPORT_TIME}' THEN {converted} END"

    def last_pk(self, db: Any) -> int | None:
        """SQLite: the largest node pk before an insert (None on PostgreSQL, whose sequence
        gives no run of pks to rely on: its new pks are read back by UUID)."""
        if not self.sqlite:
            return None
        return int(db.exec_driver_sql("SELECT coalesce(max(id), 0) FROM nodes").scalar())

    def inserted_run(self, db: Any, before: int, count: int, first: str, last: str) -> range | None:
        """The pks of the ``count`` rows just inserted after ``before``, if they are one run.

        Inside the import's write transaction SQLite gives each new row the next rowid (one more
        than the largest in the table), so the rows of one ``executemany`` get consecutive pks in
        their order.  That is checked, not assumed: exactly ``count`` rows above ``before``, one run,
        the first and the last with the UUIDs of the first and last row.  None when anything
        differs (the caller then reads the pks back by UUID)."""
        low, high, rows = db.exec_driver_sql(
            "SELECT min(id), max(id), count(*) FROM nodes WHERE id > ?", (before,)
        ).one()
        if rows != count or high - low + 1 != count:
            return None
        ends = dict(db.exec_driver_sql("SELECT id, uuid FROM nodes WHERE id IN (?, ?)", (low, high)).all())
        if ends.get(low) != first or ends.get(high) != last:
            return None
        return range(low, high + 1)

    def uuid_list(self, uuids: list[str]) -> Any:
        return json.dumps(uuids) if self.sqlite else uuids

    def time(self, text: Any) -> Any:
        if not isinstance(text, str):
            raise ValueError(f"{text!r} is not a time")
        value = _dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        if not self.sqlite:
            return value
        if len(text) == 32 and text[10] == "T" and text.endswith("+00:00"):
            return f"{text[:10]} {text[11:26]}"  # already UTC with microseconds: no formatting
        value = value.astimezone(_dt.UTC)
        return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"

    def lookup(self, db: Any, columns: str, uuids: list[str]) -> list[Any]:
        """Rows ``(uuid, <columns>)`` of the profile's nodes with these UUIDs."""
        return list(
            db.exec_driver_sql(
                f"SELECT uuid, {columns} FROM nodes WHERE uuid {self.by_uuid}", (self.uuid_list(uuids),)
            )
        )


def _json_text(text: Any) -> tuple[str, Any]:
    """The archive's JSON text and its value (refusing what is not JSON or not allowed)."""
    if text == "{}":
        return text, {}
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not JSON text")
    return text, fmt.decode_json(text)


def import_plait_archive(
    path: str | os.PathLike[str],
    *,
    group: str | None = None,
    backend: StorageBackend | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
    pk_map: bool = True,
) -> ImportResult:
    """Import a plait archive (see :func:`plait.archive.import_archive`, which documents the arguments)."""
    from plait.storage import get_backend

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if group is not None:
        from plait.orm.groups import _check_label

        _check_label(group)
    backend = backend or get_backend()
    archive = open_checked(path)
    with archive:
        manifest = read_manifest(archive)
        objects = _check_members(archive)
        if fmt.DATABASE not in archive.namelist():
            raise CorruptArchiveError(f"the archive has no {fmt.DATABASE!r}")
        with open_database(archive, manifest) as conn:
            _check_references(conn, objects)
            with progress_bar("Checking files", len(objects), progress) as advance:
                for key in sorted(objects):
                    copy_member(archive, fmt.object_member(key), sha256=key)
                    advance(1)
            result = ImportResult(path=Path(path))
            importer = _Import(conn, archive, backend, batch_size, progress, result)
            with backend.transaction():
                importer.run(objects, group)
            if pk_map:
                result.node_pks = importer.ids.as_dict()
    return result


class _Import:
    """The writes of one import, all inside the caller's transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        archive: zipfile.ZipFile,
        backend: StorageBackend,
        batch_size: int,
        progress: bool | None,
        result: ImportResult,
    ) -> None:
        self.conn, self.archive, self.backend = conn, archive, backend
        self.batch_size, self.progress, self.result = batch_size, progress, result
        self.added = dict.fromkeys(
            (
                "computers",
                "nodes",
                "processes",
                "links",
                "logs",
                "comments",
                "groups",
                "group_nodes",
                "files",
            ),
            0,
        )
        self.existing = dict(self.added)
        self.ids = _PkMap()  # archive node pk -> profile pk, and which nodes are new
        self.writer = _Writer(backend)
        self.relabel: dict[int, tuple[str, str]] = {}  # archive computer pk -> (archive label, new label)

    def run(self, objects: set[str], group: str | None) -> None:
        self._computers()
        self._nodes()
        self._processes()
        self._links()
        self._logs()
        self._comments()
        self._groups()
        if group is not None:
            self._import_group(group)
        self._files(objects)
        self.result.added, self.result.existing = self.added, self.existing

    # -- computers --------------------------------------------------------------------------
    def _computers(self) -> None:
        known = self.backend.list_computers()
        by_uuid = {c["uuid"]: c for c in known}
        labels = {c["label"] for c in known}
        for batch in _archive_rows(self.conn, "computers", "id", self.batch_size):
            for row in batch:
                pk = row.pop("id")
                found = by_uuid.get(row["uuid"])
                if found is not None:
                    self.result.computer_pks[pk] = found["id"]
                    self.existing["computers"] += 1
                    if found["label"] != row["label"]:
                        self.relabel[pk] = (row["label"], found["label"])
                    continue
                label = _free_label(row["label"], labels.__contains__)
                if label != row["label"]:
                    self.result.relabelled.append(("computer", row["label"], label))
                    self.relabel[pk] = (row["label"], label)
                    row["label"] = label
                labels.add(label)
                self.result.computer_pks[pk] = self.backend.insert_computer(row)
                self.added["computers"] += 1

    # -- nodes ------------------------------------------------------------------------------
    def _nodes(self) -> None:
        """Nodes by UUID: the new ones inserted, the ones there compared (another content stops it).

        The archive's SQLite does the per-row work where it can: ``json_valid`` checks the JSON
        columns (and :func:`~plait.archive.format.maybe_not_finite_sql` sends text that might
        hold a number beyond a float to the Python decoder), and a ``GLOB`` recognises the times
        an export writes (``...T...ffffff+00:00``), rewritten to the profile's form in the query;
        only rows with another time form, such a number, a computer or an existing twin are
        handled value by value here.
        """
        writer = self.writer
        select = ", ".join(
            [
                "id",
                *(writer.time_sql(c) if c in fmt.TIME_COLUMNS else c for c in _NODE_COLUMNS),
                " AND ".join(
                    f"(typeof({c}) = 'text' AND json_valid({c}) AND NOT {fmt.maybe_not_finite_sql(c)})"
                    for c in _NODE_JSON
                ),
                *_NODE_TIMES,
            ]
        )
        total = int(_first(self.conn, "SELECT count(*) FROM nodes")[0])
        cursor = self.conn.execute(f"SELECT {select} FROM nodes ORDER BY id")
        width = len(_NODE_COLUMNS) + 1
        with progress_bar("Importing nodes", total, self.progress) as advance:
            while chunk := cursor.fetchmany(self.batch_size):
                keys: list[int] = []
                rows: list[tuple[Any, ...]] = []
                for raw in chunk:
                    row = raw[1:width]
                    if not raw[width] or None in (row[_CTIME], row[_MTIME]) or row[_COMPUTER] is not None:
                        row = self._by_value(raw, width)
                    keys.append(raw[0])
                    rows.append(row)
                with self.backend.transaction() as db:
                    found = {
                        r[0]: r
                        for r in writer.lookup(
                            db,
                            "id, node_type, process_type, attributes, files, computer_id",
                            [r[_UUID] for r in rows],
                        )
                    }
                fresh_keys, fresh = [], []
                for key, row in zip(keys, rows, strict=True):
                    there = found.get(row[_UUID])
                    if there is None:
                        fresh_keys.append(key)
                        fresh.append(row)
                        continue
                    differ = _differences(there, row)
                    if differ:
                        raise ImportConflictError(
                            f"node {row[_UUID]} exists in this profile (pk {there[1]}) with other "
                            f"content than in the archive: its {', '.join(differ)} differ; "
                            "nothing was imported"
                        )
                    self.ids.add(key, int(there[1]), new=False)
                    self.existing["nodes"] += 1
                if fresh:
                    for key, pk in zip(fresh_keys, self._insert_nodes(fresh), strict=True):
                        self.ids.add(key, pk, new=True)
                    self.added["nodes"] += len(fresh)
                advance(len(chunk))

    def _by_value(self, raw: Any, width: int) -> tuple[Any, ...]:
        """A node row checked and converted value by value (refusing what is malformed)."""
        row = list(raw[1:width])
        original_times = raw[width + 1 :]
        try:
            for column in _NODE_JSON:
                i = _NODE_COLUMNS.index(column)
                _json_text(row[i])
            for i, text in zip((_CTIME, _MTIME), original_times, strict=True):
                if row[i] is None:
                    row[i] = self.writer.time(text)
        except ValueError as exc:
            raise CorruptArchiveError(
                f"archive database: node {row[_UUID]} has a malformed value ({exc})"
            ) from None
        archive_computer = row[_COMPUTER]
        if archive_computer is not None:
            try:
                row[_COMPUTER] = self.result.computer_pks[archive_computer]
            except KeyError:
                raise CorruptArchiveError(
                    f"archive database: node {row[_UUID]} refers to computer {archive_computer}, "
                    "which the archive lacks"
                ) from None
            renamed = self.relabel.get(archive_computer)
            attributes = json.loads(row[_ATTRIBUTES])
            if (
                renamed is not None
                and isinstance(attributes, dict)
                and attributes.get("computer") == renamed[0]
            ):
                attributes["computer"] = renamed[1]  # label@computer must find the code again
                row[_ATTRIBUTES] = json.dumps(attributes, separators=(",", ":"), allow_nan=False)
        return tuple(row)

    def _insert_nodes(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert new node rows (:data:`_NODE_COLUMNS` tuples); their profile pks in order."""
        with self.backend.transaction() as db:
            before = self.writer.last_pk(db)
            db.exec_driver_sql(self.writer.insert_nodes_sql, rows)
            if before is not None:
                run = self.writer.inserted_run(db, before, len(rows), rows[0][_UUID], rows[-1][_UUID])
                if run is not None:
                    return list(run)
            pks = {
                uuid: int(pk)
                for start in range(0, len(rows), 5000)
                for uuid, pk in self.writer.lookup(db, "id", [r[_UUID] for r in rows[start : start + 5000]])
            }
        return [pks[row[_UUID]] for row in rows]

    def _processes(self) -> None:
        for batch in _archive_rows(self.conn, "processes", "node_id", self.batch_size):
            rows = []
            for row in batch:
                if not self.ids.is_new(row["node_id"]):
                    self.existing["processes"] += 1
                    continue
                row["node_id"] = self.ids[row["node_id"]]
                if row["caller_id"] is not None:
                    row["caller_id"] = self.ids[row["caller_id"]]
                rows.append(row)
            self.backend.insert_terminated_processes(rows)
            self.added["processes"] += len(rows)

    def _links(self) -> None:
        from sqlalchemy import select

        from plait.storage.schema import links

        signed = self.ids.signed()
        cursor = self.conn.execute(
            "SELECT input_id, output_id, link_type, label FROM links ORDER BY output_id, input_id"
        )
        while chunk := cursor.fetchmany(self.batch_size):
            fresh: list[tuple[Any, ...]] = []
            old: list[tuple[Any, ...]] = []
            for input_id, output_id, link_type, label in chunk:
                a, b = signed(input_id), signed(output_id)  # negative: the node was there already
                if a > 0 or b > 0:
                    fresh.append((abs(a), abs(b), link_type, label))
                else:
                    old.append((-a, -b, link_type, label))
            if old:
                with self.backend.transaction() as db:
                    there = {
                        (r.input_id, r.output_id, r.link_type, r.label)
                        for r in db.execute(
                            select(links).where(links.c.output_id.in_(sorted({m[1] for m in old})))
                        )
                    }
                for m in old:
                    if m in there:
                        self.existing["links"] += 1
                    else:
                        fresh.append(m)
            if fresh:
                with self.backend.transaction() as db:
                    db.exec_driver_sql(self.writer.insert_links_sql, fresh)
            self.added["links"] += len(fresh)

    def _logs(self) -> None:
        from sqlalchemy import insert

        from plait.storage.schema import logs

        for batch in _archive_rows(self.conn, "logs", "id", self.batch_size):
            rows = []
            for row in batch:
                if not self.ids.is_new(row["node_id"]):
                    self.existing["logs"] += 1  # the node was there: its logs are its own
                    continue
                row.pop("id")
                row["node_id"] = self.ids[row["node_id"]]
                rows.append(row)
            if rows:
                with self.backend.transaction() as db:
                    db.execute(insert(logs), rows)
            self.added["logs"] += len(rows)

    def _comments(self) -> None:
        from sqlalchemy import insert, select

        from plait.storage.schema import comments

        for batch in _archive_rows(self.conn, "comments", "id", self.batch_size):
            with self.backend.transaction() as db:
                there = set(
                    db.execute(
                        select(comments.c.uuid).where(comments.c.uuid.in_([r["uuid"] for r in batch]))
                    ).scalars()
                )
                rows = []
                for row in batch:
                    if row["uuid"] in there:
                        self.existing["comments"] += 1
                        continue
                    row.pop("id")
                    row["node_id"] = self.ids[row["node_id"]]
                    rows.append(row)
                if rows:
                    db.execute(insert(comments), rows)
            self.added["comments"] += len(rows)

    # -- groups -----------------------------------------------------------------------------
    def _groups(self) -> None:
        from sqlalchemy import select

        from plait.storage.schema import groups

        for batch in _archive_rows(self.conn, "groups", "id", self.batch_size):
            with self.backend.transaction() as db:
                by_uuid = dict(
                    db.execute(
                        select(groups.c.uuid, groups.c.id).where(
                            groups.c.uuid.in_([r["uuid"] for r in batch])
                        )
                    ).all()
                )
                taken = set(
                    db.execute(
                        select(groups.c.label).where(groups.c.label.in_([r["label"] for r in batch]))
                    ).scalars()
                )
            for row in batch:
                pk = row.pop("id")
                found = by_uuid.get(row["uuid"])
                if found is not None:
                    self.result.group_pks[pk] = int(found)
                    self.existing["groups"] += 1
                    continue
                label = row["label"]
                if label in taken:
                    label = _free_label(label, functools.partial(self._group_label_taken, taken))
                    self.result.relabelled.append(("group", row["label"], label))
                    row["label"] = label
                new = self.backend.insert_group(row)
                if new is None:  # pragma: no cover - the label was free a moment ago in this transaction
                    raise ImportConflictError(f"group label '{label}' was taken meanwhile: import again")
                taken.add(label)
                self.result.group_pks[pk] = new
                self.added["groups"] += 1
        # memberships: one executemany a batch (the archive's pairs are unique: its primary key)
        group_pks, ids = self.result.group_pks, self.ids
        cursor = self.conn.execute("SELECT group_id, node_id FROM group_nodes ORDER BY group_id, node_id")
        while chunk := cursor.fetchmany(self.batch_size):
            pairs = [(group_pks[gid], ids[nid]) for gid, nid in chunk]
            with self.backend.transaction() as db:
                added = max(db.exec_driver_sql(self.writer.insert_members_sql, pairs).rowcount, 0)
            self.added["group_nodes"] += added
            self.existing["group_nodes"] += len(pairs) - added

    def _group_label_taken(self, taken: set[str], label: str) -> bool:
        return label in taken or self.backend.get_group(label=label) is not None

    def _import_group(self, label: str) -> None:
        import uuid as _uuid

        from plait.storage.backend import utcnow

        found = self.backend.get_group(label=label)
        if found is not None:
            gid = int(found["id"])
        else:
            row = {
                "uuid": str(_uuid.uuid4()),
                "label": label,
                "type_string": "core.import",
                "description": f"Nodes imported from {self.result.path.name}",
                "ctime": utcnow(),
                "user_email": self.backend.profile.user_email,
                "extras": {},
            }
            new = self.backend.insert_group(row)
            if new is None:  # pragma: no cover - taken between the look-up and the insert
                raise ImportConflictError(f"group label '{label}' was taken meanwhile: import again")
            gid = new
        pks = self.ids.profile_pks()
        while batch := list(itertools.islice(pks, self.batch_size)):
            self.backend.add_group_nodes(gid, batch)
        self.result.import_group = gid

    # -- files ------------------------------------------------------------------------------
    def _files(self, objects: set[str]) -> None:
        repository = self.backend.repository
        with progress_bar("Importing files", len(objects), self.progress) as advance:
            for key in sorted(objects):
                there = repository.has(key)
                # put even when it is there: a put refreshes the object, so that a maintenance
                # running meanwhile does not take it before the nodes referring to it commit
                reader = MemberReader(self.archive, fmt.object_member(key))
                try:
                    stored = repository.put_stream(reader)  # type: ignore[arg-type]
                finally:
                    reader.close()
                if stored != key:
                    raise CorruptArchiveError(
                        f"archive member {fmt.object_member(key)!r}: checksum mismatch (sha256 {stored})"
                    )
                (self.existing if there else self.added)["files"] += 1
                advance(1)
