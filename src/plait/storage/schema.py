"""The database schema (SQLAlchemy Core), identical on SQLite and PostgreSQL.

The Alembic migrations in ``plait/storage/migrations`` build exactly this
schema; ``tests/storage/test_migrations.py`` checks that they agree.

Tables:

``nodes``
    Every node of the provenance graph (data and processes).  ``attributes``
    are fixed once the node is stored; ``extras`` stay writable.  ``files``
    maps each relative file path of the node to ``[sha256, size]`` in the
    file repository.  ``node_hash`` is the content hash used for caching.
``processes``
    One row per process node: state, paused flag, exit status, the latest
    checkpoint (versioned JSON), the lease (which runner or worker holds the
    process, and until when), the waiting status shown by the CLI, and for
    calculation jobs the stage of the job (``job_stage``: upload, waiting for
    a slot, submit, queued, retrieve, parse) used to cap queued jobs.
``process_checkpoints``
    The checkpoint after every step, kept while the process runs and when
    it ends abnormally (for restarting from a chosen step).
``links``
    Directed, typed, labelled edges: input_calc, input_work, create, return,
    call_calc, call_work.
``logs``
    Process reports and engine messages attached to a node.
``computers`` and ``computer_configs``
    Where calculations run, and each user's way of reaching it.
``process_waits``
    A parked process (a work chain run by a daemon worker, waiting for its
    children) holds no worker and no lease: one row per child it still
    waits for.  A child's termination deletes its rows in the same
    transaction, so the parent becomes runnable exactly when its last
    awaited child has ended — the database says what must run.  The
    parent's ``processes.waits_on_children`` says whether it has such rows,
    written with them.
``groups`` and ``group_nodes``
    Named sets of nodes (any node: data, processes), as AiiDA's groups:
    a unique ``label``, a ``type_string`` (``core`` for user groups), a
    description and writable extras; ``group_nodes`` holds membership.
``comments``
    Free-text notes that users attach to a node after the fact (who wrote
    them and when); they are not provenance and stay editable.
``broker_messages`` and ``workers``
    The database broker's control requests and replies (addressed to the
    runner that holds the process), and the daemon workers' heartbeats.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["INDEXED_ATTRIBUTE_KEYS", "NODE_COLUMNS_COPIED_TO_PROCESSES", "metadata"]

# One JSON type: JSONB on PostgreSQL (indexable), JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")
PkType = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

computers = Table(
    "computers",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("label", String(255), nullable=False, unique=True),
    Column("hostname", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("transport_type", String(255), nullable=False),
    Column("scheduler_type", String(255), nullable=False),
    Column("work_dir", Text, nullable=False),
    Column("options", JsonType, nullable=False),
    Column("ctime", DateTime(timezone=True), nullable=False),
)

computer_configs = Table(
    "computer_configs",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("computer_id", PkType, ForeignKey("computers.id", ondelete="CASCADE"), nullable=False),
    Column("user_email", String(255), nullable=False),
    Column("params", JsonType, nullable=False),
    UniqueConstraint("computer_id", "user_email"),
)

#: the top-level keys of ``nodes.attributes`` whose values are indexed (``ix_nodes_attributes_<key>``):
#: ``value`` holds the value of every ``Int``, ``Float``, ``Str`` and ``Bool``, the attribute most
#: often filtered on (``attributes.value > 3``)
INDEXED_ATTRIBUTE_KEYS = ("value",)


class AttributeValue(FunctionElement[Any]):
    """The value at a top-level key of a JSON column, written the way each database indexes it.

    ``AttributeValue(nodes.c.attributes, "value")`` is ``json_extract(attributes, '$."value"')``
    on SQLite and ``(attributes -> 'value')`` on PostgreSQL: exactly the expressions the query
    builder writes for ``attributes.value`` (:mod:`plait.orm.query_sql`), since a database uses
    an index on an expression only for a query holding the same expression, the key included
    as a literal.  ``key`` is a plain name (letters, digits, underscores), written into the DDL.
    """

    inherit_cache = True
    name = "attribute_value"

    def __init__(self, column: Any, key: str) -> None:
        if not key.isidentifier() or not key.isascii():
            raise ValueError(f"an indexed attribute key is a plain name, not {key!r}")
        self.key = key
        super().__init__(column)


@compiles(AttributeValue, "sqlite")
def _attribute_value_sqlite(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.\"{element.key}\"')"


@compiles(AttributeValue, "postgresql")
def _attribute_value_postgresql(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} -> '{element.key}')"


def _attribute_index(key: str) -> Index:
    """A partial index of the values at ``attributes.<key>`` (nodes without the key are left out;
    a comparison ``attributes.<key> > x`` implies the key is there, so it may use the index)."""
    value = AttributeValue(nodes.c.attributes, key)
    return Index(
        f"ix_nodes_attributes_{key}",
        value,
        sqlite_where=value.is_not(None),
        postgresql_where=value.is_not(None),
    )


nodes = Table(
    "nodes",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("node_type", String(255), nullable=False, index=True),
    Column("process_type", String(255), nullable=True, index=True),
    Column("label", String(255), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("ctime", DateTime(timezone=True), nullable=False, index=True),
    Column("mtime", DateTime(timezone=True), nullable=False),
    Column("attributes", JsonType, nullable=False),
    Column("extras", JsonType, nullable=False),
    Column("files", JsonType, nullable=False),
    Column("node_hash", String(64), nullable=True, index=True),
    Column("computer_id", PkType, ForeignKey("computers.id", ondelete="RESTRICT"), nullable=True, index=True),
)

for _key in INDEXED_ATTRIBUTE_KEYS:
    _attribute_index(_key)

#: the columns of a process's node that its ``processes`` row repeats (written when the row is
#: inserted, from the node: neither ever changes), so that queries of processes need no node row
NODE_COLUMNS_COPIED_TO_PROCESSES = ("node_type", "ctime")

processes = Table(
    "processes",
    metadata,
    Column("node_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), nullable=False, index=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("exit_status", Integer, nullable=True),
    Column("exit_message", Text, nullable=True),
    Column("exception", Text, nullable=True),
    Column("process_label", String(255), nullable=False),
    Column("status", Text, nullable=True),
    Column("checkpoint", JsonType, nullable=True),
    Column("checkpoint_seq", Integer, nullable=False, default=0),
    Column("submitted", Boolean, nullable=False, default=False),
    Column("lease_owner", String(255), nullable=True, index=True),
    Column("lease_expires", Float, nullable=True),
    Column("caller_id", PkType, ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True, index=True),
    Column("call_key", String(255), nullable=True),
    Column("wake_at", Float, nullable=True),
    Column("mtime", DateTime(timezone=True), nullable=False),
    Column("job_stage", String(16), nullable=True, index=True),
    #: the node's ``node_type``, copied when the row is inserted (a node's type never changes), so
    #: that a query of process nodes by class, state, label and exit status reads this table alone
    Column("node_type", String(255), nullable=False),
    #: the node's ``ctime``, copied in the same way (a node's creation time never changes either):
    #: ``process list --past-days`` reads this table and ``ix_processes_ctime`` alone
    Column("ctime", DateTime(timezone=True), nullable=False, index=True),
    #: an active process waits for children: it has rows in ``process_waits`` (written with them
    #: by the backend's wait methods), so that a daemon's claim skips the parked processes through
    #: ``ix_processes_runnable`` instead of probing the waits of each one
    Column("waits_on_children", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_processes_runnable", "submitted", "state", "lease_expires", "waits_on_children"),
    #: ``process list --process-label``, ``QueryBuilder`` filters of finished processes by label and
    #: exit status: a count is read from this index alone (covering, with ``node_type``)
    Index("ix_processes_label_state", "process_label", "state", "exit_status", "node_type"),
)

process_checkpoints = Table(
    "process_checkpoints",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("process_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("step", String(255), nullable=True),
    Column("ctime", DateTime(timezone=True), nullable=False),
    Column("data", JsonType, nullable=False),
    UniqueConstraint("process_id", "seq"),
)

links = Table(
    "links",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("input_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("output_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("link_type", String(16), nullable=False),
    Column("label", String(255), nullable=False),
)

logs = Table(
    "logs",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("node_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("extra", JsonType, nullable=False),
)

broker_messages = Table(
    "broker_messages",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # control | reply | notification
    Column("process_id", PkType, nullable=True, index=True),
    Column("body", JsonType, nullable=False),
    Column("created", Float, nullable=False, index=True),
    Column("handled", Boolean, nullable=False, default=False),
    Column("recipient", String(255), nullable=True, index=True),
)

process_waits = Table(
    "process_waits",
    metadata,
    Column("parent_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    Column("child_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True, index=True),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("info", JsonType, nullable=False),
)

groups = Table(
    "groups",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("label", String(255), nullable=False, unique=True),
    Column("type_string", String(255), nullable=False, default="core", index=True),
    Column("description", Text, nullable=False, default=""),
    Column("ctime", DateTime(timezone=True), nullable=False),
    Column("user_email", String(255), nullable=False, default=""),
    Column("extras", JsonType, nullable=False),
)

group_nodes = Table(
    "group_nodes",
    metadata,
    Column("group_id", PkType, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("node_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True, index=True),
)

comments = Table(
    "comments",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("node_id", PkType, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("ctime", DateTime(timezone=True), nullable=False),
    Column("mtime", DateTime(timezone=True), nullable=False),
    Column("user_email", String(255), nullable=False),
    Column("content", Text, nullable=False),
)
