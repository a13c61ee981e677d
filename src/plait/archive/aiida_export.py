"""Writing an archive that aiida-core 2.x imports (``verdi archive import``): plait's graph in AiiDA's format.

The set of nodes is chosen exactly as for a plait archive (the same traversal rules, the same
refusal of active processes): :func:`create_aiida_archive` first writes a plait archive to a
temporary file with :func:`plait.archive.export.create_plait_archive`, then translates it into
aiida's ``sqlite_zip`` format, export version ``main_0001``:

``metadata.json``
    ``export_version``, ``aiida_version`` (the aiida-core version whose format is written),
    ``key_format`` ``sha256``, ``compression``, ``ctime``, ``creation_parameters`` (with
    ``"written_by": "plait <version>"``).
``db.sqlite3``
    the tables aiida's archive backend reads (:data:`AIIDA_METADATA`, SQLAlchemy Core tables
    written from aiida's sqlite_zip schema): users (one per e-mail address met), computers
    (plugin names back to ``core.*``), nodes (node types back to aiida's class paths, process
    rows merged back into the process attributes, ``sealed``), links, groups and members,
    logs (each given a new UUID: plait's logs have none), comments.
``repo/<sha256>``
    each file content once; a node's ``repository_metadata`` is rebuilt from its ``files`` map.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import tempfile
import uuid as _uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
)

from plait.archive import format as fmt
from plait.archive.aiida_types import aiida_node_type
from plait.archive.errors import ArchiveExportError

if TYPE_CHECKING:
    from plait.archive.export import ExportResult
    from plait.orm import Group, Node
    from plait.storage.backend import StorageBackend

__all__ = ["AIIDA_EXPORT_VERSION", "AIIDA_METADATA", "create_aiida_archive"]

#: the export version written (aiida-core 2.x since 2.1 reads and writes it)
AIIDA_EXPORT_VERSION = "main_0001"
#: the aiida-core version whose archive format is written
AIIDA_FORMAT_OF = "2.9.4"
_TRANSPORTS = {"local": "core.local", "ssh": "core.ssh", "ssh-blocking": "core.ssh"}
_SCHEDULERS = {"direct": "core.direct", "slurm": "core.slurm", "pbs": "core.pbspro"}
_BUILTIN_CALCULATIONS = ("arithmetic.add", "shell")

AIIDA_METADATA = MetaData()
_users = Table(
    "db_dbuser",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("first_name", String(254), nullable=False),
    Column("last_name", String(254), nullable=False),
    Column("institution", String(254), nullable=False),
)
_computers = Table(
    "db_dbcomputer",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(32), nullable=False, unique=True),
    Column("label", String(255), nullable=False, unique=True),
    Column("hostname", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("scheduler_type", String(255), nullable=False),
    Column("transport_type", String(255), nullable=False),
    Column("metadata", JSON, nullable=False),
)
Table(
    "db_dbsetting",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("key", String(1024), nullable=False, unique=True),
    Column("val", JSON),
    Column("description", Text, nullable=False),
    Column("time", DateTime, nullable=False),
)
Table(
    "db_dbauthinfo",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("aiidauser_id", Integer, ForeignKey("db_dbuser.id"), nullable=False),
    Column("dbcomputer_id", Integer, ForeignKey("db_dbcomputer.id"), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("auth_params", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
)
_nodes = Table(
    "db_dbnode",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(32), nullable=False, unique=True),
    Column("node_type", String(255), nullable=False, index=True),
    Column("process_type", String(255), index=True),
    Column("label", String(255), nullable=False, index=True),
    Column("description", Text, nullable=False),
    Column("ctime", DateTime, nullable=False, index=True),
    Column("mtime", DateTime, nullable=False, index=True),
    Column("attributes", JSON),
    Column("extras", JSON),
    Column("repository_metadata", JSON, nullable=False),
    Column("dbcomputer_id", Integer, ForeignKey("db_dbcomputer.id"), index=True),
    Column("user_id", Integer, ForeignKey("db_dbuser.id"), nullable=False, index=True),
)
_groups = Table(
    "db_dbgroup",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(32), nullable=False, unique=True),
    Column("label", String(255), nullable=False, index=True),
    Column("type_string", String(255), nullable=False, index=True),
    Column("time", DateTime, nullable=False),
    Column("description", Text, nullable=False),
    Column("extras", JSON, nullable=False),
    Column("user_id", Integer, ForeignKey("db_dbuser.id"), nullable=False, index=True),
)
_comments = Table(
    "db_dbcomment",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(32), nullable=False, unique=True),
    Column("dbnode_id", Integer, ForeignKey("db_dbnode.id"), nullable=False, index=True),
    Column("ctime", DateTime, nullable=False),
    Column("mtime", DateTime, nullable=False),
    Column("user_id", Integer, ForeignKey("db_dbuser.id"), nullable=False, index=True),
    Column("content", Text, nullable=False),
)
_members = Table(
    "db_dbgroup_dbnodes",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("dbnode_id", Integer, ForeignKey("db_dbnode.id"), nullable=False, index=True),
    Column("dbgroup_id", Integer, ForeignKey("db_dbgroup.id"), nullable=False, index=True),
)
_links = Table(
    "db_dblink",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("input_id", Integer, ForeignKey("db_dbnode.id"), nullable=False, index=True),
    Column("output_id", Integer, ForeignKey("db_dbnode.id"), nullable=False, index=True),
    Column("label", String(255), nullable=False, index=True),
    Column("type", String(255), nullable=False, index=True),
)
_logs = Table(
    "db_dblog",
    AIIDA_METADATA,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(32), nullable=False, unique=True),
    Column("time", DateTime, nullable=False),
    Column("loggername", String(255), nullable=False, index=True),
    Column("levelname", String(50), nullable=False, index=True),
    Column("dbnode_id", Integer, ForeignKey("db_dbnode.id"), nullable=False, index=True),
    Column("message", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
)


def _naive_utc(text: str | None) -> _dt.datetime:
    """A plait archive time (ISO 8601) as the naive UTC datetime aiida's sqlite_zip stores."""
    value = fmt.from_text("ctime", text) if text else _dt.datetime.now(_dt.UTC)
    return value.astimezone(_dt.UTC).replace(tzinfo=None)


