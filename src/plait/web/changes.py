"""The feed of process changes behind ``GET /api/events``: one poll of the database for every listener.

The dashboard's process table stays current by listening to this feed.  A
process row gets a new ``mtime`` with every write (the lifecycle module is its
one writer), so "what changed" is "the rows whose ``mtime`` is at or after the
last one seen".  :class:`ProcessChanges` runs that query in a worker thread
every ``interval`` seconds (0.2 by default) while at least one client listens,
and hands each changed row to every listener's queue; with no listener it
does not poll at all.  So ten open dashboards cost one small query per
interval, not ten.

A row's ``mtime`` is taken when its transaction writes it, which may be a
moment before it commits (and on another machine's clock): each look goes
back ``overlap`` seconds (2 by default) before the newest ``mtime`` seen and
skips the rows it has already announced with that same ``mtime``, so a row
that commits late is still announced, once.  A clock more than ``overlap``
seconds behind can still hide a change; the dashboard reloads its page when
it (re)connects, and a listener too slow to keep up (its queue is full) is
told ``reset`` and should do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select

from plait.web.serialize import json_value

__all__ = ["RESET", "ProcessChanges", "changed_since", "newest_mtime"]

#: what a listener's queue receives when it fell behind and missed changes
RESET: dict[str, Any] = {"reset": True}
#: the most rows one look reads; the rest come with the next look
BATCH = 1000


def _columns() -> list[Any]:
    from plait.storage.schema import nodes, processes

    return [
        nodes.c.id.label("pk"),
        nodes.c.uuid,
        nodes.c.label,
        nodes.c.ctime,
        processes.c.process_label,
        processes.c.state,
        processes.c.paused,
        processes.c.exit_status,
        processes.c.status.label("process_status"),
        processes.c.job_stage,
        processes.c.caller_id.label("caller"),
        processes.c.lease_owner.label("holder"),
        processes.c.mtime,
    ]


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def newest_mtime() -> _dt.datetime | None:
    """The newest ``mtime`` of any process row (None: no process yet).  Blocking: run it in a thread."""
    from plait.storage import get_backend
    from plait.storage.schema import processes

    with get_backend().database.read() as conn:
        value = conn.execute(select(func.max(processes.c.mtime))).scalar()
    return None if value is None else _utc(value)


def changed_since(since: _dt.datetime | None, limit: int = BATCH) -> list[dict[str, Any]]:
    """Process rows (the list endpoint's items, plus ``mtime``) written at or after ``since``, oldest first.

    Blocking: run it in a thread.
    """
    from plait.storage import get_backend
    from plait.storage.schema import nodes, processes

    query = select(*_columns()).join(nodes, nodes.c.id == processes.c.node_id)
    if since is not None:
        query = query.where(processes.c.mtime >= since)
    query = query.order_by(processes.c.mtime, processes.c.node_id).limit(limit)
    with get_backend().database.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query).all()]
    for row in rows:
        row["mtime"] = _utc(row["mtime"])
        row["ctime"] = _utc(row["ctime"])
        row["paused"] = bool(row["paused"])
    return rows


class ProcessChanges:
    """Polls for changed process rows while someone listens; every listener gets every change.

    Args:
        interval: seconds between two looks (the delay from a commit to its event is at most this,
            plus the query).
        overlap: how far back before the newest ``mtime`` seen each look goes, in seconds.
        queue_size: changes a listener may have unread before it is told :data:`RESET`.
    """

    def __init__(self, interval: float = 0.2, overlap: float = 2.0, queue_size: int = 2000) -> None:
        if not interval > 0 or not overlap >= 0:
            raise ValueError(f"interval must be > 0 and overlap >= 0, got {interval!r}, {overlap!r}")
        self.interval, self.overlap, self.queue_size = interval, overlap, queue_size
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives each changed row (JSON values) from now on, while the block runs."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        if self._task is None or self._task.done():
            start = await asyncio.to_thread(newest_mtime)
            self._task = asyncio.create_task(self._poll(start), name="plait-web-process-changes")
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)
            if not self._listeners and self._task is not None:
                self._task.cancel()
                self._task = None

    def _publish(self, item: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESET)

    async def _poll(self, newest: _dt.datetime | None) -> None:
        announced: dict[int, _dt.datetime] = {}  # pk -> mtime announced, for rows inside the overlap
        margin = _dt.timedelta(seconds=self.overlap)
        behind = False  # the last look was a full batch: read on from the newest, without going back
        while True:
            if not behind:
                await asyncio.sleep(self.interval)
            since = None if newest is None else (newest if behind else newest - margin)
            rows = await asyncio.to_thread(changed_since, since)
            behind = len(rows) >= BATCH
            for row in rows:
                pk, mtime = row["pk"], row["mtime"]
                if newest is None or mtime > newest:
                    newest = mtime
                if announced.get(pk) == mtime:
                    continue
                announced[pk] = mtime
                self._publish(json_value(row))
            if newest is not None:
                horizon = newest - margin
                announced = {pk: mtime for pk, mtime in announced.items() if mtime >= horizon}
