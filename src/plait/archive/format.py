"""The plait archive format, version 1: what the zip holds and how its database is laid out.

An archive is a zip file (``.plait`` by convention; any name works) with exactly these members:

``manifest.json``
    ``{"format": "plait-archive", "version": 1, "created": ISO time, "plait_version": ...,
    "database": {"member": "database.sqlite", "sha256": ..., "size": bytes},
    "counts": {table: rows}, "parameters": {how the set was chosen}}``.
``database.sqlite``
    A small SQLite database with the tables of :data:`SCHEMA` (nodes, processes, links,
    computers, groups, group_nodes, logs, comments, objects).  Ids are the pks of the profile the
    archive was made from; an import maps them to new pks.  Times are ISO 8601 in UTC; JSON
    columns hold JSON text, copied as the profile stores it (so key order and spacing are
    whatever the source database kept: a reader decodes it and must not rely on either).
``objects/<2 hex>/<62 hex>``
    Each file content once, named by its SHA-256 (the name *is* the checksum), as in the
    profile's repository; the ``objects`` table lists each with its size.

The database's own checksum is in the manifest, so every member but the manifest carries a
SHA-256 that the import verifies before it writes anything (the manifest is covered by the zip's
CRC-32).  A reader refuses any other member, any other format name and any version it does not
know (:data:`FORMAT_VERSION` is the newest; a later plait reads the older versions).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sqlite3
from typing import Any

__all__ = [
    "DATABASE",
    "DEFAULT_COMPRESSION",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "OBJECTS",
    "SCHEMA",
    "object_member",
]

#: the zip compression level of an export unless one is given: level 1 compresses the database
#: about 2.6x faster than zlib's usual 6 for an archive about 4 % larger (measured on 33,000 nodes)
DEFAULT_COMPRESSION = 1
FORMAT_NAME = "plait-archive"
FORMAT_VERSION = 1
#: the versions this plait can import
READABLE_VERSIONS = frozenset({1})

MANIFEST = "manifest.json"
DATABASE = "database.sqlite"
OBJECTS = "objects/"
OBJECT_MEMBER = re.compile(r"^objects/([0-9a-f]{2})/([0-9a-f]{62})$")
OBJECT_FOLDER = re.compile(r"^objects/[0-9a-f]{2}/$")

#: the archive database, version 1 (every table and column an import reads)
SCHEMA: dict[str, str] = {
    "computers": """CREATE TABLE computers (
        id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, label TEXT NOT NULL, hostname TEXT NOT NULL,
        description TEXT NOT NULL, transport_type TEXT NOT NULL, scheduler_type TEXT NOT NULL,
        work_dir TEXT NOT NULL, options TEXT NOT NULL, ctime TEXT NOT NULL)""",
    "nodes": """CREATE TABLE nodes (
        id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, node_type TEXT NOT NULL, process_type TEXT,
        label TEXT NOT NULL, description TEXT NOT NULL, ctime TEXT NOT NULL, mtime TEXT NOT NULL,
        attributes TEXT NOT NULL, extras TEXT NOT NULL, files TEXT NOT NULL, node_hash TEXT,
        computer_id INTEGER REFERENCES computers(id))""",
    "processes": """CREATE TABLE processes (
        node_id INTEGER PRIMARY KEY REFERENCES nodes(id), state TEXT NOT NULL, exit_status INTEGER,
        exit_message TEXT, exception TEXT, process_label TEXT NOT NULL, status TEXT,
        caller_id INTEGER REFERENCES nodes(id), call_key TEXT, job_stage TEXT, mtime TEXT NOT NULL)""",
    "links": """CREATE TABLE links (
        input_id INTEGER NOT NULL REFERENCES nodes(id), output_id INTEGER NOT NULL REFERENCES nodes(id),
        link_type TEXT NOT NULL, label TEXT NOT NULL)""",
    "groups": """CREATE TABLE groups (
        id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, label TEXT NOT NULL, type_string TEXT NOT NULL,
        description TEXT NOT NULL, ctime TEXT NOT NULL, user_email TEXT NOT NULL, extras TEXT NOT NULL)""",
    "group_nodes": """CREATE TABLE group_nodes (
        group_id INTEGER NOT NULL REFERENCES groups(id), node_id INTEGER NOT NULL REFERENCES nodes(id),
        PRIMARY KEY (group_id, node_id))""",
    "logs": """CREATE TABLE logs (
        id INTEGER PRIMARY KEY, node_id INTEGER NOT NULL REFERENCES nodes(id), time TEXT NOT NULL,
        level TEXT NOT NULL, message TEXT NOT NULL, extra TEXT NOT NULL)""",
    "comments": """CREATE TABLE comments (
        id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, node_id INTEGER NOT NULL REFERENCES nodes(id),
        ctime TEXT NOT NULL, mtime TEXT NOT NULL, user_email TEXT NOT NULL, content TEXT NOT NULL)""",
    "objects": "CREATE TABLE objects (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL)",
}
#: indexes the import's lookups use
INDEXES = (
    "CREATE INDEX ix_links_output ON links (output_id)",
    "CREATE INDEX ix_logs_node ON logs (node_id)",
    "CREATE INDEX ix_comments_node ON comments (node_id)",
)

#: the columns of each table, in order (what the writer inserts and the reader selects)
COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(
        match.group(1)
        for match in re.finditer(r"(?:\(|,)\s*([a-z_0-9]+) (?:INTEGER|TEXT)", ddl)
        if match.group(1) != "PRIMARY"
    )
    for name, ddl in SCHEMA.items()
}
#: the columns that hold JSON text
JSON_COLUMNS = frozenset({"options", "attributes", "extras", "files", "extra"})
#: the columns that hold times
TIME_COLUMNS = frozenset({"ctime", "mtime", "time"})


def object_member(sha256: str) -> str:
    """The zip member holding the object with this hash."""
    return f"{OBJECTS}{sha256[:2]}/{sha256[2:]}"


def create_database(path: str) -> sqlite3.Connection:
    """A new, empty archive database at ``path`` (tuned for one bulk writer)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    for ddl in SCHEMA.values():
        conn.execute(ddl)
    return conn


