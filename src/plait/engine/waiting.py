"""Waiting for processes from a script: :func:`await_processes` and its coroutine twin.

A script that submitted work to the daemon often needs the results before it
goes on (``plait.submit(..., wait=True)`` uses this too)::

    nodes = [plait.submit(Add, x=Int(i), y=Int(1)) for i in range(10)]
    plait.await_processes(nodes, timeout=600)
    print([n.outputs.sum.value for n in nodes])

The database is the truth (design principle 1): the waiting is one query for
the states of all the processes every ``wait_interval`` seconds, and each node
passed in is refreshed when they have all terminated.  No broker is needed,
and the waiting works against any runner (a daemon worker, another
interpreter running :func:`plait.resume`).

Which one to call:

* :func:`await_processes` blocks the calling thread with plain sleeps.  It
  never runs or re-enters an event loop, so it works in a plain script and
  in a thread whose loop is running (a Jupyter cell), just as ``plait.run``
  blocks there.
* :func:`aawait_processes` is a coroutine for code already in a loop: the
  state queries run in a worker thread, so the loop is never blocked.

Inside a running process neither is allowed: a work chain waits for its
children by returning ``ToContext(...)`` from a step, which also parks it
(and frees its worker slot) under the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from plait.engine.context import current_process
from plait.engine.lifecycle import EngineError
from plait.orm import ProcessNode, ProcessState

__all__ = ["aawait_processes", "await_processes"]

LOGGER = logging.getLogger("plait.waiting")
#: default seconds between two looks at the states
DEFAULT_WAIT_INTERVAL = 1.0


def _nodes(nodes: Iterable[Any]) -> list[ProcessNode]:
    """The process nodes to wait for, checked.

    Raises:
        TypeError: ``nodes`` is not a list of process nodes (a single node is refused too).
        ValueError: a node is not stored, so no process runs for it.
    """
    if isinstance(nodes, ProcessNode) or not isinstance(nodes, Iterable):
        raise TypeError(f"await_processes needs a list of process nodes, got {type(nodes).__name__}")
    found = list(nodes)
    for node in found:
        if not isinstance(node, ProcessNode):
            raise TypeError(f"await_processes needs process nodes, got {node!r}")
        if node.pk is None:
            raise ValueError(f"{node!r} is not stored: no process runs for it")
    return found


def check_wait_arguments(wait_interval: float, timeout: float | None) -> None:
    if not wait_interval > 0:
        raise ValueError(f"wait_interval must be a positive number of seconds, got {wait_interval!r}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")


def refuse_inside_process(what: str) -> None:
    process = current_process()
    if process is not None:
        raise EngineError(
            f"{what} was called inside process {process.pk} ({type(process).__name__}), where it would hold "
            "its worker while it waits: in a work chain, launch children with self.submit(...) and return "
            "ToContext(name=node) from the step; the next step runs when they have terminated"
        )


def still_running(pks: list[int]) -> list[int]:
    """The pks among ``pks`` whose process has not terminated (one query).

    Raises:
        ValueError: a pk has no process row (the node was deleted, or is not a process).
    """
    from plait.storage import get_backend

    states = get_backend().get_process_states(pks)
    missing = [pk for pk in pks if pk not in states]
    if missing:
        raise ValueError(f"no process with pk {', '.join(map(str, missing))}: was it deleted?")
    return [pk for pk in pks if not ProcessState(states[pk][0]).is_terminal]


def _timeout_error(running: list[int], total: int, timeout: float) -> TimeoutError:
    return TimeoutError(
        f"{len(running)} of {total} processes had not terminated after {timeout:g} s; still running: "
        f"{', '.join(map(str, running))}"
    )


def _log_progress(running: list[int], total: int, started: float) -> None:
    LOGGER.info(
        "%d of %d processes terminated [%d s]; waiting for %s",
        total - len(running),
        total,
        round(time.monotonic() - started),
        ", ".join(map(str, running[:10])) + (" ..." if len(running) > 10 else ""),
    )


def await_processes(
    nodes: Iterable[ProcessNode], timeout: float | None = None, wait_interval: float = DEFAULT_WAIT_INTERVAL
) -> None:
    """Block until every process of ``nodes`` has terminated, then refresh the nodes.

    Args:
        nodes: the process nodes (a list or tuple of them; one node goes in a list too).
        timeout: give up after this many seconds (None: wait as long as it takes).
        wait_interval: seconds between two looks at the states.

    Raises:
        TimeoutError: ``timeout`` passed; the message names the pks still running.
        EngineError: called inside a running process (use ``ToContext`` there).
        TypeError, ValueError: bad ``nodes``, ``timeout`` or ``wait_interval``.
    """
    check_wait_arguments(wait_interval, timeout)
    found = _nodes(nodes)
    refuse_inside_process("plait.await_processes()")
    pks = list(dict.fromkeys(node.pk for node in found if node.pk is not None))
    started = time.monotonic()
    while True:
        running = still_running(pks)
        if not running:
            break
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise _timeout_error(running, len(pks), timeout)
        _log_progress(running, len(pks), started)
        time.sleep(wait_interval if timeout is None else max(0.0, min(wait_interval, timeout - waited)))
    for node in found:
        node.refresh()


async def aawait_processes(
    nodes: Iterable[ProcessNode], timeout: float | None = None, wait_interval: float = DEFAULT_WAIT_INTERVAL
) -> None:
    """Coroutine twin of :func:`await_processes`: the loop goes on while it waits.

    The state queries and the refresh run in a worker thread.  Same arguments
    and errors as :func:`await_processes`.
    """
    check_wait_arguments(wait_interval, timeout)
    found = _nodes(nodes)
    refuse_inside_process("plait.aawait_processes()")
    pks = list(dict.fromkeys(node.pk for node in found if node.pk is not None))
    started = time.monotonic()
    while True:
        running = await asyncio.to_thread(still_running, pks)
        if not running:
            break
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise _timeout_error(running, len(pks), timeout)
        _log_progress(running, len(pks), started)
        await asyncio.sleep(
            wait_interval if timeout is None else max(0.0, min(wait_interval, timeout - waited))
        )
    await asyncio.to_thread(lambda: [node.refresh() for node in found])
