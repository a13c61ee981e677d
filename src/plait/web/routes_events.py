"""``GET /api/events``: a server-sent event stream of every process's changes (the dashboard's live feed).

Each change is ``event: process`` with the row as the process list shows it
(plus ``mtime``) in ``data``.  The stream opens with ``event: ready`` once it
listens (load the list after that, and nothing falls between the two), sends
a comment line every ``KEEPALIVE`` seconds while nothing happens, and sends
``event: reset`` when the client fell behind (reload the list).  For one
process until it ends, ``GET /api/processes/{pk}/events`` streams the
``watch`` events instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from plait.web.changes import RESET, ProcessChanges

__all__ = ["KEEPALIVE", "router"]

router = APIRouter(prefix="/api", tags=["processes"])

#: seconds of silence after which a comment line is sent (keeps proxies and the client's reader awake)
KEEPALIVE = 15.0


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def changes_of(request: Request) -> ProcessChanges:
    """The app's one :class:`ProcessChanges` feed (made on first use)."""
    state = request.app.state
    feed = getattr(state, "process_changes", None)
    if feed is None:
        feed = state.process_changes = ProcessChanges()
    return feed


@router.get(
    "/events",
    summary="Server-sent events: every process's changes (state, paused, status, holder, job stage)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def process_changes(request: Request) -> StreamingResponse:
    feed = changes_of(request)

    async def stream() -> AsyncIterator[bytes]:
        async with feed.listen() as queue:
            yield _sse("ready", {"interval": feed.interval})
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is RESET:
                    yield _sse("reset", {})
                else:
                    yield _sse("process", item)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
