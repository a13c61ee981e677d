"""Pause, play, kill and ask the status of processes, wherever they run.

For each process: if a live runner holds it (a daemon worker, or a script
running it with ``plait.run``), the request goes to that runner (see
:mod:`plait.broker.control`), which acts and replies.  If nobody holds it
(created and not yet claimed, parked while it waits for children, paused,
or its runner died), the database *is* its state, so the change is made
there directly, through :mod:`plait.engine.lifecycle` and only if still
nobody holds it: pause and play flip the ``paused`` flag (and ring the work
bell on play); kill records it killed *first* — so a parked parent that the
killing of its children wakes finds itself killed and runs no further step —
then cancels its scheduler job and kills its descendants the same way.

There is one async core, :func:`acontrol` (``akill``, ``apause``,
``aplay``, ``astatus``); the blocking functions that the CLI calls wrap it.
Each returns one line per process saying what happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from plait.broker.control import ControlRequest, await_reply, post_request
from plait.engine import lifecycle
from plait.engine.leases import live_holder, new_owner_id
from plait.engine.lifecycle import TERMINAL_STATES
from plait.orm import ProcessNode, ProcessState, load_node

if TYPE_CHECKING:
    from plait.storage import StorageBackend

__all__ = [
    "acontrol",
    "akill",
    "apause",
    "aplay",
    "apply_directly",
    "astatus",
    "kill",
    "pause",
    "play",
    "status",
]

T = TypeVar("T")

#: what apply_directly says when a runner claimed the process between reading and writing its row
CLAIMED_MEANWHILE = "claimed meanwhile"
#: the requester waits this much longer than the holder, so that a holder's "it takes a while" arrives
REPLY_GRACE = 5.0


LOGGER = logging.getLogger("plait.control")


def _backend() -> StorageBackend:
    from plait.storage import get_backend

    return get_backend()


def _live_holder(row: dict[str, Any]) -> str | None:
    return live_holder(row["lease_owner"], row["lease_expires"])


async def _ask(holder: str, pk: int, action: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Post a request to the runner ``holder`` and wait (polling, never blocking the loop) for its reply.

    Raises:
        TimeoutError: no reply within ``timeout`` (+ a grace period).
    """
    from plait.engine.bell import ring_control

    reply_to = new_owner_id("cli")
    request = ControlRequest(pk=pk, action=action, payload=payload, reply_to=reply_to)
    await asyncio.to_thread(post_request, holder, request)
    ring_control(holder)
    return await await_reply(reply_to, request.request_id, timeout + REPLY_GRACE)


def _already(state: str) -> str:
    return f"already {state}"


async def acontrol(
    pks: Iterable[int], action: str, payload: dict[str, Any], timeout: float
) -> dict[int, str]:
    """The one core of control: act on each process where it is, and say what happened."""
    results: dict[int, str] = {}
    backend = _backend()
    for pk in pks:
        row = await asyncio.to_thread(backend.get_process, pk)
        if row is None:
            results[pk] = f"{pk} is not a process"
            continue
        if row["state"] in TERMINAL_STATES and action != "status":
            results[pk] = _already(row["state"])
            continue
        for _ in range(3):  # the holder may change under us: a claim, a park, an end
            holder = _live_holder(row)
            if holder is None:
                message = await apply_directly(pk, action, payload)
                if message != CLAIMED_MEANWHILE:
                    results[pk] = message
                    break
            else:
                try:
                    reply = await _ask(holder, pk, action, payload, timeout)
                except TimeoutError:
                    results[pk] = (
                        f"no reply from {holder} within {timeout:g} s (it may be in a long step); try again"
                    )
                    break
                results[pk] = reply.get("message") or reply.get("error") or str(reply)
                break
            row = await asyncio.to_thread(backend.get_process, pk)
            if row is None or (row["state"] in TERMINAL_STATES and action != "status"):
                results[pk] = _already(row["state"]) if row else f"{pk} is not a process"
                break
        else:
            results[pk] = "its holder kept changing; try again"
    return results


