"""``/api/daemon``: the daemon's status (workers, memory, processes held) and incr/decr of workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from plait.daemon import client
from plait.web.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/api/daemon", tags=["daemon"])

Count = Annotated[int, Query(ge=1, le=64, description="how many workers to add or stop")]


@router.get("", summary="The daemon's status: running or not, and each worker")
def daemon_status() -> dict[str, Any]:
    try:
        reply = client.status()
    except client.DaemonNotRunning:
        return {"running": False, "workers": []}
    except client.DaemonError as exc:
        raise ApiError(503, f"the daemon did not answer: {exc}") from None
    return {"running": True, **reply}


def _change(command: str, n: int) -> dict[str, Any]:
    try:
        reply = client.incr(n=n) if command == "incr" else client.decr(n=n)
    except client.DaemonNotRunning:
        raise ApiError(409, "the daemon is not running: start it with `plait daemon start`") from None
    except client.DaemonError as exc:
        raise ApiError(503, f"the daemon did not answer: {exc}") from None
    return {"running": True, **reply}


@router.post("/incr", summary="Start n more workers")
def daemon_incr(n: Count = 1) -> dict[str, Any]:
    return _change("incr", n)


@router.post("/decr", summary="Stop n workers")
def daemon_decr(n: Count = 1) -> dict[str, Any]:
    return _change("decr", n)