def _tree(files: dict[str, list[Any]]) -> dict[str, Any]:
    """plait's ``files`` map as aiida's ``repository_metadata`` tree."""
    root: dict[str, Any] = {}
    for relpath, (key, _size) in sorted(files.items()):
        parts = relpath.split("/")
        folder = root
        for part in parts[:-1]:
            folder = folder.setdefault("o", {}).setdefault(part, {})
        folder.setdefault("o", {})[parts[-1]] = {"k": key}
    return root


def _aiida_attributes(row: sqlite3.Row, process: sqlite3.Row | None) -> dict[str, Any]:
    attributes: dict[str, Any] = json.loads(row["attributes"])
    node_type = row["node_type"]
    if node_type.startswith("data.core.code."):
        plugin = attributes.pop("default_calc_job_plugin", None)
        if plugin in _BUILTIN_CALCULATIONS:
            plugin = f"core.{plugin}"
        attributes["input_plugin"] = plugin
        attributes.pop("computer", None)
    elif node_type == "data.core.remote":
        attributes.pop("computer", None)
    if process is not None:
        attributes.update(process_state=process["state"], process_label=process["process_label"], sealed=True)
        for name, column in (("exit_status", "exit_status"), ("exit_message", "exit_message")):
            if process[column] is not None:
                attributes[name] = process[column]
        if process["exception"] is not None:
            attributes["exception"] = process["exception"]
        if process["status"] is not None:
            attributes["process_status"] = process["status"]
    return attributes


class _Writer:
    """Fills aiida's database from a plait archive database."""

    def __init__(self, source: sqlite3.Connection, conn: Any, default_email: str) -> None:
        self.source, self.conn = source, conn
        self.users: dict[str, int] = {}
        self.default_email = default_email or "plait@localhost"

    def user(self, email: str | None) -> int:
        email = email or self.default_email
        if email not in self.users:
            pk = len(self.users) + 1
            self.conn.execute(
                insert(_users),
                {"id": pk, "email": email, "first_name": "", "last_name": "", "institution": ""},
            )
            self.users[email] = pk
        return self.users[email]

    def run(self) -> None:
        owner = self.user(self.default_email)
        for row in self.source.execute("SELECT * FROM computers ORDER BY id"):
            metadata = {**json.loads(row["options"]), "workdir": row["work_dir"]}
            self.conn.execute(
                insert(_computers),
                {
                    "id": row["id"],
                    "uuid": row["uuid"],
                    "label": row["label"],
                    "hostname": row["hostname"],
                    "description": row["description"],
                    "scheduler_type": _SCHEDULERS.get(row["scheduler_type"], row["scheduler_type"]),
                    "transport_type": _TRANSPORTS.get(row["transport_type"], row["transport_type"]),
                    "metadata": metadata,
                },
            )
        processes = {row["node_id"]: row for row in self.source.execute("SELECT * FROM processes")}
        cursor = self.source.execute("SELECT * FROM nodes ORDER BY id")
        while chunk := cursor.fetchmany(1000):
            rows = []
            for row in chunk:
                extras = json.loads(row["extras"])
                original = extras.pop("_aiida_node_type", None)
                rows.append(
                    {
                        "id": row["id"],
                        "uuid": row["uuid"],
                        "node_type": aiida_node_type(row["node_type"], original),
                        "process_type": row["process_type"],
                        "label": row["label"],
                        "description": row["description"],
                        "ctime": _naive_utc(row["ctime"]),
                        "mtime": _naive_utc(row["mtime"]),
                        "attributes": _aiida_attributes(row, processes.get(row["id"])),
                        "extras": extras,
                        "repository_metadata": _tree(json.loads(row["files"])),
                        "dbcomputer_id": row["computer_id"],
                        "user_id": owner,
                    }
                )
            self.conn.execute(insert(_nodes), rows)
        links = [
            {
                "input_id": r["input_id"],
                "output_id": r["output_id"],
                "label": r["label"],
                "type": r["link_type"],
            }
            for r in self.source.execute("SELECT * FROM links")
        ]
        if links:
            self.conn.execute(insert(_links), links)
        for row in self.source.execute("SELECT * FROM groups ORDER BY id"):
            self.conn.execute(
                insert(_groups),
                {
                    "id": row["id"],
                    "uuid": row["uuid"],
                    "label": row["label"],
                    "type_string": row["type_string"],
                    "time": _naive_utc(row["ctime"]),
                    "description": row["description"],
                    "extras": json.loads(row["extras"]),
                    "user_id": self.user(row["user_email"]),
                },
            )
        members = [
            {"dbgroup_id": g, "dbnode_id": n} for g, n in self.source.execute("SELECT * FROM group_nodes")
        ]
        if members:
            self.conn.execute(insert(_members), members)
        logs = [
            {
                "uuid": str(_uuid.uuid4()),
                "time": _naive_utc(row["time"]),
                "loggername": "plait",
                "levelname": row["level"],
                "dbnode_id": row["node_id"],
                "message": row["message"],
                "metadata": json.loads(row["extra"]),
            }
            for row in self.source.execute("SELECT * FROM logs ORDER BY id")
        ]
        if logs:
            self.conn.execute(insert(_logs), logs)
        for row in self.source.execute("SELECT * FROM comments ORDER BY id"):
            self.conn.execute(
                insert(_comments),
                {
                    "uuid": row["uuid"],
                    "dbnode_id": row["node_id"],
                    "ctime": _naive_utc(row["ctime"]),
                    "mtime": _naive_utc(row["mtime"]),
                    "user_id": self.user(row["user_email"]),
                    "content": row["content"],
                },
            )