async def apply_directly(pk: int, action: str, payload: dict[str, Any]) -> str:
    """Act on a process that no live runner holds: its row is its whole state."""
    from plait.engine.bell import ring_work

    backend = _backend()
    row = await asyncio.to_thread(backend.get_process, pk)
    if row is None:
        return f"{pk} is not a process"
    dead = row["lease_owner"] if row["lease_owner"] and _live_holder(row) is None else None
    if action == "status":
        paused = ", paused" if row["paused"] else ""
        detail = f": {row['status']}" if row["status"] else ""
        return f"{row['state']}{paused}, held by nobody{detail}"
    if row["state"] in TERMINAL_STATES:
        return _already(row["state"])
    if action == "pause":
        if row["paused"]:
            return "already paused"
        if not await asyncio.to_thread(lambda: lifecycle.set_unheld(pk, dead_owner=dead, paused=True)):
            return CLAIMED_MEANWHILE
        await asyncio.to_thread(backend.insert_log, pk, "REPORT", "paused", {})
        return "paused"
    if action == "play":
        if not row["paused"]:
            return "not paused"
        status = None if (row["status"] or "").startswith("paused:") else row["status"]
        if not await asyncio.to_thread(
            lambda: lifecycle.set_unheld(pk, dead_owner=dead, paused=False, status=status)
        ):
            return CLAIMED_MEANWHILE
        await asyncio.to_thread(backend.insert_log, pk, "REPORT", "played", {})
        ring_work()
        return "played"
    if action == "kill":
        if not await kill_unheld(pk, payload.get("message") or "killed by request", dead_owner=dead):
            return CLAIMED_MEANWHILE
        return "killed"
    raise ValueError(f"unknown action '{action}'")


async def kill_unheld(pk: int, message: str, *, dead_owner: str | None = None) -> bool:
    """Kill a process nobody runs: recorded killed first, then its job cancelled and its descendants killed.

    Returns False (nothing done) if a runner holds it now.
    """
    job = await asyncio.to_thread(_job_of, pk)
    ended = await asyncio.to_thread(
        lambda: lifecycle.end_unheld(
            pk,
            ProcessState.KILLED,
            log_level="WARNING",
            log=f"killed: {message}",
            dead_owner=dead_owner,
            exit_message=message,
        )
    )
    if not ended:
        return False
    await asyncio.to_thread(run_on_terminated_of_unheld, pk)
    if job is not None:
        await cancel_job(pk, *job)
    await kill_descendants(pk, f"its caller {pk} was killed")
    return True


def run_on_terminated_of_unheld(pk: int) -> None:
    """(thread) Run the ``on_terminated`` hook of process ``pk``, just ended while nobody held it.

    A work chain parked in the database, or a process submitted that no
    worker took yet, has no process object anywhere: the one that ended it
    (this interpreter) rebuilds it from its node and last checkpoint, so the
    hook sees its inputs and context as they were, and runs it once (the
    fenced end it follows succeeds only once).  A class that cannot be
    imported, or a checkpoint that cannot be read, is logged and skipped: the
    end is recorded already.
    """
    from plait.engine.process import Process
    from plait.engine.resolve import load_process_class

    node = load_node(pk)
    assert isinstance(node, ProcessNode)
    try:
        cls = load_process_class(node)
        if cls.on_terminated is Process.on_terminated:
            return
        process = cls._load(node, None)
        checkpoint = node._process_row.get("checkpoint")
        if checkpoint:
            process._restore(checkpoint)
    except Exception:
        LOGGER.exception("the on_terminated hook of process %s was not run: it could not be rebuilt", pk)
        return
    process._terminated = True
    process._call_on_terminated()


async def kill_descendants(pk: int, message: str) -> None:
    """Kill every active child of ``pk`` wherever it is (and so, recursively, theirs)."""
    children = await asyncio.to_thread(_backend().get_children, pk)
    active = [child["node_id"] for child in children if child["state"] not in TERMINAL_STATES]
    if active:
        await akill(active, message=message)


