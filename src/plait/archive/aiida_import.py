"""Reading an archive written by aiida-core 2.x (``verdi archive create``) into a plait profile.

An AiiDA archive (format ``main_0000``/``main_0001``, aiida-core 2.0 and later) is a zip with

``metadata.json``
    ``export_version``, ``aiida_version``, ``key_format`` (``sha256``), ``creation_parameters``;
``db.sqlite3``
    aiida's ``sqlite_zip`` database: ``db_dbnode``, ``db_dblink``, ``db_dbgroup``,
    ``db_dbgroup_dbnodes``, ``db_dbcomputer``, ``db_dbuser``, ``db_dblog``, ``db_dbcomment``
    (``db_dbauthinfo`` and ``db_dbsetting`` are not read);
``repo/<sha256>``
    each file content once, named by its SHA-256; a node's ``repository_metadata`` is the tree
    of its files (``{"o": {name: {"k": key} | {"o": {...}}}}``).

The import checks the zip as plait's own import does (:func:`plait.archive.safety.open_checked`:
truncated, paths leaving the target, symlinks, zip bombs), refuses unknown export versions and
key formats, copies ``db.sqlite3`` out and opens it read-only, then **translates** it into a
plait archive database (:mod:`plait.archive.format`) in a temporary file: nodes with plait's
node types (:mod:`plait.archive.aiida_types`), the process attributes moved into process rows,
the file trees flattened into plait's ``files`` maps, computers with plait's plugin names, users
reduced to e-mail addresses.  From there plait's own importer does the rest
(:class:`plait.archive.importer._Import`): its reference checks, every object hashed against its
name, and one transaction that matches nodes, groups, comments and computers by UUID (importing
twice adds nothing; a node UUID with other content stops the import).

What does not come across: users beyond their e-mail, authinfos (never exported by default),
empty folders of a node's file tree (plait records files, not folders), aiida's settings table.
A process still active in the archive (aiida exports only sealed ones, but a sealed node can
claim ``waiting``) is imported as killed, with the state it had in its exit message.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.archive import format as fmt
from plait.archive._progress import progress_bar
from plait.archive.aiida_types import (
    AIIDA_PROCESS_ATTRIBUTES,
    plait_node_type,
    plait_scheduler,
    plait_transport,
)
from plait.archive.errors import ArchiveVersionError, CorruptArchiveError, UnsafeArchiveError
from plait.archive.importer import (
    DEFAULT_BATCH_SIZE,
    ImportResult,
    _check_references,
    _Import,
)
from plait.archive.safety import MemberReader, copy_member, open_checked

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = [
    "AIIDA_DATABASE",
    "AIIDA_METADATA",
    "READABLE_AIIDA_VERSIONS",
    "import_aiida_archive",
    "is_aiida_archive",
]

AIIDA_METADATA = "metadata.json"
AIIDA_DATABASE = "db.sqlite3"
AIIDA_REPO = "repo/"
#: the export versions of aiida-core 2.x archives this plait reads
READABLE_AIIDA_VERSIONS = frozenset({"main_0000", "main_0000a", "main_0001"})
_REPO_MEMBER = re.compile(r"^repo/([0-9a-f]{64})$")
_MAX_METADATA_BYTES = 1 << 20
#: where an imported node of a type plait has no class for keeps its AiiDA type name
AIIDA_TYPE_EXTRA = "_aiida_node_type"
_TERMINAL = ("finished", "excepted", "killed")
_LINK_TYPES = ("input_calc", "input_work", "create", "return", "call_calc", "call_work")


def is_aiida_archive(archive: zipfile.ZipFile) -> bool:
    """Whether an opened zip is an AiiDA archive: it has ``metadata.json`` and no plait manifest.

    Archives of aiida-core 1.x (``metadata.json`` and ``data.json``) count too, so that their
    import is refused with the advice to migrate them rather than as "not a plait archive".
    """
    names = set(archive.namelist())
    return AIIDA_METADATA in names and fmt.MANIFEST not in names


def read_aiida_metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The ``metadata.json`` of an AiiDA archive, its export version and key format checked.

    Raises:
        CorruptArchiveError: no metadata, or not a JSON object.
        UnsafeArchiveError: a metadata member larger than 1 MiB.
        ArchiveVersionError: an export version this plait does not read (aiida 1.x archives
            among them: migrate them with ``verdi archive migrate`` first), or another key format.
    """
    try:
        info = archive.getinfo(AIIDA_METADATA)
    except KeyError:
        raise CorruptArchiveError(f"the archive has no {AIIDA_METADATA!r}: not an AiiDA archive") from None
    if info.file_size > _MAX_METADATA_BYTES:
        raise UnsafeArchiveError(
            f"archive member {AIIDA_METADATA!r} is {info.file_size} bytes (at most 1 MiB)"
        )
    chunks: list[bytes] = []
    copy_member(archive, AIIDA_METADATA, chunks.append)
    try:
        metadata = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise CorruptArchiveError(f"archive member {AIIDA_METADATA!r} is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise CorruptArchiveError(f"archive member {AIIDA_METADATA!r} is not a JSON object")
    version = metadata.get("export_version")
    if version not in READABLE_AIIDA_VERSIONS:
        raise ArchiveVersionError(
            f"AiiDA archive export version {version!r} is unknown to this plait (it reads "
            f"{', '.join(sorted(READABLE_AIIDA_VERSIONS))}, written by aiida-core 2.x): an older archive "
            "can be brought up to date with aiida-core's `verdi archive migrate`"
        )
    key_format = metadata.get("key_format", "sha256")
    if key_format != "sha256":
        raise ArchiveVersionError(f"AiiDA archive key format {key_format!r}: plait reads sha256 only")
    return metadata


def _repo_keys(archive: zipfile.ZipFile) -> dict[str, int]:
    """The object keys among the members with their sizes; refuse any member the format lacks."""
    keys: dict[str, int] = {}
    for info in archive.infolist():
        name = info.filename
        if name in (AIIDA_METADATA, AIIDA_DATABASE, AIIDA_REPO):
            continue
        match = _REPO_MEMBER.match(name)
        if match is None:
            raise UnsafeArchiveError(f"archive member {name!r} is not part of the AiiDA archive format")
        keys[match.group(1)] = info.file_size
    return keys


@contextlib.contextmanager
def _aiida_database(archive: zipfile.ZipFile, scratch: str) -> Iterator[sqlite3.Connection]:
    """``db.sqlite3`` copied out and opened read-only with SQLite's defences on."""
    path = os.path.join(scratch, AIIDA_DATABASE)
    with open(path, "wb") as handle:
        copy_member(archive, AIIDA_DATABASE, handle.write)
    where = f"archive member {AIIDA_DATABASE!r}"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CorruptArchiveError(f"{where} cannot be opened ({exc})") from None
    try:
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA trusted_schema=OFF")
            entries = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
            for kind, name in entries:
                if kind not in ("table", "index"):
                    raise UnsafeArchiveError(
                        f"{where}: a {kind} ({name!r}); only tables and indexes are allowed"
                    )
            tables = {name for kind, name in entries if kind == "table"}
            for table in (
                "db_dbnode",
                "db_dblink",
                "db_dbcomputer",
                "db_dbuser",
                "db_dbgroup",
                "db_dbgroup_dbnodes",
            ):
                if table not in tables:
                    raise CorruptArchiveError(f"{where}: no table {table!r}")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CorruptArchiveError(f"{where}: the database is damaged ({check})")
        except sqlite3.DatabaseError as exc:
            raise CorruptArchiveError(f"{where} is not a valid SQLite database ({exc})") from None
        yield conn
    finally:
        conn.close()


def _json(value: Any, what: str) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        raise CorruptArchiveError(f"AiiDA database: {what} is not JSON") from None


def _time(value: Any, what: str) -> str:
    """An AiiDA time (stored in UTC, with or without an offset) as ISO 8601 in UTC."""
    try:
        parsed = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise CorruptArchiveError(f"AiiDA database: {what} is not a time ({value!r})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.astimezone(_dt.UTC).isoformat()


def _flatten_files(tree: Any, sizes: dict[str, int], uuid: str) -> dict[str, list[Any]]:
    """A node's ``repository_metadata`` tree as plait's ``files`` map (relative path -> [sha256, size])."""
    files: dict[str, list[Any]] = {}

    def walk(entry: Any, prefix: str) -> None:
        if not isinstance(entry, dict):
            raise CorruptArchiveError(f"AiiDA node {uuid}: its repository_metadata is malformed")
        for name, child in (entry.get("o") or {}).items():
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise UnsafeArchiveError(f"AiiDA node {uuid}: file name {name!r} is not a plain name")
            path = f"{prefix}{name}"
            if isinstance(child, dict) and "k" in child:
                key = child["k"]
                if key not in sizes:
                    raise CorruptArchiveError(
                        f"AiiDA node {uuid}: file {path!r} refers to object {key}, which the archive lacks"
                    )
                files[path] = [key, sizes[key]]
            else:
                walk(child, path + "/")

    walk(tree or {}, "")
    return files


def _node_hash(node_type: str, attributes: dict[str, Any], files: dict[str, list[Any]]) -> str | None:
    """plait's content hash of an imported data node (processes get none: plait did not run them)."""
    if node_type.startswith("process."):
        return None
    from plait.orm.registry import node_class_for

    cls = node_class_for(node_type)
    node = cls.__new__(cls)
    node._attributes, node._files = attributes, files  # what the hash reads
    return node._compute_hash()


class _Translation:
    """Fills a plait archive database (:mod:`plait.archive.format`) from an AiiDA one."""

    def __init__(self, source: sqlite3.Connection, target: sqlite3.Connection, sizes: dict[str, int]) -> None:
        self.source, self.target, self.sizes = source, target, sizes
        self.emails = {row["id"]: row["email"] for row in source.execute("SELECT id, email FROM db_dbuser")}
        self.now = _dt.datetime.now(_dt.UTC).isoformat()

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = fmt.COLUMNS[table]
        marks = ", ".join("?" for _ in columns)
        self.target.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
            [tuple(row.get(c) for c in columns) for row in rows],
        )

    @staticmethod
    def _text(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)

    def _email(self, user_id: Any) -> str:
        return str(self.emails.get(user_id, ""))

    def run(self) -> None:
        self._computers()
        callers = self._callers()
        self._nodes(callers)
        self._links()
        self._groups()
        self._logs()
        self._comments()
        self._insert("objects", [{"sha256": key, "size": size} for key, size in self.sizes.items()])

    def _computers(self) -> None:
        rows = []
        for row in self.source.execute("SELECT * FROM db_dbcomputer ORDER BY id"):
            metadata = _json(row["metadata"], f"computer {row['uuid']} metadata") or {}
            work_dir = str(metadata.pop("workdir", "") or "")
            rows.append(
                {
                    "id": row["id"],
                    "uuid": row["uuid"],
                    "label": row["label"],
                    "hostname": row["hostname"],
                    "description": row["description"] or "",
                    "transport_type": plait_transport(row["transport_type"]),
                    "scheduler_type": plait_scheduler(row["scheduler_type"]),
                    "work_dir": work_dir,
                    "options": self._text(metadata),
                    "ctime": self.now,
                }
            )
        self._insert("computers", rows)

    def _callers(self) -> dict[int, int]:
        query = "SELECT input_id, output_id FROM db_dblink WHERE type IN ('call_calc', 'call_work')"
        return {row["output_id"]: row["input_id"] for row in self.source.execute(query)}

    def _nodes(self, callers: dict[int, int]) -> None:
        computer_labels = {
            row["id"]: row["label"] for row in self.source.execute("SELECT id, label FROM db_dbcomputer")
        }
        cursor = self.source.execute("SELECT * FROM db_dbnode ORDER BY id")
        while chunk := cursor.fetchmany(1000):
            nodes, processes = [], []
            for row in chunk:
                uuid = row["uuid"]
                try:
                    node_type = plait_node_type(row["node_type"])
                except ValueError as exc:
                    raise CorruptArchiveError(f"AiiDA node {uuid}: {exc}") from None
                attributes = _json(row["attributes"], f"node {uuid} attributes") or {}
                extras = _json(row["extras"], f"node {uuid} extras") or {}
                files = _flatten_files(
                    _json(row["repository_metadata"], f"node {uuid} files"), self.sizes, uuid
                )
                from plait.orm.registry import BUILTIN_NODE_TYPES

                if node_type not in BUILTIN_NODE_TYPES and node_type != "data.core.array":
                    extras[AIIDA_TYPE_EXTRA] = row["node_type"]
                if node_type.startswith("process."):
                    processes.append(
                        self._process(row["id"], uuid, attributes, callers.get(row["id"]), row["mtime"])
                    )
                    attributes = {k: v for k, v in attributes.items() if k not in AIIDA_PROCESS_ATTRIBUTES}
                elif row["dbcomputer_id"] is not None and node_type.startswith("data.core.code.installed"):
                    self._code_attributes(attributes, computer_labels.get(row["dbcomputer_id"], ""))
                elif row["dbcomputer_id"] is not None and node_type == "data.core.remote":
                    attributes.setdefault("computer", computer_labels.get(row["dbcomputer_id"], ""))
                if node_type == "data.core.code.portable":
                    self._code_attributes(attributes, None)
                nodes.append(
                    {
                        "id": row["id"],
                        "uuid": uuid,
                        "node_type": node_type,
                        "process_type": row["process_type"],
                        "label": row["label"] or "",
                        "description": row["description"] or "",
                        "ctime": _time(row["ctime"], f"node {uuid} ctime"),
                        "mtime": _time(row["mtime"], f"node {uuid} mtime"),
                        "attributes": self._text(attributes),
                        "extras": self._text(extras),
                        "files": self._text(files),
                        "node_hash": _node_hash(node_type, attributes, files),
                        "computer_id": row["dbcomputer_id"],
                    }
                )
            self._insert("nodes", nodes)
            self._insert("processes", processes)

    @staticmethod
    def _code_attributes(attributes: dict[str, Any], computer: str | None) -> None:
        """aiida's code attributes under plait's names (``input_plugin`` -> ``default_calc_job_plugin``)."""
        plugin = attributes.pop("input_plugin", None)
        if isinstance(plugin, str) and plugin.startswith("core."):
            plugin = plugin[len("core.") :]
        attributes.setdefault("default_calc_job_plugin", plugin)
        attributes.setdefault("prepend_text", "")
        attributes.setdefault("append_text", "")
        attributes.setdefault("with_mpi", None)
        if computer is not None:
            attributes["computer"] = computer
        if "filepath_executable" in attributes:
            attributes["filepath_executable"] = str(attributes["filepath_executable"])

    def _process(
        self, pk: int, uuid: str, attributes: dict[str, Any], caller: int | None, mtime: Any
    ) -> dict[str, Any]:
        state = str(attributes.get("process_state") or "")
        exit_status = attributes.get("exit_status")
        exit_message = attributes.get("exit_message")
        if state not in _TERMINAL:
            exit_message = f"imported from AiiDA in state {state or 'unknown'!r}, not terminated"
            state = "killed"
        return {
            "node_id": pk,
            "state": state,
            "exit_status": exit_status if isinstance(exit_status, int) else None,
            "exit_message": exit_message,
            "exception": attributes.get("exception"),
            "process_label": str(attributes.get("process_label") or ""),
            "status": attributes.get("process_status"),
            "caller_id": caller,
            "call_key": None,
            "job_stage": None,
            "mtime": _time(mtime, f"node {uuid} mtime"),
        }

    def _links(self) -> None:
        rows = []
        for row in self.source.execute("SELECT input_id, output_id, label, type FROM db_dblink ORDER BY id"):
            if row["type"] not in _LINK_TYPES:
                raise CorruptArchiveError(
                    f"AiiDA database: link {row['input_id']} -> {row['output_id']} "
                    f"has unknown type {row['type']!r}"
                )
            rows.append(
                {
                    "input_id": row["input_id"],
                    "output_id": row["output_id"],
                    "link_type": row["type"],
                    "label": row["label"],
                }
            )
        self._insert("links", rows)

    def _groups(self) -> None:
        rows = [
            {
                "id": row["id"],
                "uuid": row["uuid"],
                "label": row["label"],
                "type_string": row["type_string"],
                "description": row["description"] or "",
                "ctime": _time(row["time"], f"group {row['uuid']} time"),
                "user_email": self._email(row["user_id"]),
                "extras": self._text(_json(row["extras"], f"group {row['uuid']} extras") or {}),
            }
            for row in self.source.execute("SELECT * FROM db_dbgroup ORDER BY id")
        ]
        self._insert("groups", rows)
        members = self.source.execute("SELECT DISTINCT dbgroup_id, dbnode_id FROM db_dbgroup_dbnodes")
        self._insert("group_nodes", [{"group_id": g, "node_id": n} for g, n in members])

    def _tables(self) -> set[str]:
        return {r[0] for r in self.source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _logs(self) -> None:
        if "db_dblog" not in self._tables():
            return
        rows = []
        for row in self.source.execute("SELECT * FROM db_dblog ORDER BY id"):
            extra = _json(row["metadata"], f"log {row['uuid']} metadata") or {}
            extra = {"aiida_uuid": row["uuid"], "loggername": row["loggername"], "aiida_metadata": extra}
            rows.append(
                {
                    "id": row["id"],
                    "node_id": row["dbnode_id"],
                    "time": _time(row["time"], f"log {row['uuid']} time"),
                    "level": row["levelname"],
                    "message": row["message"],
                    "extra": self._text(extra),
                }
            )
        self._insert("logs", rows)

    def _comments(self) -> None:
        if "db_dbcomment" not in self._tables():
            return
        rows = [
            {
                "id": row["id"],
                "uuid": row["uuid"],
                "node_id": row["dbnode_id"],
                "ctime": _time(row["ctime"], f"comment {row['uuid']} ctime"),
                "mtime": _time(row["mtime"], f"comment {row['uuid']} mtime"),
                "user_email": self._email(row["user_id"]),
                "content": row["content"],
            }
            for row in self.source.execute("SELECT * FROM db_dbcomment ORDER BY id")
        ]
        self._insert("comments", rows)


class _AiidaImport(_Import):
    """plait's import of the translated database; only the file members are named differently."""

    def _files(self, objects: set[str]) -> None:
        repository = self.backend.repository
        with progress_bar("Importing files", len(objects), self.progress) as advance:
            for key in sorted(objects):
                there = repository.has(key)
                reader = MemberReader(self.archive, f"{AIIDA_REPO}{key}")
                try:
                    stored = repository.put_stream(reader)  # type: ignore[arg-type]
                finally:
                    reader.close()
                if stored != key:
                    raise CorruptArchiveError(
                        f"archive member 'repo/{key}': checksum mismatch (sha256 {stored})"
                    )
                (self.existing if there else self.added)["files"] += 1
                advance(1)


def import_aiida_archive(
    path: str | os.PathLike[str],
    *,
    group: str | None = None,
    backend: StorageBackend | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
    pk_map: bool = True,
) -> ImportResult:
    """Import an AiiDA 2.x archive into the profile, all or nothing; importing it again adds nothing.

    The arguments and the result are those of :func:`plait.archive.import_archive` (which calls
    this when the zip holds ``metadata.json`` and ``db.sqlite3``); ``result.node_pks`` maps
    AiiDA's pks to plait's.

    Raises:
        CorruptArchiveError: not a zip, truncated, a database that is no SQLite file or is
            damaged, a file object whose content does not match its name, a reference to a
            record or object the archive lacks.
        UnsafeArchiveError: a member path that leaves the target, a symlink, a zip bomb, a member
            the format does not have, a file name in a node's tree that is not a plain name.
        ArchiveVersionError: an export version plait does not read (aiida-core 1.x archives).
        ImportConflictError: a node UUID in the profile with other content.
        In every case nothing was imported.
    """
    from plait.orm.node import _backend

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if group is not None:
        from plait.orm.groups import _check_label

        _check_label(group)
    backend = backend or _backend()
    with open_checked(path) as archive:
        read_aiida_metadata(archive)
        if AIIDA_DATABASE not in archive.namelist():
            raise CorruptArchiveError(f"the archive has no {AIIDA_DATABASE!r}")
        sizes = _repo_keys(archive)
        with tempfile.TemporaryDirectory(prefix="plait-aiida-import-") as scratch:
            translated = os.path.join(scratch, fmt.DATABASE)
            with _aiida_database(archive, scratch) as source:
                target = fmt.create_database(translated)
                try:
                    _Translation(source, target, sizes).run()
                except sqlite3.DatabaseError as exc:
                    raise CorruptArchiveError(
                        f"archive member {AIIDA_DATABASE!r} cannot be read ({exc})"
                    ) from None
                except (KeyError, IndexError) as exc:
                    raise CorruptArchiveError(
                        f"archive member {AIIDA_DATABASE!r} lacks a column plait reads ({exc})"
                    ) from None
                fmt.finish_database(target)
            conn = sqlite3.connect(f"file:{translated}?mode=ro", uri=True)
            try:
                conn.row_factory = sqlite3.Row
                objects = set(sizes)
                _check_references(conn, objects)
                with progress_bar("Checking files", len(objects), progress) as advance:
                    for key in sorted(objects):
                        copy_member(archive, f"{AIIDA_REPO}{key}", sha256=key)
                        advance(1)
                result = ImportResult(path=Path(path))
                with backend.transaction():
                    _AiidaImport(conn, archive, backend, batch_size, progress, result).run(objects, group)
            finally:
                conn.close()
    if not pk_map:
        result.node_pks = {}
    return result
