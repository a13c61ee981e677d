"""Pause, play, kill and ask the status of processes, wherever they run.

For each process: if a live runner holds it (a daemon worker, or a script
running it with ``plait.run``), the request goes to that runner (see
:mod:`plait.broker.control`), which acts at the process's next safe point
and replies.  If nobody holds it (created and not yet claimed, parked while
it waits for children, paused, or its runner died), the database *is* its
state, so the change is made there directly: pause and play flip the
``paused`` flag (and ring the work bell on play), kill marks it killed,
kills its children the same way, wakes whoever waited for it, and cancels
its scheduler job if it had one.

These functions are blocking (the CLI calls them); each returns one line
per process saying what happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from plait.broker.control import ControlRequest, ControlTimeout, post_request, wait_for_reply
from plait.engine.runner import new_owner_id, owner_is_dead

__all__ = ["apply_directly", "kill", "kill_unheld", "pause", "play", "status"]

TERMINAL = ("finished", "excepted", "killed")
#: what apply_directly says when a runner claimed the process between reading and writing its row
CLAIMED_MEANWHILE = "claimed meanwhile"


def _backend() -> Any:
    from plait.storage import get_backend

    return get_backend()


def _live_holder(row: dict[str, Any]) -> str | None:
    owner = row["lease_owner"]
    if not owner or (row["lease_expires"] is not None and row["lease_expires"] < time.time()):
        return None
    return None if owner_is_dead(owner) else owner


#: the requester waits this much longer than the holder, so that a holder's "it takes a while" arrives
REPLY_GRACE = 5.0


def _ask(holder: str, pk: int, action: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    from plait.engine.bell import ring_control

    reply_to = new_owner_id("cli")
    request = ControlRequest(pk=pk, action=action, payload=payload, reply_to=reply_to)
    post_request(holder, request)
    ring_control(holder)
    return wait_for_reply(reply_to, request.request_id, timeout + REPLY_GRACE)


def _each(pks: Iterable[int], action: str, payload: dict[str, Any], timeout: float) -> dict[int, str]:
    results: dict[int, str] = {}
    backend = _backend()
    for pk in pks:
        row = backend.get_process(pk)
        if row is None:
            results[pk] = f"{pk} is not a process"
            continue
        if row["state"] in TERMINAL and action != "status":
            results[pk] = f"already {row['state']}"
            continue
        holder = _live_holder(row)
        if holder is None:
            message = apply_directly(pk, action, payload)
            if message != CLAIMED_MEANWHILE:
                results[pk] = message
                continue
            row = backend.get_process(pk)  # a worker took it just now: ask that worker
            holder = _live_holder(row) if row else None
            if holder is None:
                results[pk] = apply_directly(pk, action, payload)
                continue
        try:
            reply = _ask(holder, pk, action, payload, timeout)
        except ControlTimeout:
            results[pk] = f"no reply from {holder} within {timeout:g} s (it may be in a long step); try again"
            continue
        results[pk] = reply.get("message") or reply.get("error") or str(reply)
    return results


def apply_directly(pk: int, action: str, payload: dict[str, Any]) -> str:
    """Act on a process that no live runner holds: its row is its whole state."""
    from plait.engine.bell import ring_work

    backend = _backend()
    row = backend.get_process(pk)
    if row is None:
        return f"{pk} is not a process"
    if action == "status":
        paused = ", paused" if row["paused"] else ""
        detail = f": {row['status']}" if row["status"] else ""
        return f"{row['state']}{paused}, held by nobody{detail}"
    if row["state"] in TERMINAL:
        return f"already {row['state']}"
    if action == "pause":
        if row["paused"]:
            return "already paused"
        if not backend.update_process_if_unheld(pk, paused=True):
            return CLAIMED_MEANWHILE
        backend.insert_log(pk, "REPORT", "paused", {})
        return "paused"
    if action == "play":
        if not row["paused"]:
            return "not paused"
        status = None if (row["status"] or "").startswith("paused:") else row["status"]
        if not backend.update_process_if_unheld(pk, paused=False, status=status):
            return CLAIMED_MEANWHILE
        backend.insert_log(pk, "REPORT", "played", {})
        ring_work()
        return "played"
    if action == "kill":
        kill_unheld(pk, payload.get("message") or "killed by request")
        return "killed"
    raise ValueError(f"unknown action '{action}'")


def pause(pks: Iterable[int], *, timeout: float = 10.0) -> dict[int, str]:
    """Pause processes at their next safe point; the flag is kept on the node across restarts."""
    return _each(pks, "pause", {}, timeout)


def play(pks: Iterable[int], *, timeout: float = 10.0) -> dict[int, str]:
    """Continue paused processes (a calculation job paused after its retries retries that task)."""
    return _each(pks, "play", {}, timeout)


def kill(pks: Iterable[int], *, message: str = "killed by request", timeout: float = 30.0) -> dict[int, str]:
    """Kill processes and their children; a calculation job's scheduler job is cancelled."""
    return _each(pks, "kill", {"message": message, "timeout": timeout}, timeout)


def status(pk: int, *, timeout: float = 5.0) -> dict[int, str]:
    """What the holder says of a process (or the database, if nobody holds it)."""
    return _each([pk], "status", {}, timeout)


def kill_unheld(pk: int, message: str) -> None:
    """Kill a process nobody runs: in the database, with its children, waking whoever waited for it."""
    from plait.engine.bell import ring_work

    backend = _backend()
    for child in backend.get_children(pk):
        if child["state"] in TERMINAL:
            continue
        holder = _live_holder(child)
        if holder is None:
            kill_unheld(child["node_id"], f"its caller {pk} was killed")
        else:
            try:
                _ask(holder, child["node_id"], "kill", {"message": f"its caller {pk} was killed"}, 30.0)
            except ControlTimeout:
                pass
    _cancel_job_if_any(pk)
    with backend.transaction():
        backend.update_process(
            pk,
            state="killed",
            exit_message=message,
            lease_owner=None,
            lease_expires=None,
            status=None,
            paused=False,
        )
        woken = backend.release_waits_on(pk)
        backend.delete_waits_of(pk)
    backend.insert_log(pk, "WARNING", f"killed: {message}", {})
    if woken:
        ring_work()


def _cancel_job_if_any(pk: int) -> None:
    """Cancel the scheduler job of an unheld calculation job (paused or orphaned while queued)."""
    from plait.orm import CalcJobNode, load_node

    node = load_node(pk)
    if not isinstance(node, CalcJobNode) or not node.job_id:
        return
    row = _backend().get_process(pk)
    if (row or {}).get("job_stage") not in ("queued",):
        return
    import asyncio

    from plait.orm import Computer

    async def cancel() -> None:
        computer = Computer.get(pk=_backend().get_node(pk=pk)["computer_id"])
        async with computer.get_transport() as transport:
            await computer.get_scheduler().kill(transport, node.job_id)

    try:
        asyncio.run(cancel())
        _backend().insert_log(pk, "REPORT", f"cancelled scheduler job {node.job_id}", {})
    except Exception as exc:
        _backend().insert_log(pk, "WARNING", f"could not cancel scheduler job {node.job_id}: {exc}", {})
