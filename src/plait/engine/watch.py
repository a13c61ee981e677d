"""Following a process from async code: :func:`asubmit`, :func:`wait` and :func:`watch`.

A web service or a notebook that submitted work wants to *follow* it without
blocking its event loop and without writing its own ``load_node`` loop::

    node = await plait.asubmit(Add, x=Int(1), y=Int(2))
    async for event in plait.watch(node):
        print(event.state, event.paused, event.process_status)
    node = await plait.wait(node, timeout=600)

The database is the truth (design principle 1): :func:`watch` looks at the
process row (state, paused flag, exit status, status line, calculation job
stage, checkpoint count) in a worker thread, so the loop never blocks on the
database, and yields a :class:`ProcessEvent` each time one of them changed.

What makes it look is the process's **state bell**: the lifecycle rings it
after each committed change (:func:`plait.engine.bell.ring_state`), and
:func:`watch` listens for it (:func:`plait.engine.bell.listen_state`) — in
this interpreter always, and from daemon workers on this machine or another
one through the profile's broker (RabbitMQ; the database broker on
PostgreSQL, by ``LISTEN/NOTIFY``).  So a change is seen as soon as it is
committed.  The poll stays as the backup, for bells that are lost, a broker
that is down, or a SQLite profile (which has no signal between processes):
after a change the next look comes soon (every ``MIN_INTERVAL`` s) and,
while nothing changes, the looks space out up to ``interval`` seconds.

aiida-core has no equivalent (its users poll ``load_node(pk).is_terminated``
or subscribe to kiwipy broadcasts, which are lost when the broker is down);
plait's is one query per look, woken by the bell and backed by the poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plait.engine.bell import listen_state
from plait.engine.context import current_process
from plait.orm import ProcessNode, ProcessState

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder

__all__ = ["ProcessEvent", "asubmit", "wait", "watch"]

#: the shortest pause between two looks at a process that just changed, in seconds
MIN_INTERVAL = 0.05
#: the default longest pause between two looks at a quiet process, in seconds
DEFAULT_INTERVAL = 1.0


@dataclass(frozen=True)
class ProcessEvent:
    """What a process looked like when :func:`watch` saw it change.

    Attributes:
        pk: the process node's pk.
        state: the process state (created, running, waiting, finished, excepted, killed).
        paused: whether the process is paused (a flag beside the state).
        exit_status: the exit status once finished (None before).
        process_status: the status line the engine keeps (what it waits for, why it paused), or None.
        job_stage: a calculation job's stage (upload, submit, update, retrieve, parse), or None.
        checkpoint_seq: how many checkpoints were written: it grows with every work chain step.
        terminal: True for the last event, when the process has terminated.
    """

    pk: int
    state: ProcessState
    paused: bool
    exit_status: int | None
    process_status: str | None
    job_stage: str | None
    checkpoint_seq: int
    terminal: bool

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready values (the web API's server-sent events carry this)."""
        return {
            "pk": self.pk,
            "state": self.state.value,
            "paused": self.paused,
            "exit_status": self.exit_status,
            "process_status": self.process_status,
            "job_stage": self.job_stage,
            "checkpoint_seq": self.checkpoint_seq,
            "terminal": self.terminal,
        }


def _pk_of(pk_or_node: int | ProcessNode) -> int:
    """The pk of a process node or a pk, checked.

    Raises:
        TypeError: neither an int pk nor a process node.
        ValueError: the node is not stored.
    """
    if isinstance(pk_or_node, ProcessNode):
        if pk_or_node.pk is None:
            raise ValueError(f"{pk_or_node!r} is not stored: no process runs for it")
        return pk_or_node.pk
    if isinstance(pk_or_node, bool) or not isinstance(pk_or_node, int):
        raise TypeError(f"expected a process pk or a process node, got {type(pk_or_node).__name__}")
    return pk_or_node


def _check_interval(interval: float) -> None:
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")


def _look(pk: int) -> ProcessEvent:
    """One look at process ``pk`` (runs in a worker thread).

    Raises:
        ValueError: there is no process with that pk.
    """
    from plait.storage import get_backend

    row = get_backend().get_process(pk)
    if row is None:
        raise ValueError(f"no process with pk {pk}: was it deleted, or is it not a process?")
    state = ProcessState(row["state"])
    return ProcessEvent(
        pk=pk,
        state=state,
        paused=bool(row.get("paused")),
        exit_status=row.get("exit_status"),
        process_status=row.get("status"),
        job_stage=row.get("job_stage"),
        checkpoint_seq=int(row.get("checkpoint_seq") or 0),
        terminal=state.is_terminal,
    )


