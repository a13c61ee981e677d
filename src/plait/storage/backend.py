"""The storage backend: every SQL statement plait runs on nodes, links, processes and logs.

The layers above (``orm``, ``engine``, ``broker``, ``cli``) never build SQL
themselves for these tables; they call the methods here with plain dicts.
That keeps SQLAlchemy out of their import path (``import plait`` stays fast)
and keeps each query in one place.

Transactions: :meth:`StorageBackend.transaction` opens a write transaction
and makes it *current* for the running thread or task (a context variable).
Every method below joins the current transaction when there is one, and
otherwise runs in a short transaction of its own.  So a caller can group
"store these inputs, this process node, these links" into one commit::

    with backend.transaction():
        pks = backend.insert_nodes(rows)
        backend.insert_links(links)
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from plait.storage.database import Database
from plait.storage.profile import Profile
from plait.storage.repository import FileRepository
from plait.storage.schema import (
    NODE_COLUMNS_COPIED_TO_PROCESSES,
    PkType,
    broker_messages,
    comments,
    computer_configs,
    computers,
    group_nodes,
    groups,
    links,
    logs,
    nodes,
    process_checkpoints,
    process_waits,
    processes,
    workers,
)

__all__ = ["TERMINAL_STATES", "StorageBackend", "utcnow"]

LOGGER = logging.getLogger(__name__)

TERMINAL_STATES = ("finished", "excepted", "killed")
ACTIVE_STATES = ("created", "running", "waiting")

_current: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("plait_txn", default=None)
#: what runs once the current write transaction has committed (:meth:`StorageBackend.after_commit`)
_after_commit: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "plait_after_commit", default=None
)
#: the read transaction that :meth:`StorageBackend.snapshot` shares among the reads of its block
_current_read: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("plait_read", default=None)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _as_utc(value: _dt.datetime | None) -> _dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite hands back naive datetimes
        return value.replace(tzinfo=_dt.UTC)
    return value


def _row(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    data = dict(row._mapping)
    for key in ("ctime", "mtime", "time"):
        if key in data:
            data[key] = _as_utc(data[key])
    return data


def _state_in(states: Iterable[str]) -> Any:
    """``processes.state IN ('a', 'b')`` with the states written into the SQL text.

    ``state.in_(("a", "b"))`` makes an expanding parameter that SQLAlchemy rewrites into the
    SQL text at every execution (a regular-expression pass: about 20 µs of a 35 µs UPDATE);
    the lifecycle's statements name fixed sets of states, so they are part of the statement.
    """
    names = tuple(states)
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"not a process state: {name!r}")
    return processes.c.state.in_([literal_column(f"'{name}'") for name in names])


@functools.cache
def _update_process_statement(
    columns: frozenset[str],
    check_owner: bool,
    states: tuple[str, ...] | None = None,
    unheld: bool = False,
    or_dead: bool = False,
) -> Any:
    """A reusable UPDATE of these columns: built once, so SQLAlchemy's compiled cache hits at once.

    ``check_owner``: only if ``_owner`` holds the lease; ``states``: only from one of these states;
    ``unheld``: only if no live lease holds the row (``_now`` is the time to compare with), or
    (``or_dead``) its holder is ``_dead``, an owner the caller found dead.
    """
    query = update(processes).where(processes.c.node_id == bindparam("_pk"))
    if check_owner:
        query = query.where(processes.c.lease_owner == bindparam("_owner"))
    if states is not None:
        query = query.where(_state_in(states))
    if unheld:
        free = [processes.c.lease_owner.is_(None), processes.c.lease_expires < bindparam("_now")]
        if or_dead:
            free.append(processes.c.lease_owner == bindparam("_dead"))
        query = query.where(or_(*free))
    return query.values({name: bindparam(name) for name in sorted(columns)})


@functools.cache
def _update_held_statement(columns: frozenset[str], states: tuple[str, ...]) -> Any:
    """The UPDATE of :meth:`StorageBackend.update_held_processes`, built once per shape."""
    return (
        update(processes)
        .where(
            processes.c.node_id.in_(bindparam("_pks", expanding=True)),
            processes.c.lease_owner == bindparam("_owner"),
            _state_in(states),
        )
        .values({name: bindparam(name) for name in sorted(columns)})
        .returning(processes.c.node_id)
    )


_INSERT_NODE = insert(nodes).returning(nodes.c.id)
_INSERT_NODES = insert(nodes)
#: UUIDs in one ``IN`` list when new pks are read back (under SQLite's 32,766 bound parameters)
_UUIDS_PER_SELECT = 5_000
_INSERT_LINKS = insert(links)
#: a process row copies its node's type and creation time (``processes.node_type``, ``ctime``)
#: from the node, inserted before it
_INSERT_PROCESS = insert(processes).values(
    {
        name: select(nodes.c[name]).where(nodes.c.id == bindparam("_node")).scalar_subquery()
        for name in NODE_COLUMNS_COPIED_TO_PROCESSES
    }
)
_INSERT_CHECKPOINT = insert(process_checkpoints)
_INSERT_LOG = insert(logs)
_SELECT_PROCESS = select(processes).where(processes.c.node_id == bindparam("_pk"))
_SELECT_NODE = select(nodes).where(nodes.c.id == bindparam("_pk"))
_SELECT_NODES = select(nodes).where(nodes.c.id.in_(bindparam("_pks", expanding=True)))
_SELECT_PROCESSES = select(processes).where(processes.c.node_id.in_(bindparam("_pks", expanding=True)))


# the statements of a park (built once: a daemon parks thousands of parents a minute)
_ACTIVE_AMONG = select(processes.c.node_id).where(
    processes.c.node_id.in_(bindparam("_pks", expanding=True)), _state_in(ACTIVE_STATES)
)
#: the same for one child (the common case: no expanding parameter to rewrite at each execution)
_ACTIVE_ONE = select(processes.c.node_id).where(
    processes.c.node_id == bindparam("_pk"), _state_in(ACTIVE_STATES)
)
#: (one child, SQLite) -> the statement; on PostgreSQL the children's rows are locked (FOR UPDATE)
_ACTIVE_CHILDREN = {
    (one, sqlite): statement if sqlite else statement.with_for_update(of=processes)
    for one, statement in ((True, _ACTIVE_ONE), (False, _ACTIVE_AMONG))
    for sqlite in (True, False)
}
#: clears the flag of the active processes that have no wait left (add a condition to narrow it;
#: a terminated row stays as it ended, and is never claimed)
_OPEN_WAITS = select(process_waits.c.parent_id).where(process_waits.c.parent_id == processes.c.node_id)
_WAITS_ENDED = (
    update(processes)
    .where(
        processes.c.waits_on_children.is_(True),
        _state_in(ACTIVE_STATES),
        ~_OPEN_WAITS.exists(),
    )
    .values(waits_on_children=False)
)
#: the columns of an imported process row given by the archive (the time last); the others are fixed
_IMPORTED_PROCESS_COLUMNS = (
    "node_id",
    "state",
    "exit_status",
    "exit_message",
    "exception",
    "process_label",
    "status",
    "caller_id",
    "call_key",
    "job_stage",
    "mtime",
)
_IMPORTED_PROCESS_FIXED = "paused, submitted, checkpoint_seq, lease_owner, lease_expires, checkpoint, wake_at"


def _insert_imported(mark: str, false: str) -> str:
    """The driver's INSERT of an imported process row; its last parameters are the node's pk again,
    once for each node column the row copies (``NODE_COLUMNS_COPIED_TO_PROCESSES``)."""
    columns = ", ".join(
        (*_IMPORTED_PROCESS_COLUMNS, _IMPORTED_PROCESS_FIXED, *NODE_COLUMNS_COPIED_TO_PROCESSES)
    )
    marks = ", ".join(mark for _ in _IMPORTED_PROCESS_COLUMNS)
    fixed = f"{false}, {false}, 0, NULL, NULL, NULL, NULL"
    copied = ", ".join(
        f"(SELECT {name} FROM nodes WHERE id = {mark})" for name in NODE_COLUMNS_COPIED_TO_PROCESSES
    )
    return f"INSERT INTO processes ({columns}) VALUES ({marks}, {fixed}, {copied})"


_INSERT_IMPORTED_PROCESS_SQLITE = _insert_imported("?", "0")
_INSERT_IMPORTED_PROCESS_POSTGRES = _insert_imported("%s", "false")


def _sqlite_time(value: _dt.datetime) -> str:
    """``value`` as the text SQLAlchemy's ``DateTime`` stores on SQLite (UTC, microseconds)."""
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC)
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"