def _job_of(pk: int) -> tuple[int, str] | None:
    """``(computer pk, job id)`` of a calculation job whose scheduler job may still run, else None."""
    backend = _backend()
    row = backend.get_process(pk)
    if row is None or row.get("job_stage") not in ("queued", "submitting"):
        return None
    from plait.orm import CalcJobNode, load_node

    node = load_node(pk)
    computer_id = (backend.get_node(pk=pk) or {}).get("computer_id")
    if not isinstance(node, CalcJobNode) or not node.job_id or computer_id is None:
        return None
    return int(computer_id), str(node.job_id)


async def cancel_job(pk: int, computer_id: int, job_id: str) -> None:
    """Cancel scheduler job ``job_id`` of process ``pk`` through a pooled connection to its computer.

    Every transport kind works the same: a blocking plugin is driven through
    the async adapter by the pool.  Failures are logged on the process (the
    kill itself stands).
    """
    from plait.orm import Computer

    backend = _backend()
    try:
        computer = await asyncio.to_thread(Computer.get, pk=computer_id)
        pool, own = _pool_for_this_loop()
        try:
            async with pool.request(
                computer.pool_key, computer.get_transport, safe_interval=computer.safe_interval()
            ) as transport:
                await computer.get_scheduler().kill(transport, job_id)
        finally:
            if own:
                await pool.close()
        await asyncio.to_thread(backend.insert_log, pk, "REPORT", f"cancelled scheduler job {job_id}", {})
    except Exception as exc:
        await asyncio.to_thread(
            backend.insert_log, pk, "WARNING", f"could not cancel scheduler job {job_id}: {exc}", {}
        )


def _pool_for_this_loop() -> tuple[Any, bool]:
    """The transport pool of this loop's runner if there is one, else a new one (the caller closes it)."""
    from plait.engine.runner import Runner
    from plait.transports import TransportPool

    runner = Runner.existing_for_loop(asyncio.get_running_loop())
    if runner is not None:
        return runner.transport_pool, False
    return TransportPool(idle_timeout=5.0), True


# -- the async API ---------------------------------------------------------------------------------------


async def apause(pks: Iterable[int], *, timeout: float = 10.0) -> dict[int, str]:
    """Pause processes at their next safe point; the flag is kept on the node across restarts."""
    return await acontrol(pks, "pause", {}, timeout)


async def aplay(pks: Iterable[int], *, timeout: float = 10.0) -> dict[int, str]:
    """Continue paused processes (a calculation job paused after its retries retries that task)."""
    return await acontrol(pks, "play", {}, timeout)


async def akill(
    pks: Iterable[int], *, message: str = "killed by request", timeout: float = 10.0
) -> dict[int, str]:
    """Kill processes and their descendants; the scheduler jobs of calculation jobs are cancelled."""
    return await acontrol(pks, "kill", {"message": message, "timeout": timeout}, timeout)


async def astatus(pk: int, *, timeout: float = 5.0) -> dict[int, str]:
    """What the holder says of a process (or the database, if nobody holds it)."""
    return await acontrol([pk], "status", {}, timeout)


# -- the blocking API (the CLI) --------------------------------------------------------------------------


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a control coroutine to its end from blocking code, never re-entering a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from plait.engine.loop_thread import run_on_engine_loop

    return run_on_engine_loop(coro)


def pause(pks: Iterable[int], *, timeout: float = 10.0) -> dict[int, str]:
    """Blocking :func:`apause`."""
    return _blocking(apause(list(pks), timeout=timeout))


def play(pks: Iterable[int], *, timeout: float = 10.0) -> dict[int, str]:
    """Blocking :func:`aplay`."""
    return _blocking(aplay(list(pks), timeout=timeout))


def kill(pks: Iterable[int], *, message: str = "killed by request", timeout: float = 10.0) -> dict[int, str]:
    """Blocking :func:`akill`."""
    return _blocking(akill(list(pks), message=message, timeout=timeout))


def status(pk: int, *, timeout: float = 5.0) -> dict[int, str]:
    """Blocking :func:`astatus`."""
    return _blocking(astatus(pk, timeout=timeout))