def create_aiida_archive(
    path: str | os.PathLike[str],
    nodes: Iterable[Node | int] | None = None,
    groups: Iterable[Group | str | int] | None = None,
    all: bool = False,
    *,
    overwrite: bool = False,
    include_comments: bool = True,
    include_logs: bool = True,
    compression: int = fmt.DEFAULT_COMPRESSION,
    backend: StorageBackend | None = None,
    progress: bool | None = None,
    **traversal_rules: bool,
) -> ExportResult:
    """Write ``path`` as an AiiDA 2.x archive, one ``verdi archive import`` reads.

    The arguments are those of :func:`plait.archive.create_archive` (which calls this for
    ``format="aiida"``); the node set is the same as for a plait archive.

    Raises:
        ArchiveExportError: ``path`` exists (and not ``overwrite``), an active process in the set,
            a file missing from the repository; and what :func:`create_archive` raises.
    """
    from plait import __version__ as plait_version
    from plait.archive.export import create_plait_archive
    from plait.orm.node import _backend

    target = Path(path)
    if target.exists() and not overwrite:
        raise ArchiveExportError(f"'{target}' exists already: choose another name or overwrite it (--force)")
    backend = backend or _backend()
    with tempfile.TemporaryDirectory(prefix="plait-aiida-export-") as scratch:
        plain = Path(scratch) / "set.plait"
        result = create_plait_archive(
            plain,
            nodes=nodes,
            groups=groups,
            all=all,
            include_comments=include_comments,
            include_logs=include_logs,
            compression=0,
            backend=backend,
            progress=progress,
            **traversal_rules,
        )
        database = Path(scratch) / fmt.DATABASE
        aiida_db = Path(scratch) / "db.sqlite3"
        with zipfile.ZipFile(plain) as archive:
            database.write_bytes(archive.read(fmt.DATABASE))
            source = sqlite3.connect(database)
            source.row_factory = sqlite3.Row
            engine = create_engine(f"sqlite:///{aiida_db}")
            try:
                AIIDA_METADATA.create_all(engine)
                with engine.begin() as conn:
                    _Writer(source, conn, backend.profile.user_email).run()
            finally:
                engine.dispose()
            keys = [row[0] for row in source.execute("SELECT sha256 FROM objects ORDER BY sha256")]
            source.close()
            metadata = {
                "export_version": AIIDA_EXPORT_VERSION,
                "aiida_version": AIIDA_FORMAT_OF,
                "key_format": "sha256",
                "compression": compression,
                "ctime": _dt.datetime.now().isoformat(),
                "creation_parameters": {
                    "written_by": f"plait {plait_version}",
                    "include_comments": include_comments,
                    "include_logs": include_logs,
                    "entities_starting_set": None,
                    **result.parameters,
                },
            }
            partial = target.with_name(target.name + ".part")
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=compression) as out:
                out.writestr("metadata.json", json.dumps(metadata))
                out.write(aiida_db, "db.sqlite3")
                for key in keys:
                    with archive.open(fmt.object_member(key)) as src, out.open(f"repo/{key}", "w") as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
            os.replace(partial, target)
    result.path = target
    return result