def _unparked(now: Any) -> Any:
    """What a runnable process is besides its state and lease: submitted, not paused, waiting for
    no child, and past its durable timer's time (if any)."""
    return and_(
        processes.c.submitted.is_(True),
        processes.c.paused.is_(False),
        processes.c.waits_on_children.is_(False),  # no row in process_waits (written with them)
        or_(processes.c.wake_at.is_(None), processes.c.wake_at <= now),  # a durable timer's time
    )


def _runnable(now: Any) -> Any:
    """The processes a daemon worker may claim at ``now``: active, unparked, no live lease."""
    return and_(
        _state_in(ACTIVE_STATES),
        or_(processes.c.lease_owner.is_(None), processes.c.lease_expires < now),
        _unparked(now),
    )


def _claim_candidates_sqlite() -> Any:
    """The runnable processes (:func:`_runnable`) oldest first, as SQLite finds them through
    ``ix_processes_runnable`` without reading every active row.

    One query over all active rows has to read and sort every ``created`` row for its ``ORDER BY``
    (the ``lease_owner IS NULL OR lease_expires < now`` keeps the index from giving them in pk
    order), so at thousands of parked and queued processes each claim cost milliseconds.  Here each
    state is asked three times, each part limited: the rows with no lease at all (an equality on
    every column of the index, so SQLite reads them in pk order and stops at the limit), the
    expired leases and the live lease times with no owner (two ranges of the index, over the held
    rows only).  The parts are disjoint and together are exactly :func:`_runnable`'s rows.  A
    parked process (``waits_on_children``, the index's last column) is not read at all.
    Parameters: ``now``, ``limit``.
    """
    now, limit = bindparam("now", type_=Float), bindparam("limit", type_=Integer)
    owner, expires = processes.c.lease_owner, processes.c.lease_expires
    leases = (and_(expires.is_(None), owner.is_(None)), expires < now, and_(expires >= now, owner.is_(None)))
    # a lease range is ordered by an expression of the pk: ordered by the pk itself, SQLite's
    # planner walked ix_processes_state in pk order, hoping to meet ``limit`` rows soon, and read
    # every queued row (2 ms at 10,000); this way it takes the range of ix_processes_runnable
    # (the held rows, few) and sorts what it found
    pk_order = (processes.c.node_id, processes.c.node_id + literal_column("0"))
    parts = [
        select(processes.c.node_id)
        .where(processes.c.state == state, lease, _unparked(now))
        .order_by(pk_order[index > 0])
        .limit(limit)
        .subquery()
        for state in ACTIVE_STATES
        for index, lease in enumerate(leases)
    ]
    found = union_all(*(select(part.c.node_id) for part in parts)).subquery()
    return select(found.c.node_id).order_by(found.c.node_id).limit(limit)


_CLAIM_CANDIDATES_SQLITE = _claim_candidates_sqlite()
_ADD_WAITS_SQLITE = sqlite_insert(process_waits).on_conflict_do_nothing()
_ADD_WAITS_POSTGRES = postgresql_insert(process_waits).on_conflict_do_nothing()


def _links_of(incoming: bool, typed: bool) -> Select[Any]:
    near, far = (links.c.output_id, links.c.input_id) if incoming else (links.c.input_id, links.c.output_id)
    query = (
        select(links.c.label.label("link_label"), links.c.link_type.label("link_kind"), nodes)
        .join(nodes, nodes.c.id == far)
        .where(near == bindparam("_pk"))
        .order_by(links.c.id)
    )
    if typed:
        query = query.where(links.c.link_type.in_(bindparam("_types", expanding=True)))
    return query


#: (incoming, filtered by link type) -> the statement of :meth:`StorageBackend.get_links`, built once
_LINKS_OF = {
    (incoming, typed): _links_of(incoming, typed) for incoming in (True, False) for typed in (True, False)
}


def _link_entry(row: Any) -> tuple[int | None, str, str, dict[str, Any]]:
    """``(near node id or None, label, link type, neighbour node row)`` of a row of
    :data:`_LINKS_OF` or :data:`_LINKS_OF_MANY`."""
    data = _row(row)
    assert data is not None
    return data.pop("link_near", None), data.pop("link_label"), data.pop("link_kind"), data


def _links_of_many(incoming: bool) -> Select[Any]:
    near, far = (links.c.output_id, links.c.input_id) if incoming else (links.c.input_id, links.c.output_id)
    return (
        select(
            near.label("link_near"),
            links.c.label.label("link_label"),
            links.c.link_type.label("link_kind"),
            nodes,
        )
        .join(nodes, nodes.c.id == far)
        .where(near.in_(bindparam("_pks", expanding=True)))
        .where(links.c.link_type.in_(bindparam("_types", expanding=True)))
        .order_by(links.c.id)
    )


#: incoming -> the statement of :meth:`StorageBackend.get_links_of_many`
_LINKS_OF_MANY = {incoming: _links_of_many(incoming) for incoming in (True, False)}