async def watch(
    pk_or_node: int | ProcessNode, *, interval: float = DEFAULT_INTERVAL
) -> AsyncIterator[ProcessEvent]:
    """Yield a :class:`ProcessEvent` for the process now, then one each time it changes, until it ends.

    The first event is the process as it is; the last one has ``terminal``
    True (a process that has already terminated yields just that one).  A
    change that comes and goes between two looks is not seen: the events
    are the states the database held when looked at, never a guess.

    Args:
        pk_or_node: the process node or its pk.
        interval: the longest pause between two looks, in seconds.

    Raises:
        TypeError, ValueError: not a process pk or node, an unstored node, no process with
            that pk (also if it is deleted while watched), or a non-positive ``interval``.
    """
    _check_interval(interval)
    pk = _pk_of(pk_or_node)
    loop = asyncio.get_running_loop()
    rung = asyncio.Event()

    def notify() -> None:  # called from the ringing thread or the broker's loop
        try:
            loop.call_soon_threadsafe(rung.set)
        except RuntimeError:  # this loop has closed: nobody watches any more
            pass

    # listening starts beside the first look (connecting to a broker may take a while); once it
    # listens, one more look catches a change made before it did
    listening = asyncio.ensure_future(listen_state(pk, notify))
    listening.add_done_callback(lambda _: notify())
    previous: ProcessEvent | None = None
    pause = MIN_INTERVAL
    try:
        while True:
            rung.clear()  # before the look: a bell rung during it makes the next look come at once
            event = await asyncio.to_thread(_look, pk)
            if event != previous:
                yield event
                if event.terminal:
                    return
                previous = event
                pause = MIN_INTERVAL
            else:
                pause = min(interval, pause * 2)
            try:
                await asyncio.wait_for(rung.wait(), pause)
            except TimeoutError:
                pass
    finally:
        if listening.done() and not listening.cancelled():
            await listening.result()()
        else:
            listening.cancel()


async def wait(
    pk_or_node: int | ProcessNode, timeout: float | None = None, *, interval: float = DEFAULT_INTERVAL
) -> ProcessNode:
    """Wait, without blocking the loop, until the process has terminated; return its node, loaded anew.

    Args:
        pk_or_node: the process node or its pk.
        timeout: give up after this many seconds (None: as long as it takes).
        interval: the longest pause between two looks at the process, in seconds.

    Raises:
        TimeoutError: ``timeout`` passed first; the message names the pk and its state.
        TypeError, ValueError: as for :func:`watch`, or a negative ``timeout``.
    """
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")
    _check_interval(interval)
    pk = _pk_of(pk_or_node)
    last: list[ProcessEvent] = []

    async def follow() -> None:
        async for event in watch(pk, interval=interval):
            last[:] = [event]

    started = time.monotonic()
    try:
        await asyncio.wait_for(follow(), timeout)
    except TimeoutError:
        state = last[0].state.value if last else "unknown"
        raise TimeoutError(
            f"process {pk} had not terminated after {time.monotonic() - started:.3g} s (it is {state})"
        ) from None
    from plait.orm import load_node

    node = await asyncio.to_thread(load_node, pk)
    assert isinstance(node, ProcessNode)
    return node


async def asubmit(
    process: Any, inputs: Mapping[str, Any] | ProcessBuilder | None = None, **kwargs: Any
) -> ProcessNode:
    """Store a process for the daemon to run and return its node: :func:`plait.submit` for async code.

    The validation and the storing run in a worker thread, so the loop goes
    on meanwhile.  Inside a running process (an ``async def`` work chain
    step) this is ``self.submit(...)``: the child is recorded as called.
    Follow the process with :func:`watch` or :func:`wait`.

    Raises:
        InputValidationError: bad inputs (nothing stored).
        ValueError: the class cannot be imported by a daemon worker.
    """
    from plait.engine.launch import submit

    parent = current_process()
    if parent is not None and parent.runner is not None and hasattr(parent, "submit"):
        node: ProcessNode = parent.submit(process, inputs, **kwargs)
        return node
    return await asyncio.to_thread(submit, process, inputs, **kwargs)