def finish_database(conn: sqlite3.Connection) -> None:
    """Add the indexes and close (building indexes once at the end is faster than row by row)."""
    for ddl in INDEXES:
        conn.execute(ddl)
    conn.commit()
    conn.close()


def to_text(column: str, value: Any) -> Any:
    """A profile value as the archive database stores it."""
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    if column in TIME_COLUMNS and isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.astimezone(_dt.UTC).isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def stored_columns(table: Any, name: str, *, sqlite: bool) -> list[Any]:
    """The columns of profile ``table`` to select for archive table ``name``, as the archive stores them.

    JSON columns come as the JSON text the profile holds (SQLite: the stored text itself;
    PostgreSQL: ``jsonb::text``), so an export never decodes and re-encodes them: JSON text is
    JSON text, whatever its key order or spacing.  On SQLite the times come as their stored text
    too (:func:`time_text` turns it into ISO 8601 without parsing it).
    """
    from sqlalchemy import String, Text, cast, type_coerce

    selected = []
    for column in COLUMNS[name]:
        col = table.c[column]
        if column in JSON_COLUMNS:
            col = type_coerce(col, Text) if sqlite else cast(col, Text)
        elif column in TIME_COLUMNS and sqlite:
            col = type_coerce(col, String)
        selected.append(col.label(column))
    return selected


def text_row_converter(name: str) -> Any:
    """A function turning a row of :func:`stored_columns` into the archive table's row tuple."""
    times = [i for i, c in enumerate(COLUMNS[name]) if c in TIME_COLUMNS]
    if not times:
        return tuple

    def convert(row: Any) -> tuple[Any, ...]:
        values = list(row)
        for i in times:
            values[i] = time_text(values[i])
        return tuple(values)

    return convert


def time_text(value: Any) -> Any:
    """A time as the profile returns it (a datetime, or SQLite's stored text) in ISO 8601 UTC.

    SQLite holds ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC without an offset; that text is
    rewritten, not parsed.  Anything else goes through :func:`to_text`.
    """
    if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
        return f"{value[:10]}T{value[11:]}+00:00"  # SQLAlchemy's SQLite storage format
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value)
    return to_text("time", value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]}{'...' if len(text) > 40 else ''} is not a finite number")
    return value


#: decode an archive's JSON text as storage would accept it: no NaN or Infinity, and no number that
#: only a float's overflow makes infinite (``1e999``), which storage would refuse to write (ValueError)
decode_json = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float).decode


def maybe_not_finite_sql(column: str) -> str:
    """SQL (SQLite) that is true when ``column``'s JSON text may hold a number no float can hold:
    an exponent of two digits or more, or a run of 300 digits (finite floats end near 1.8e308).
    Rows it flags are decoded value by value (:func:`decode_json`), the rest pass as checked text."""
    digits = "[0-9]" * 300
    # one pattern for both exponent forms (it also flags some harmless ones, such as e+05)
    exponent = f"{column} GLOB '*[0-9][eE][0-9+-][0-9][0-9]*'"
    return f"({exponent} OR (length({column}) >= 300 AND {column} GLOB '*{digits}*'))"


def from_text(column: str, value: Any) -> Any:
    """An archive database value as the profile stores it.

    Raises:
        ValueError: a JSON column that is not JSON, a time that is not ISO 8601.
    """
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return decode_json(value)
    if column in TIME_COLUMNS:
        parsed = _dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)
    return value


def insert_tuples(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows already in the archive's form (tuples in :data:`COLUMNS` order)."""
    if rows:
        columns = COLUMNS[table]
        marks = ", ".join("?" for _ in columns)
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