class StorageBackend:
    """Database and file repository of one profile."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.database = Database(profile.storage_url)
        self.database.ensure_schema(lock_dir=profile.path)
        self.repository = FileRepository(profile.repository_path)

    # -- transactions ------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction made current for this thread/task; joins an enclosing one.

        What :meth:`after_commit` registered inside it runs once the outermost block has
        committed (and never if it rolled back).
        """
        conn = _current.get()
        if conn is not None:
            yield conn
            return
        callbacks: list[Callable[[], None]] = []
        with self.database.write() as conn:
            token = _current.set(conn)
            hooks = _after_commit.set(callbacks)
            try:
                yield conn
            finally:
                _after_commit.reset(hooks)
                _current.reset(token)
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once what was written so far is committed: at once outside a
        transaction, after the outermost :meth:`transaction` block commits inside one, not at
        all if it rolls back.  For notices (a state bell) that others act on by reading the
        database: rung before the commit, they would read the old row and wait for a bell
        that was spent already.  ``callback`` must not raise.
        """
        pending = _after_commit.get()
        if pending is None:
            callback()
        else:
            pending.append(callback)

    @property
    def in_transaction(self) -> bool:
        return _current.get() is not None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction shared by every read of this block (in this thread/task).

        For a burst of reads (a worker rebuilding the processes it has just claimed):
        each read otherwise checks a connection out, begins and rolls back on its own.
        The reads see the database as of the block's first read; a write inside the
        block still opens a transaction of its own (:meth:`transaction`), which the
        block's later reads may not see, so write before the block, not within it.
        Joins an enclosing snapshot or transaction.
        """
        if _current.get() is not None or _current_read.get() is not None:
            yield
            return
        with self.database.read() as conn:
            token = _current_read.set(conn)
            try:
                yield
            finally:
                _current_read.reset(token)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        conn = _current.get() or _current_read.get()
        if conn is not None:
            yield conn
            return
        with self.database.read() as conn:
            yield conn

    def close(self) -> None:
        self.database.dispose()

    # -- nodes -------------------------------------------------------------------
    def insert_nodes(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert node rows (all columns but ``id``); return their new pks in order.

        Many rows go in as one executemany without ``RETURNING`` and their pks are
        read back by UUID (unique, indexed), in batches: an ``INSERT ... RETURNING``
        that must keep the parameters' order is sent a row at a time on PostgreSQL
        (about 0.6 ms a node; 20 s for 33,000).
        """
        if not rows:
            return []
        with self.transaction() as conn:
            if len(rows) == 1:
                return [conn.execute(_INSERT_NODE, dict(rows[0])).scalar_one()]
            conn.execute(_INSERT_NODES, [dict(r) for r in rows])
            uuids = [r["uuid"] for r in rows]
            pks: dict[str, int] = {}
            for start in range(0, len(uuids), _UUIDS_PER_SELECT):
                batch = uuids[start : start + _UUIDS_PER_SELECT]
                pks.update(
                    conn.execute(select(nodes.c.uuid, nodes.c.id).where(nodes.c.uuid.in_(batch))).all()
                )
            return [pks[uuid] for uuid in uuids]

    def get_node(self, pk: int | None = None, uuid: str | None = None) -> dict[str, Any] | None:
        """The node row by pk, full uuid or unique uuid prefix (at least 4 characters)."""
        with self._reading() as conn:
            if pk is not None:
                return _row(conn.execute(_SELECT_NODE, {"_pk": pk}).first())
            assert uuid is not None
            if len(uuid) == 36:
                return _row(conn.execute(select(nodes).where(nodes.c.uuid == uuid)).first())
            found = conn.execute(select(nodes).where(nodes.c.uuid.like(uuid + "%")).limit(2)).all()
            if len(found) > 1:
                raise LookupError(f"uuid prefix '{uuid}' matches more than one node; give more characters")
            return _row(found[0]) if found else None

    def get_nodes(self, pks: Iterable[int], *, with_processes: bool = False) -> dict[int, dict[str, Any]]:
        """The node rows of ``pks`` (those that exist), by pk.

        ``with_processes``: each row also carries ``process``, the node's process row or None
        (one more query for all of them), so that building the process nodes among them reads
        nothing more (see ``ProcessNode._init_loaded``).
        """
        pks = list(pks)
        if not pks:
            return {}
        with self._reading() as conn:
            rows = conn.execute(_SELECT_NODES, {"_pks": pks}).all()
            found: dict[int, dict[str, Any]] = {r.id: _row(r) for r in rows}  # type: ignore[misc]
            if with_processes:
                self._attach_process_rows(conn, list(found.values()))
        return found

    def _attach_process_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Set ``row["process"]`` of each node row: its process row, or None (one query per batch)."""
        found: dict[int, dict[str, Any]] = {}
        for batch in self._id_batches(r["id"] for r in rows):  # any type: plugins' process nodes too
            for process in conn.execute(_SELECT_PROCESSES, {"_pks": batch}).all():
                found[process.node_id] = _row(process)  # type: ignore[assignment]
        for row in rows:
            row["process"] = found.get(row["id"])

    def update_node(self, pk: int, **fields: Any) -> None:
        """Change mutable node columns (extras, label, description)."""
        fields["mtime"] = utcnow()
        with self.transaction() as conn:
            conn.execute(update(nodes).where(nodes.c.id == pk).values(**fields))

    def find_nodes(
        self,
        *,
        node_types: Sequence[str] | None = None,
        node_type_prefix: str | None = None,
        node_hash: str | None = None,
        since: _dt.datetime | None = None,
        limit: int | None = None,
        order_desc: bool = False,
    ) -> list[dict[str, Any]]:
        """Node rows matching simple filters, ordered by pk."""
        query = select(nodes)
        if node_types:
            query = query.where(nodes.c.node_type.in_(list(node_types)))
        if node_type_prefix:
            query = query.where(nodes.c.node_type.like(node_type_prefix + "%"))
        if node_hash:
            query = query.where(nodes.c.node_hash == node_hash)
        if since is not None:
            query = query.where(nodes.c.ctime >= since)
        query = query.order_by(nodes.c.id.desc() if order_desc else nodes.c.id)
        if limit:
            query = query.limit(limit)
        with self._reading() as conn:
            return [_row(r) for r in conn.execute(query).all()]  # type: ignore[misc]

    def count_nodes(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(nodes)).scalar_one())

    # -- links -------------------------------------------------------------------
    def insert_links(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert links: dicts with input_id, output_id, link_type, label."""
        if rows:
            with self.transaction() as conn:
                conn.execute(_INSERT_LINKS, [dict(r) for r in rows])

    def get_links(
        self, node_id: int, *, incoming: bool, link_types: Sequence[str] | None = None
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """``(label, link_type, neighbour node row)`` for each link into or out of ``node_id``."""
        query = _LINKS_OF[incoming, bool(link_types)]
        parameters: dict[str, Any] = {"_pk": node_id}
        if link_types:
            parameters["_types"] = list(link_types)
        with self._reading() as conn:
            rows = conn.execute(query, parameters).all()
        return [_link_entry(row)[1:] for row in rows]

    def get_links_of_many(
        self, node_ids: Iterable[int], *, incoming: bool, link_types: Sequence[str]
    ) -> dict[int, list[tuple[str, str, dict[str, Any]]]]:
        """:meth:`get_links` for many nodes at once: ``{node_id: [(label, link_type, neighbour row)]}``.

        One query per :attr:`ID_BATCH` nodes (a worker rebuilding the processes it claimed reads
        all their inputs at once); each node's links in the order :meth:`get_links` gives them,
        and a node with none maps to an empty list.
        """
        ids = list(node_ids)
        found: dict[int, list[tuple[str, str, dict[str, Any]]]] = {pk: [] for pk in ids}
        query = _LINKS_OF_MANY[incoming]
        with self._reading() as conn:
            for batch in self._id_batches(ids):
                for row in conn.execute(query, {"_pks": batch, "_types": list(link_types)}).all():
                    near, label, kind, data = _link_entry(row)
                    assert near is not None
                    found[near].append((label, kind, data))
        return found

    def all_links(self, node_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Every link touching any of ``node_ids`` (for graphs)."""
        ids = list(node_ids)
        with self._reading() as conn:
            rows = conn.execute(
                select(links).where(or_(links.c.input_id.in_(ids), links.c.output_id.in_(ids)))
            ).all()
        return [dict(r._mapping) for r in rows]

    # -- processes ---------------------------------------------------------------
    def insert_process(self, row: Mapping[str, Any]) -> None:
        """Insert the process row of the node ``row["node_id"]``, stored before it in this transaction.

        The node's columns the row repeats (``NODE_COLUMNS_COPIED_TO_PROCESSES``) are copied from
        the node by the statement itself, so the two rows never disagree.
        """
        values = dict(row)
        values.setdefault("mtime", utcnow())
        values["_node"] = values["node_id"]
        with self.transaction() as conn:
            conn.execute(_INSERT_PROCESS, values)

    def update_process(
        self,
        pk: int,
        *,
        expect_owner: str | None = None,
        expect_states: Sequence[str] | None = None,
        expect_unheld: bool = False,
        dead_owner: str | None = None,
        **fields: Any,
    ) -> bool:
        """Update process columns if the row still is as the caller expects; True if it was updated.

        ``expect_owner``: that runner still holds the lease; ``expect_states``: the row is in one of
        these states; ``expect_unheld``: no live lease holds it (or only ``dead_owner``, whose
        interpreter the caller found gone).  Only the engine's lifecycle module
        calls this (it is the one writer of process rows).
        """
        fields["mtime"] = utcnow()
        statement = _update_process_statement(
            frozenset(fields),
            expect_owner is not None,
            tuple(expect_states) if expect_states is not None else None,
            expect_unheld,
            dead_owner is not None,
        )
        fields["_pk"] = pk
        if expect_owner is not None:
            fields["_owner"] = expect_owner
        if expect_unheld:
            fields["_now"] = time.time()
            if dead_owner is not None:
                fields["_dead"] = dead_owner
        with self.transaction() as conn:
            return conn.execute(statement, fields).rowcount > 0

    def update_held_processes(
        self, pks: Sequence[int], *, owner: str, expect_states: Sequence[str], **fields: Any
    ) -> list[int]:
        """Set the same columns of several processes in one UPDATE, where ``owner`` still holds the
        lease and the state is one of ``expect_states``; the pks it changed (any order).

        For a worker's batch (the processes it has just claimed move to ``running``): one
        statement instead of one :meth:`update_process` a process.  Only the engine's lifecycle
        module calls this.
        """
        if not pks:
            return []
        fields["mtime"] = utcnow()
        statement = _update_held_statement(frozenset(fields), tuple(expect_states))
        changed: list[int] = []
        with self.transaction() as conn:
            for batch in self._id_batches(pks):
                changed.extend(conn.execute(statement, {**fields, "_pks": batch, "_owner": owner}).scalars())
        return changed

    def get_process(self, pk: int) -> dict[str, Any] | None:
        with self._reading() as conn:
            return _row(conn.execute(_SELECT_PROCESS, {"_pk": pk}).first())

    def get_process_states(self, pks: Iterable[int]) -> dict[int, tuple[str, bool]]:
        """``{pk: (state, paused)}`` for the given processes."""
        pks = list(pks)
        if not pks:
            return {}
        with self._reading() as conn:
            rows = conn.execute(
                select(processes.c.node_id, processes.c.state, processes.c.paused).where(
                    processes.c.node_id.in_(pks)
                )
            ).all()
        return {r[0]: (r[1], bool(r[2])) for r in rows}

    def get_children(self, pk: int) -> list[dict[str, Any]]:
        """Process rows of the processes called by ``pk``."""
        with self._reading() as conn:
            rows = conn.execute(
                select(processes).where(processes.c.caller_id == pk).order_by(processes.c.node_id)
            ).all()
        return [_row(r) for r in rows]  # type: ignore[misc]

    def add_checkpoint(self, pk: int, seq: int, step: str | None, data: Mapping[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute(
                _INSERT_CHECKPOINT,
                {"process_id": pk, "seq": seq, "step": step, "ctime": utcnow(), "data": dict(data)},
            )

    def get_checkpoints(self, pk: int) -> list[dict[str, Any]]:
        with self._reading() as conn:
            rows = conn.execute(
                select(process_checkpoints)
                .where(process_checkpoints.c.process_id == pk)
                .order_by(process_checkpoints.c.seq)
            ).all()
        return [dict(r._mapping) for r in rows]

    def delete_checkpoints(self, pk: int) -> None:
        with self.transaction() as conn:
            conn.execute(delete(process_checkpoints).where(process_checkpoints.c.process_id == pk))

    def list_processes(
        self,
        *,
        states: Sequence[str] | None = None,
        since: _dt.datetime | None = None,
        paused: bool | None = None,
        limit: int | None = None,
        pks: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Joined node+process rows for the CLI, newest last."""
        query = select(
            nodes.c.id,
            nodes.c.uuid,
            nodes.c.node_type,
            nodes.c.process_type,
            nodes.c.label,
            nodes.c.ctime,
            processes,
        ).join(processes, processes.c.node_id == nodes.c.id)
        if states:
            query = query.where(processes.c.state.in_(list(states)))
        if since is not None:
            query = query.where(nodes.c.ctime >= since)
        if paused is not None:
            query = query.where(processes.c.paused == paused)
        if pks is not None:
            query = query.where(nodes.c.id.in_(list(pks)))
        query = query.order_by(nodes.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self._reading() as conn:
            rows = conn.execute(query).all()
        return [_row(r) for r in reversed(rows)]  # type: ignore[misc]

    def count_processes(self, *, since: _dt.datetime | None = None) -> dict[str, int]:
        """``{state: count}`` of every process (created since ``since``)."""
        query = select(processes.c.state, func.count()).group_by(processes.c.state)
        if since is not None:
            query = query.join(nodes, nodes.c.id == processes.c.node_id).where(nodes.c.ctime >= since)
        with self._reading() as conn:
            return {state: int(count) for state, count in conn.execute(query).all()}

    def get_descendants(self, pk: int) -> list[dict[str, Any]]:
        """Process rows of every process called, directly or not, by ``pk`` (one recursive query)."""
        tree = select(processes.c.node_id).where(processes.c.caller_id == pk).cte("tree", recursive=True)
        tree = tree.union_all(select(processes.c.node_id).where(processes.c.caller_id == tree.c.node_id))
        query = (
            select(processes)
            .where(processes.c.node_id.in_(select(tree.c.node_id)))
            .order_by(processes.c.node_id)
        )
        with self._reading() as conn:
            return [_row(r) for r in conn.execute(query).all()]  # type: ignore[misc]

    # -- calculation jobs ---------------------------------------------------------
    QUEUED_JOB_STAGES = ("submitting", "queued")

    def count_queued_jobs(self, computer_id: int) -> int:
        """Active jobs on a computer that count against its ``max_queued_jobs``."""
        query = (
            select(func.count())
            .select_from(processes.join(nodes, nodes.c.id == processes.c.node_id))
            .where(
                nodes.c.computer_id == computer_id,
                processes.c.job_stage.in_(self.QUEUED_JOB_STAGES),
                processes.c.state.in_(ACTIVE_STATES),
            )
        )
        with self._reading() as conn:
            return int(conn.execute(query).scalar_one())

    def reserve_job_slot(self, pk: int, computer_id: int, cap: int | None) -> bool:
        """Mark job ``pk`` as submitting if its computer has fewer than ``cap`` queued jobs.

        Counting and marking happen in one write transaction (with the
        computer's row locked on PostgreSQL), so workers on several machines
        never overshoot the cap together.
        """
        with self.transaction() as conn:
            if cap is not None:
                if not self.database.is_sqlite:
                    conn.execute(
                        select(computers.c.id).where(computers.c.id == computer_id).with_for_update()
                    )
                if self.count_queued_jobs(computer_id) >= cap:
                    return False
            return (
                conn.execute(
                    update(processes)
                    .where(processes.c.node_id == pk, processes.c.state.in_(ACTIVE_STATES))
                    .values(job_stage="submitting", mtime=utcnow())
                ).rowcount
                > 0
            )

    # -- leases ------------------------------------------------------------------
    def renew_leases(self, owner: str, expires: float) -> int:
        """Extend every lease held by ``owner`` on a non-terminated process."""
        with self.transaction() as conn:
            return conn.execute(
                update(processes)
                .where(and_(processes.c.lease_owner == owner, processes.c.state.in_(ACTIVE_STATES)))
                .values(lease_expires=expires)
            ).rowcount

    def take_lease(self, pk: int, owner: str, expires: float, *, force: bool = False) -> bool:
        """Claim active process ``pk`` for ``owner`` if its lease is free, expired, or (force) anyone's.

        A terminated process is never leased again.
        """
        now = time.time()
        cond = and_(processes.c.node_id == pk, processes.c.state.in_(ACTIVE_STATES))
        if not force:
            cond = and_(
                cond,
                or_(
                    processes.c.lease_owner.is_(None),
                    processes.c.lease_owner == owner,
                    processes.c.lease_expires < now,
                ),
            )
        with self.transaction() as conn:
            return (
                conn.execute(
                    update(processes).where(cond).values(lease_owner=owner, lease_expires=expires)
                ).rowcount
                > 0
            )

    def release_leases(self, owner: str, pks: Sequence[int] | None = None) -> None:
        query = update(processes).where(processes.c.lease_owner == owner)
        if pks is not None:
            query = query.where(processes.c.node_id.in_(list(pks)))
        with self.transaction() as conn:
            conn.execute(query.values(lease_owner=None, lease_expires=None))

    def release_leases_of_dead_worker(self, hostname: str, pid: int) -> list[int]:
        """Free every lease held by the interpreter ``pid`` of ``hostname``, known to be dead; the pks freed.

        Lease owners are ``host:pid:kind:random`` (``plait.engine.runner.new_owner_id``), so one
        UPDATE frees every active process whose owner starts with ``host:pid:`` (``1234`` does not
        match ``12345``; ``_`` and ``%`` in a host name are no wildcards); that interpreter's row
        in ``workers`` goes too.  Only for a process that is certainly gone — the daemon's
        supervisor calls it when it reaps a worker — so that other workers continue its processes
        from their checkpoints at once instead of when the leases would have expired.
        Terminated processes are left alone.
        """
        prefix = f"{hostname}:{int(pid)}:"
        with self.transaction() as conn:
            freed = conn.execute(
                update(processes)
                .where(
                    processes.c.lease_owner.startswith(prefix, autoescape=True),
                    processes.c.state.in_(ACTIVE_STATES),
                )
                .values(lease_owner=None, lease_expires=None)
                .returning(processes.c.node_id)
            ).all()
            conn.execute(delete(workers).where(workers.c.hostname == hostname, workers.c.pid == int(pid)))
        return sorted(row[0] for row in freed)

    # -- daemon: claiming, parking, waking ---------------------------------------------
    def count_runnable(self) -> int:
        with self._reading() as conn:
            query = select(func.count()).select_from(processes).where(_runnable(time.time()))
            return int(conn.execute(query).scalar_one())

    def claim_runnable(self, owner: str, lease_seconds: float, limit: int) -> list[int]:
        """Take the lease on up to ``limit`` processes that a daemon worker may run now, oldest first.

        Runnable: submitted, not terminated, not paused, no live lease, and
        waiting for no child.  On PostgreSQL the candidates are locked with
        ``FOR UPDATE SKIP LOCKED`` so that workers claiming at the same time
        split the work instead of queueing on each other; on SQLite the
        write transaction itself serialises them.
        """
        if limit <= 0:
            return []
        now = time.time()
        with self.transaction() as conn:
            if self.database.is_sqlite:
                found = conn.execute(_CLAIM_CANDIDATES_SQLITE, {"now": now, "limit": limit})
            else:
                query = (
                    select(processes.c.node_id)
                    .where(_runnable(now))
                    .order_by(processes.c.node_id)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=processes)
                )
                found = conn.execute(query)
            pks = [row[0] for row in found.all()]
            if pks:
                conn.execute(
                    update(processes)
                    .where(processes.c.node_id.in_(pks))
                    .values(lease_owner=owner, lease_expires=now + lease_seconds)
                )
            return pks

    def park(
        self,
        pk: int,
        owner: str,
        children: Sequence[int],
        status: str,
        *,
        expect_states: Sequence[str] = ACTIVE_STATES,
        **fields: Any,
    ) -> bool | None:
        """Release ``pk`` to wait in the database for those of ``children`` that are still active.

        Returns False when every child has already terminated (nothing to wait
        for: keep running), and None (nothing written) when ``owner`` does not
        hold ``pk`` or it is not in one of ``expect_states`` any more.  ``fields``:
        more columns for the same UPDATE (the state and checkpoint of the commit that
        parks).  The children's rows are locked while the waits are written, so a
        child terminating at this moment either is seen as terminated here or
        deletes the new wait row when it commits.
        """
        with self.transaction() as conn:
            one = len(children) == 1
            query = _ACTIVE_CHILDREN[one, self.database.is_sqlite]
            parameters = {"_pk": children[0]} if one else {"_pks": list(children)}
            active = [row[0] for row in conn.execute(query, parameters).all()]
            if not active:
                return False  # nothing to wait for: keep running, nothing written
            values = {
                **fields,
                "status": status,
                "lease_owner": None,
                "lease_expires": None,
                "waits_on_children": True,
                "mtime": utcnow(),
            }
            statement = _update_process_statement(frozenset(values), True, tuple(expect_states))
            if not conn.execute(statement, {**values, "_pk": pk, "_owner": owner}).rowcount:
                return None
            # a wait recorded already (a re-run of the step) is kept: ON CONFLICT DO NOTHING
            statement = _ADD_WAITS_SQLITE if self.database.is_sqlite else _ADD_WAITS_POSTGRES
            conn.execute(statement, [{"parent_id": pk, "child_id": c} for c in dict.fromkeys(active)])
            return True

    # The wait methods below are the only writers of ``process_waits`` and of the parents'
    # ``waits_on_children`` flag, which they keep equal, for every active process, to "has a row
    # in process_waits" (a terminated row is not written again).
    def release_waits_on(self, child: int) -> list[int]:
        """Delete the waits on a terminated ``child``; return the parents that now wait for nothing.

        The parents' ``waits_on_children`` flag: on SQLite (one writer at a time) in the same
        transaction.  On PostgreSQL the transaction that ends a child holds the child's row and
        must not wait for a parent's (a parent parking holds its own row and waits for its
        children's: a deadlock), and two children of one parent ending at once each still see
        the other's wait; so the flag is cleared in a transaction of its own after the commit,
        for every parent that lost a wait, where the last of them to commit sees no wait left.
        A flag cleared too early (the parent parked again meanwhile) only wakes the parent,
        which parks again; one left set by a crash between the two commits is cleared by
        :meth:`clear_stale_waits`, which the daemon runs now and then.
        """
        with self.transaction() as conn:
            parents = [
                row[0]
                for row in conn.execute(
                    select(process_waits.c.parent_id).where(process_waits.c.child_id == child)
                ).all()
            ]
            if not parents:
                return []
            conn.execute(delete(process_waits).where(process_waits.c.child_id == child))
            still = {
                row[0]
                for row in conn.execute(
                    select(process_waits.c.parent_id).where(process_waits.c.parent_id.in_(parents))
                ).all()
            }
            affected = sorted(set(parents))
            if self.database.is_sqlite:
                self._clear_ended_waits(affected)
            else:
                self.after_commit(functools.partial(self._after_commit_clear_ended_waits, affected))
            return [parent for parent in parents if parent not in still]

    def _clear_ended_waits(self, parents: list[int]) -> None:
        """Clear the ``waits_on_children`` flag of those of ``parents`` that have no wait left."""
        with self.transaction() as conn:
            conn.execute(_WAITS_ENDED.where(processes.c.node_id.in_(parents)))

    def _after_commit_clear_ended_waits(self, parents: list[int]) -> None:
        try:
            self._clear_ended_waits(parents)
        except Exception:  # an after-commit callback must not raise; clear_stale_waits repairs it
            LOGGER.warning("could not mark processes %s as waiting for no child", parents, exc_info=True)

    def delete_waits_of(self, parent: int) -> None:
        with self.transaction() as conn:
            if conn.execute(delete(process_waits).where(process_waits.c.parent_id == parent)).rowcount:
                self._clear_ended_waits([parent])

    def clear_stale_waits(self) -> int:
        """Remove waits on children that are no longer active (a safety net; should find none)."""
        with self.transaction() as conn:
            done = select(processes.c.node_id).where(processes.c.state.in_(TERMINAL_STATES))
            removed = conn.execute(delete(process_waits).where(process_waits.c.child_id.in_(done))).rowcount
            conn.execute(_WAITS_ENDED)  # and the flag of a parent whose last wait went without it
            return removed

    def get_waits(self, parent: int) -> list[int]:
        with self._reading() as conn:
            return [
                row[0]
                for row in conn.execute(
                    select(process_waits.c.child_id).where(process_waits.c.parent_id == parent)
                ).all()
            ]

    def held_by(self, owner: str) -> list[int]:
        """Processes whose lease ``owner`` holds."""
        with self._reading() as conn:
            return [
                row[0]
                for row in conn.execute(
                    select(processes.c.node_id).where(processes.c.lease_owner == owner)
                ).all()
            ]

    # -- broker messages (the database broker) ------------------------------------------
    def post_message(
        self, kind: str, recipient: str | None, process_id: int | None, body: Mapping[str, Any]
    ) -> int:
        with self.transaction() as conn:
            return conn.execute(
                insert(broker_messages).returning(broker_messages.c.id),
                {
                    "kind": kind,
                    "recipient": recipient,
                    "process_id": process_id,
                    "body": dict(body),
                    "created": time.time(),
                    "handled": False,
                },
            ).scalar_one()

    def take_messages(self, kind: str, recipient: str) -> list[dict[str, Any]]:
        """Messages of ``kind`` for ``recipient`` not handled yet, marked handled as they are taken."""
        with self.transaction() as conn:
            rows = conn.execute(
                select(broker_messages)
                .where(
                    broker_messages.c.kind == kind,
                    broker_messages.c.recipient == recipient,
                    broker_messages.c.handled.is_(False),
                )
                .order_by(broker_messages.c.id)
            ).all()
            if rows:
                conn.execute(
                    update(broker_messages)
                    .where(broker_messages.c.id.in_([r.id for r in rows]))
                    .values(handled=True)
                )
            return [dict(r._mapping) for r in rows]

    def has_messages(self, kind: str, recipient: str) -> bool:
        with self._reading() as conn:
            return (
                conn.execute(
                    select(broker_messages.c.id)
                    .where(
                        broker_messages.c.kind == kind,
                        broker_messages.c.recipient == recipient,
                        broker_messages.c.handled.is_(False),
                    )
                    .limit(1)
                ).first()
                is not None
            )

    def purge_messages(self, older_than: float) -> int:
        with self.transaction() as conn:
            return conn.execute(
                delete(broker_messages).where(broker_messages.c.created < older_than)
            ).rowcount

    def notify(self, channel: str, payload: str = "") -> None:
        """PostgreSQL NOTIFY inside the current transaction (delivered when it commits); no-op on SQLite."""
        if self.database.is_sqlite:
            return
        from sqlalchemy import text

        with self.transaction() as conn:
            conn.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
            )

    # -- logs --------------------------------------------------------------------
    def insert_log(
        self, node_id: int, level: str, message: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                _INSERT_LOG,
                {
                    "node_id": node_id,
                    "time": utcnow(),
                    "level": level,
                    "message": message,
                    "extra": dict(extra or {}),
                },
            )

    def get_logs(self, node_id: int) -> list[dict[str, Any]]:
        with self._reading() as conn:
            rows = conn.execute(select(logs).where(logs.c.node_id == node_id).order_by(logs.c.id)).all()
        return [_row(r) for r in rows]  # type: ignore[misc]

    # -- computers ---------------------------------------------------------------
    def insert_computer(self, row: Mapping[str, Any]) -> int:
        with self.transaction() as conn:
            return conn.execute(insert(computers).returning(computers.c.id), dict(row)).scalar_one()

    def insert_computer_if_absent(self, row: Mapping[str, Any]) -> tuple[int, bool]:
        """Insert the computer unless its label is taken: ``(new pk, True)`` or ``(existing pk, False)``.

        One atomic ``INSERT ... ON CONFLICT (label) DO NOTHING``, so processes
        that create the same label at the same moment (the first use of
        ``localhost`` by several scripts or workers) end up with one row and
        all learn its pk; none of them sees a unique-constraint error.  On
        PostgreSQL the insert waits for a concurrent one of the same label to
        commit, then the row it made is read.
        """
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite if self.database.is_sqlite else postgresql
        statement = (
            dialect.insert(computers)
            .on_conflict_do_nothing(index_elements=[computers.c.label])
            .returning(computers.c.id)
        )
        existing = select(computers.c.id).where(computers.c.label == row["label"])
        with self.transaction() as conn:
            for _ in range(5):  # the row we collided with may be deleted before we read it: insert again
                pk = conn.execute(statement, dict(row)).scalar()
                if pk is not None:
                    return int(pk), True
                pk = conn.execute(existing).scalar()
                if pk is not None:
                    return int(pk), False
        raise RuntimeError(f"computer '{row['label']}' keeps being created and deleted by others: try again")

    def update_computer(self, pk: int, **fields: Any) -> None:
        with self.transaction() as conn:
            conn.execute(update(computers).where(computers.c.id == pk).values(**fields))

    def get_computer(self, *, pk: int | None = None, label: str | None = None) -> dict[str, Any] | None:
        cond = computers.c.id == pk if pk is not None else computers.c.label == label
        with self._reading() as conn:
            return _row(conn.execute(select(computers).where(cond)).first())

    def list_computers(self) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return [_row(r) for r in conn.execute(select(computers).order_by(computers.c.id)).all()]  # type: ignore[misc]

    def get_computer_config(self, computer_id: int, user_email: str) -> dict[str, Any] | None:
        with self._reading() as conn:
            row = conn.execute(
                select(computer_configs).where(
                    and_(
                        computer_configs.c.computer_id == computer_id,
                        computer_configs.c.user_email == user_email,
                    )
                )
            ).first()
        return _row(row)

    def set_computer_config(self, computer_id: int, user_email: str, params: Mapping[str, Any]) -> None:
        with self.transaction() as conn:
            done = conn.execute(
                update(computer_configs)
                .where(
                    and_(
                        computer_configs.c.computer_id == computer_id,
                        computer_configs.c.user_email == user_email,
                    )
                )
                .values(params=dict(params))
            ).rowcount
            if not done:
                conn.execute(
                    insert(computer_configs),
                    {"computer_id": computer_id, "user_email": user_email, "params": dict(params)},
                )

    # -- workers -----------------------------------------------------------------
    def upsert_worker(self, worker_id: str, hostname: str, pid: int, info: Mapping[str, Any]) -> None:
        now = time.time()
        with self.transaction() as conn:
            done = conn.execute(
                update(workers).where(workers.c.id == worker_id).values(heartbeat=now, info=dict(info))
            ).rowcount
            if not done:
                conn.execute(
                    insert(workers),
                    {
                        "id": worker_id,
                        "hostname": hostname,
                        "pid": pid,
                        "started": now,
                        "heartbeat": now,
                        "info": dict(info),
                    },
                )

    def delete_worker(self, worker_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    def list_workers(self) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return [dict(r._mapping) for r in conn.execute(select(workers).order_by(workers.c.started)).all()]

    # -- groups and comments -------------------------------------------------------
    #: ids per ``IN (...)`` list: far below the bound-parameter limits of SQLite (32766)
    #: and PostgreSQL (65535)
    ID_BATCH = 5000

    @classmethod
    def _id_batches(cls, ids: Iterable[int]) -> Iterator[list[int]]:
        """The distinct ``ids`` in ascending order, in lists of at most :attr:`ID_BATCH`."""
        unique = sorted({int(i) for i in ids})
        for start in range(0, len(unique), cls.ID_BATCH):
            yield unique[start : start + cls.ID_BATCH]

    def insert_group(self, row: Mapping[str, Any]) -> int | None:
        """Insert a group row (all columns but ``id``): its new pk, or None if the label is taken.

        One atomic ``INSERT ... ON CONFLICT (label) DO NOTHING``: two processes
        storing the same label at the same moment give one row, and the other
        one gets None, never a unique-constraint error (on PostgreSQL the
        second insert waits for the first to commit).
        """
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite if self.database.is_sqlite else postgresql
        statement = (
            dialect.insert(groups)
            .on_conflict_do_nothing(index_elements=[groups.c.label])
            .returning(groups.c.id)
        )
        with self.transaction() as conn:
            pk = conn.execute(statement, dict(row)).scalar()
        return None if pk is None else int(pk)

    def get_group(
        self, *, pk: int | None = None, uuid: str | None = None, label: str | None = None
    ) -> dict[str, Any] | None:
        """The group row by pk, exact label, full uuid or unique uuid prefix; None if there is none.

        Raises:
            LookupError: a uuid prefix matches more than one group.
        """
        if pk is not None:
            condition = groups.c.id == pk
        elif label is not None:
            condition = groups.c.label == label
        elif uuid is not None and len(uuid) == 36:
            condition = groups.c.uuid == uuid
        elif uuid is not None:
            with self._reading() as conn:
                found = conn.execute(select(groups).where(groups.c.uuid.like(uuid + "%")).limit(2)).all()
            if len(found) > 1:
                raise LookupError(f"uuid prefix '{uuid}' matches more than one group; give more characters")
            return _row(found[0]) if found else None
        else:
            raise ValueError("get_group needs a pk, a uuid or a label")
        with self._reading() as conn:
            return _row(conn.execute(select(groups).where(condition)).first())

    def list_groups(
        self, *, type_string: str | None = None, node_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Group rows ordered by label, each with ``count``, its number of nodes (one query).

        ``type_string``: only groups of that type; ``node_id``: only the groups holding that node.
        """
        counts = (
            select(group_nodes.c.group_id, func.count().label("count"))
            .group_by(group_nodes.c.group_id)
            .subquery()
        )
        query = (
            select(groups, func.coalesce(counts.c.count, 0).label("count"))
            .outerjoin(counts, counts.c.group_id == groups.c.id)
            .order_by(groups.c.label)
        )
        if type_string is not None:
            query = query.where(groups.c.type_string == type_string)
        if node_id is not None:
            members = select(group_nodes.c.group_id).where(group_nodes.c.node_id == node_id)
            query = query.where(groups.c.id.in_(members))
        with self._reading() as conn:
            return [_row(r) for r in conn.execute(query).all()]  # type: ignore[misc]

    def update_group(self, pk: int, **fields: Any) -> bool:
        """Change ``label``, ``description`` or ``extras`` of a group; False if the new label is taken.

        A label taken by another group, even by one committed at the same
        moment by another process, gives False and changes nothing (the
        UPDATE runs in a savepoint, so an enclosing transaction goes on).
        """
        from sqlalchemy.exc import IntegrityError

        statement = update(groups).where(groups.c.id == pk).values(**fields)
        with self.transaction() as conn:
            if "label" in fields:
                taken = conn.execute(
                    select(groups.c.id).where(and_(groups.c.label == fields["label"], groups.c.id != pk))
                ).first()
                if taken is not None:
                    return False
                try:
                    with conn.begin_nested():
                        conn.execute(statement)
                except IntegrityError:
                    return False
            else:
                conn.execute(statement)
        return True

    def delete_group(self, pk: int) -> bool:
        """Delete a group and its membership rows (never its nodes); False if there was no such group."""
        with self.transaction() as conn:
            conn.execute(delete(group_nodes).where(group_nodes.c.group_id == pk))
            return conn.execute(delete(groups).where(groups.c.id == pk)).rowcount > 0

    def existing_node_ids(self, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` that are pks of stored nodes (one query per :attr:`ID_BATCH` ids)."""
        found: set[int] = set()
        with self._reading() as conn:
            for batch in self._id_batches(ids):
                found.update(conn.execute(select(nodes.c.id).where(nodes.c.id.in_(batch))).scalars())
        return found

    def add_group_nodes(self, group_id: int, node_ids: Iterable[int]) -> int:
        """Add nodes to a group; the number of nodes that were not members yet.

        One ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per
        :attr:`ID_BATCH` ids: members already in the group and pks of no node
        are skipped (no error), duplicates in ``node_ids`` count once.
        """
        from sqlalchemy import literal
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite if self.database.is_sqlite else postgresql
        added = 0
        with self.transaction() as conn:
            for batch in self._id_batches(node_ids):
                source = select(literal(group_id, groups.c.id.type), nodes.c.id).where(nodes.c.id.in_(batch))
                statement = (
                    dialect.insert(group_nodes)
                    .from_select([group_nodes.c.group_id, group_nodes.c.node_id], source)
                    .on_conflict_do_nothing()
                    .execution_options(preserve_rowcount=True)  # else psycopg's INSERT rowcount is lost
                )
                added += max(conn.execute(statement).rowcount, 0)
        return added

    def remove_group_nodes(self, group_id: int, node_ids: Iterable[int]) -> int:
        """Remove nodes from a group (the nodes stay); the number that were members."""
        removed = 0
        with self.transaction() as conn:
            for batch in self._id_batches(node_ids):
                removed += conn.execute(
                    delete(group_nodes).where(
                        and_(group_nodes.c.group_id == group_id, group_nodes.c.node_id.in_(batch))
                    )
                ).rowcount
        return removed

    def clear_group(self, group_id: int) -> int:
        """Remove every node from a group (the nodes stay); the number removed."""
        with self.transaction() as conn:
            return conn.execute(delete(group_nodes).where(group_nodes.c.group_id == group_id)).rowcount

    def copy_group_nodes(self, source_id: int, destination_id: int) -> int:
        """Add every node of group ``source_id`` to ``destination_id`` (one statement); the number added."""
        from sqlalchemy import literal
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite if self.database.is_sqlite else postgresql
        source = select(literal(destination_id, groups.c.id.type), group_nodes.c.node_id).where(
            group_nodes.c.group_id == source_id
        )
        statement = (
            dialect.insert(group_nodes)
            .from_select([group_nodes.c.group_id, group_nodes.c.node_id], source)
            .on_conflict_do_nothing()
            .execution_options(preserve_rowcount=True)
        )
        with self.transaction() as conn:
            return max(conn.execute(statement).rowcount, 0)

    def count_group_nodes(self, group_id: int) -> int:
        with self._reading() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(group_nodes).where(group_nodes.c.group_id == group_id)
                ).scalar_one()
            )

    def group_node_rows(
        self, group_id: int, *, after_id: int | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Node rows of a group's members, by ascending pk: those with pk > ``after_id``, at most ``limit``.

        Each row carries ``process``: the node's process row, or None for a
        data node, all read in one more query, so that loading the process
        nodes among them reads nothing more (see ``ProcessNode._init_loaded``).
        Reading a large group page by page with ``after_id`` set to the last pk
        seen (keyset paging) costs the same for every page.
        """
        query = (
            select(nodes)
            .join(group_nodes, group_nodes.c.node_id == nodes.c.id)
            .where(group_nodes.c.group_id == group_id)
            .order_by(nodes.c.id)
        )
        if after_id is not None:
            query = query.where(nodes.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self._reading() as conn:
            rows: list[dict[str, Any]] = [_row(r) for r in conn.execute(query).all()]  # type: ignore[misc]
            self._attach_process_rows(conn, rows)
        return rows

    def insert_comment(self, row: Mapping[str, Any]) -> int:
        """Insert a comment row (uuid, node_id, ctime, mtime, user_email, content); its new pk."""
        with self.transaction() as conn:
            return int(conn.execute(insert(comments).returning(comments.c.id), dict(row)).scalar_one())

    def get_comment(self, pk: int) -> dict[str, Any] | None:
        with self._reading() as conn:
            return _row(conn.execute(select(comments).where(comments.c.id == pk)).first())

    def list_comments(self, node_id: int) -> list[dict[str, Any]]:
        """The comments on a node, oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                select(comments).where(comments.c.node_id == node_id).order_by(comments.c.id)
            ).all()
        return [_row(r) for r in rows]  # type: ignore[misc]

    @staticmethod
    def _comment_is(pk: int, uuid: str | None) -> Any:
        condition = comments.c.id == pk
        return condition if uuid is None else and_(condition, comments.c.uuid == uuid)

    def update_comment(self, pk: int, content: str, *, uuid: str | None = None) -> _dt.datetime | None:
        """Replace a comment's content: the new modification time, or None if there is no such comment.

        With ``uuid``, only if the comment with that pk still is that one (SQLite
        gives a deleted row's pk to the next row stored).
        """
        now = utcnow()
        with self.transaction() as conn:
            done = conn.execute(
                update(comments).where(self._comment_is(pk, uuid)).values(content=content, mtime=now)
            ).rowcount
        return now if done else None

    def delete_comment(self, pk: int, *, uuid: str | None = None) -> bool:
        """Delete a comment; False if there was no such comment (with ``uuid``: no longer that one)."""
        with self.transaction() as conn:
            return conn.execute(delete(comments).where(self._comment_is(pk, uuid))).rowcount > 0

    # -- deleting nodes; storage maintenance -----------------------------------------------
    @staticmethod
    @functools.cache
    def _deletion_tables() -> tuple[Table, Table]:
        """The two temporary tables of a deletion: the nodes asked for, and every node that goes."""
        scratch = MetaData()
        seeds = Table(
            "plait_delete_seeds", scratch, Column("id", PkType, primary_key=True), prefixes=["TEMPORARY"]
        )
        doomed = Table(
            "plait_delete_set", scratch, Column("id", PkType, primary_key=True), prefixes=["TEMPORARY"]
        )
        return seeds, doomed

    def _start_deletion(self, conn: Connection, seeds: Iterable[int]) -> None:
        """Create the deletion's temporary tables on ``conn`` and fill the seeds (a rollback drops them)."""
        for table in self._deletion_tables():
            conn.execute(text(f"DROP TABLE IF EXISTS {table.name}"))
            table.create(conn)
        rows = [{"id": int(pk)} for pk in dict.fromkeys(seeds)]
        if rows:
            conn.execute(insert(self._deletion_tables()[0]), rows)
        if not self.database.is_sqlite:  # a temporary table has no statistics until it is analysed
            conn.execute(text(f"ANALYZE {self._deletion_tables()[0].name}"))

    def _end_deletion(self, conn: Connection) -> None:
        for table in self._deletion_tables():
            conn.execute(text(f"DROP TABLE IF EXISTS {table.name}"))

    def _fill_deletion_set(
        self, conn: Connection, forward: Sequence[str], backward: Sequence[str]
    ) -> tuple[set[int], set[int], dict[int, str]]:
        """Put into ``plait_delete_set`` every node reached from the seeds; ``(nodes, missing, active)``.

        One recursive query: from each node in the set, follow the links of a ``forward`` type
        from their input to their output and those of a ``backward`` type from output to input.
        ``UNION`` (not ``UNION ALL``) keeps each node once, so cycles end.  Each step looks the
        links of one node up by index, so the walk costs in proportion to the links it crosses,
        however deep: on PostgreSQL the two directions are a ``LATERAL`` union of two index scans
        (an ``OR`` join would let the planner scan the whole links table at every step); SQLite,
        which has no ``LATERAL``, does the ``OR`` join by two index lookups.  ``missing`` are
        seeds that are no node; ``active`` maps each process of the set that is not terminated to
        its state.
        """
        seeds, doomed = self._deletion_tables()
        conn.execute(delete(doomed))
        start = select(nodes.c.id).where(nodes.c.id.in_(select(seeds.c.id)))
        closure = start.cte("closure", recursive=True)
        if self.database.is_sqlite:
            ahead = and_(links.c.input_id == closure.c.id, links.c.link_type.in_(list(forward)))
            behind = and_(links.c.output_id == closure.c.id, links.c.link_type.in_(list(backward)))
            step = select(case((ahead, links.c.output_id), else_=links.c.input_id)).select_from(
                closure.join(links, or_(ahead, behind))
            )
        else:
            conn.execute(
                text("SET LOCAL jit = off")
            )  # compiling the big-estimate plan costs more than it runs
            neighbours = union_all(
                select(links.c.output_id.label("id")).where(
                    links.c.input_id == closure.c.id, links.c.link_type.in_(list(forward))
                ),
                select(links.c.input_id.label("id")).where(
                    links.c.output_id == closure.c.id, links.c.link_type.in_(list(backward))
                ),
            ).lateral("neighbours")
            step = select(neighbours.c.id).select_from(closure.join(neighbours, true()))
        closure = closure.union(step)
        conn.execute(insert(doomed).from_select(["id"], select(closure.c.id)))
        found = set(conn.execute(select(doomed.c.id)).scalars())
        missing = set(
            conn.execute(
                select(seeds.c.id).where(~select(nodes.c.id).where(nodes.c.id == seeds.c.id).exists())
            ).scalars()
        )
        active = {
            int(pk): str(state)
            for pk, state in conn.execute(
                select(processes.c.node_id, processes.c.state)
                .where(
                    processes.c.node_id.in_(select(doomed.c.id)),
                    processes.c.state.not_in(TERMINAL_STATES),
                )
                .order_by(processes.c.node_id)
            ).all()
        }
        return found, missing, active

    def plan_node_deletion(
        self, seeds: Iterable[int], forward: Sequence[str], backward: Sequence[str]
    ) -> tuple[set[int], set[int], dict[int, str]]:
        """What deleting ``seeds`` would take, without deleting anything: ``(nodes, missing, active)``.

        ``nodes``: every node reached from the seeds by following links of the ``forward`` link
        types along their direction and those of the ``backward`` types against it, the seeds
        included (the orm's :func:`plait.orm.delete_nodes` turns the provenance rules into these
        two lists); ``missing``: seeds that are no node; ``active``: ``{pk: state}`` of the
        processes in ``nodes`` that are not terminated.  The walk is one recursive query in the
        database, however many nodes it reaches.
        """
        with self._reading() as conn:
            self._start_deletion(conn, seeds)
            plan = self._fill_deletion_set(conn, forward, backward)
            self._end_deletion(conn)
        return plan

    def delete_node_closure(
        self,
        seeds: Iterable[int],
        forward: Sequence[str],
        backward: Sequence[str],
        accept: Callable[[set[int], set[int], dict[int, str]], None],
    ) -> set[int]:
        """Delete what :meth:`plan_node_deletion` finds, in one transaction; the pks deleted.

        The set is found again inside the write transaction and handed to ``accept(nodes,
        missing, active)``, which raises to refuse (a process still running, the set not the one
        the user confirmed); only then are the rows deleted.  On PostgreSQL the set's node rows
        are locked (``FOR UPDATE``) and the set found again until it no longer grows, so that no
        link to one of them commits in between (a concurrent insert of such a link waits, then
        fails on its foreign key); on SQLite the write lock of the transaction does that.

        Deleting a node row deletes with it, through the foreign keys, its links (both ways), its
        process row, checkpoints, logs, waits, group memberships and comments; a process outside
        the set that the set called keeps its row with ``caller_id`` cleared.  The database
        broker's messages about the deleted processes go too.  Files stay in the repository
        (other nodes may share them) until :meth:`maintain_storage`.  Anything failing midway
        rolls the whole transaction back: nothing is half deleted.

        Raises:
            RuntimeError: SQLite foreign keys are off on this connection (deleting would leave
                links behind), or the set keeps changing under concurrent writers.
            Whatever ``accept`` raises.
        """
        doomed = self._deletion_tables()[1]
        with self.transaction() as conn:
            if self.database.is_sqlite and not conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
                raise RuntimeError("SQLite foreign keys are off on this connection: refusing to delete nodes")
            self._start_deletion(conn, seeds)
            locked: set[int] = set()
            for _ in range(20):
                found, missing, active = self._fill_deletion_set(conn, forward, backward)
                if self.database.is_sqlite or found <= locked:
                    break
                conn.execute(
                    select(nodes.c.id).where(nodes.c.id.in_(select(doomed.c.id))).with_for_update(of=nodes)
                ).all()
                locked |= found
            else:  # pragma: no cover - needs writers linking new nodes to the set twenty times over
                raise RuntimeError("the nodes to delete keep gaining links from other writers: try again")
            accept(found, missing, active)
            if found:
                conn.execute(
                    delete(broker_messages).where(broker_messages.c.process_id.in_(select(doomed.c.id)))
                )
                conn.execute(delete(nodes).where(nodes.c.id.in_(select(doomed.c.id))))
            self._end_deletion(conn)
        return found

    def referenced_file_keys(self) -> set[str]:
        """The hash of every repository object that some node's ``files`` refers to (one query)."""
        if self.database.is_sqlite:
            query = "SELECT DISTINCT json_extract(f.value, '$[0]') FROM nodes, json_each(nodes.files) AS f"
        else:
            query = "SELECT DISTINCT f.value ->> 0 FROM nodes, jsonb_each(nodes.files) AS f"
        with self._reading() as conn:
            return {str(key) for key in conn.execute(text(query)).scalars() if key}

    def database_size(self) -> int | None:
        """Bytes the database takes: the SQLite file with its WAL, or PostgreSQL's ``pg_database_size``.

        None for an in-memory SQLite database.
        """
        if self.database.is_sqlite:
            name = self.database.engine.url.database
            if not name or name == ":memory:":
                return None
            return sum(p.stat().st_size for p in (Path(name), Path(f"{name}-wal")) if p.is_file())
        with self._reading() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())

    def database_free_bytes(self) -> int | None:
        """SQLite: bytes of free pages inside the file, which VACUUM gives back; None on PostgreSQL."""
        if not self.database.is_sqlite:
            return None
        with self._reading() as conn:
            pages = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int(pages) * int(size)

    def vacuum(self) -> None:
        """Give back the space of deleted rows and refresh the planner's statistics: SQLite ``VACUUM``
        then ``ANALYZE``, PostgreSQL ``VACUUM ANALYZE`` (see :meth:`Database.analyze`).

        Both must run outside a transaction, so this takes a connection of its own in autocommit
        mode.  SQLite's VACUUM rewrites the whole file, holding the write lock while it does
        (other writers wait, up to the busy timeout), and is followed by a WAL checkpoint that
        truncates the ``-wal`` file; PostgreSQL's plain VACUUM blocks neither readers nor writers
        and leaves the files their size (the space is reused by new rows).

        Raises:
            RuntimeError: called inside a transaction of this backend.
        """
        if self.in_transaction:
            raise RuntimeError("VACUUM cannot run inside a transaction")
        if self.database.is_sqlite:
            raw = self.database.engine.raw_connection()
            try:
                driver = raw.driver_connection
                assert driver is not None
                driver.execute("VACUUM")  # the driver is in autocommit mode: plait issues BEGIN itself
                driver.execute("ANALYZE")  # the planner's statistics, as PostgreSQL's VACUUM ANALYZE
                driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
            return
        with self.database.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")

    def oldest_active_process(self) -> tuple[int, _dt.datetime] | None:
        """``(pk, ctime)`` of the oldest process that is not terminated, or None."""
        query = (
            select(nodes.c.id, nodes.c.ctime)
            .join(processes, processes.c.node_id == nodes.c.id)
            .where(processes.c.state.in_(ACTIVE_STATES))
            .order_by(nodes.c.ctime, nodes.c.id)
            .limit(1)
        )
        with self._reading() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        ctime = _as_utc(row[1])
        assert ctime is not None
        return int(row[0]), ctime

    def maintain_storage(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> dict[str, Any]:
        """Remove repository objects no node refers to any more, then vacuum the database.

        Objects are removed only if they were last put before the *cut-off*: ``grace_seconds``
        before now, or before the creation of the oldest process that is still running if that
        is earlier.  A node being stored writes its files before its row commits, and a running
        calculation job records files on its node that are written to the node row only with a
        later state change; every put refreshes an object's time, so neither loses a file (see
        :meth:`FileRepository.remove_unreferenced`).  The grace period also covers clocks of
        several hosts that disagree by less than it.

        With ``dry_run`` nothing is removed or vacuumed; the report says what would be.  Returns
        ``{"repository": RepositoryCleanup, "cutoff": unix time, "oldest_active": (pk, ctime) or
        None, "database_before": bytes or None, "database_after": bytes or None (None in a dry
        run), "database_free": bytes of free SQLite pages before (None on PostgreSQL)}``.
        """
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must be 0 or more, not {grace_seconds}")
        oldest = self.oldest_active_process()
        cutoff = time.time()
        if oldest is not None:
            cutoff = min(cutoff, oldest[1].timestamp())
        cutoff -= grace_seconds
        cleanup = self.repository.remove_unreferenced(
            self.referenced_file_keys, older_than=cutoff, dry_run=dry_run
        )
        before = self.database_size()
        free = self.database_free_bytes()
        after = None
        if not dry_run:
            self.vacuum()
            after = self.database_size()
        return {
            "repository": cleanup,
            "cutoff": cutoff,
            "oldest_active": oldest,
            "database_before": before,
            "database_after": after,
            "database_free": free,
        }

    # -- archives: the process rows of imported nodes -------------------------------------------
    def insert_terminated_processes(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert the process rows of nodes imported from an archive, in one statement.

        The one writer of process rows is the engine's lifecycle module, which checks every
        transition; an imported process made its transitions elsewhere and arrives terminated, so
        its row is inserted as it is, with no lease, not paused, no checkpoint and nothing to run
        (``submitted`` false).  Only ``plait.archive`` calls this.

        Raises:
            ValueError: a row whose state is not terminal (finished, excepted, killed), naming its pk.
        """
        if not rows:
            return
        sqlite = self.database.is_sqlite
        values = []
        for row in rows:
            if row.get("state") not in TERMINAL_STATES:
                raise ValueError(
                    f"process {row.get('node_id')} is {row.get('state')!r}: only terminated processes "
                    f"({', '.join(TERMINAL_STATES)}) can be imported"
                )
            mtime = row.get("mtime") or utcnow()
            if sqlite:  # the text SQLAlchemy's DateTime writes on SQLite, in UTC
                mtime = _sqlite_time(mtime)
            node = row.get("node_id")
            copies = (node,) * len(NODE_COLUMNS_COPIED_TO_PROCESSES)
            values.append((*(row.get(c) for c in _IMPORTED_PROCESS_COLUMNS[:-1]), mtime, *copies))
        # by the driver's executemany: the rows carry no JSON and no Python type to convert but
        # the time, and SQLAlchemy's per-row parameter processing was most of an import's row cost
        with self.transaction() as conn:
            conn.exec_driver_sql(
                _INSERT_IMPORTED_PROCESS_SQLITE if sqlite else _INSERT_IMPORTED_PROCESS_POSTGRES, values
            )
