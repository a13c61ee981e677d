"""Placement: where a runner's children run, and what it does with a process that waits.

A :class:`~plait.engine.runner.Runner` is given one strategy and asks it at
each of these points; the runner itself never changes:

==================  =================================  ======================================
decision            :class:`InProcess` (scripts,        :class:`Daemon` (daemon workers)
                    notebooks, web apps)
==================  =================================  ======================================
a child launched    runs here, as a task of this        is stored *submitted*; any worker of
                    runner                              the daemon claims it
a parent waits      on futures resolved by its          is *parked*: committed, lease
for children        children (orphaned ones adopted)    released, woken by the last child
                                                        (in the transaction of the checkpoint
                                                        that started the wait)
a pause             waits in memory until played        parks the process (no slot, no lease)
a pause at an       takes effect at the next safe       interrupts the await at once (it
``await``           point                               continues from its checkpoint)
leases              renewed by the runner's heartbeat   renewed by the worker's heartbeat
control server      stops when nothing is held          keeps serving while the worker lives
a durable timer     waits in memory (a pause stops it   is *parked* until ``wake_at``: no lease;
(``self.sleep``)    from waking until played)           the claim loop takes it at that time
==================  =================================  ======================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.engine import lifecycle
from plait.engine.lifecycle import ProcessParked
from plait.orm import ProcessNode, ProcessState

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder
    from plait.engine.process import Process
    from plait.engine.runner import Runner

__all__ = ["Daemon", "InProcess", "Placement"]


class Placement:
    """The strategy interface; see the module docstring for what each point decides."""

    #: the runner's own heartbeat renews the leases of what it holds
    renews_leases: bool = True
    #: the control server keeps serving while the runner holds nothing
    keeps_control_server: bool = False
    #: a pause requested while the process waits at an ``await`` interrupts it at once
    pauses_at_awaits: bool = False
    #: a process that commits ``waiting`` for children still active is released in that same
    #: UPDATE to wait in the database (the caller stops running it, raising
    #: :class:`ProcessParked`); otherwise it waits through :meth:`wait_for_children`
    parks_waiting: bool = False

    def submit_child(
        self,
        runner: Runner,
        parent: Process,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
    ) -> ProcessNode:
        """Launch a child of ``parent`` (callable from a step thread); returns its node at once."""
        raise NotImplementedError

    async def wait_for_children(self, runner: Runner, parent: Process, pks: list[int]) -> None:
        """Return when every process of ``pks`` has terminated (or raise :class:`ProcessParked`)."""
        raise NotImplementedError

    async def pause(self, runner: Runner, process: Process, reason: str | None) -> None:
        """``process`` reached a pause at a safe point: record it and wait to be played (or park)."""
        raise NotImplementedError

    async def pause_interrupted(self, runner: Runner, process: Process) -> None:
        """The task of ``process`` was interrupted at an ``await`` by a pause (if ``pauses_at_awaits``)."""

    async def sleep_until(self, runner: Runner, process: Process, wake_at: float) -> None:
        """Return at ``wake_at`` (committed already), or raise :class:`ProcessParked`; a kill ends the
        wait (the runner cancels the task), a pause keeps it from waking until played."""
        raise NotImplementedError

    def adopts_orphans(self) -> bool:
        """Whether the runner continues, itself, children nobody runs any more."""
        return True


class InProcess(Placement):
    """Children run in this runner; waiting and pausing happen in memory."""

    def submit_child(
        self,
        runner: Runner,
        parent: Process,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
    ) -> ProcessNode:
        return runner._start_child_here(parent, process, inputs, kwargs)

    async def wait_for_children(self, runner: Runner, parent: Process, pks: list[int]) -> None:
        await runner.wait_for_termination(parent, pks)

    async def pause(self, runner: Runner, process: Process, reason: str | None) -> None:
        await runner._pause_in_memory(process, reason)

    async def sleep_until(self, runner: Runner, process: Process, wake_at: float) -> None:
        event = asyncio.Event()
        process._wake_event = event  # type: ignore[attr-defined]  # set by a pause request
        try:
            while True:
                runner.check_safe_point(process)
                if process._pause_requested:
                    await runner.pause_process(process)  # in memory until played (or killed)
                    continue
                remaining = wake_at - time.time()
                if remaining <= 0:
                    return
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            process._wake_event = None  # type: ignore[attr-defined]


class Daemon(Placement):
    """Children go to the whole daemon; a waiting or paused process is parked in the database."""

    renews_leases = False  # the worker's heartbeat renews every lease it holds, with its liveness
    keeps_control_server = True
    pauses_at_awaits = True
    parks_waiting = True

    def submit_child(
        self,
        runner: Runner,
        parent: Process,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
    ) -> ProcessNode:
        from plait.engine.bell import ring_work
        from plait.engine.resolve import resolve_process

        cls, merged = resolve_process(process, inputs, kwargs)
        recorded = parent._reuse_recorded_call(cls)
        if recorded is not None:
            return recorded  # made before a crash; it is submitted and some worker runs it
        child = cls(cls.prepare_inputs(merged), runner=runner)
        child._store_new(state=ProcessState.CREATED, parent=parent, submitted=True)  # fenced by the lease
        ring_work()
        return child.node

    async def wait_for_children(self, runner: Runner, parent: Process, pks: list[int]) -> None:
        status = lifecycle.waiting_status(pks)
        parked = await runner.call_db(parent, lifecycle.park, parent.node, runner.owner, pks, status)
        if parked:
            raise ProcessParked()

    async def pause(self, runner: Runner, process: Process, reason: str | None) -> None:
        await runner.call_db(process, _pause_and_release, process.node, runner.owner, reason)
        raise ProcessParked()

    async def pause_interrupted(self, runner: Runner, process: Process) -> None:
        await runner.call_db(process, _pause_and_release, process.node, runner.owner, None)

    async def sleep_until(self, runner: Runner, process: Process, wake_at: float) -> None:
        runner.check_safe_point(process)
        if wake_at <= time.time():
            return
        await runner.call_db(process, lifecycle.park_until, process.node, runner.owner, wake_at)
        from plait.engine.bell import ring_work

        # this worker's claim loop looks again at the wake time; another worker (after a restart)
        # finds it at its next poll, never before wake_at (the claim query checks it)
        runner.loop.call_later(wake_at - time.time() + 0.01, ring_work)
        raise ProcessParked()

    def adopts_orphans(self) -> bool:
        return False  # children are submitted: the daemon's claim loop takes them


def _pause_and_release(node: ProcessNode, owner: str, reason: str | None) -> None:
    lifecycle.pause_held(node, owner, reason, release=True)
