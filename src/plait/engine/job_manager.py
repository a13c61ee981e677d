"""Batched polling of schedulers: one query per computer for every job a runner waits on.

A cluster's scheduler punishes clients that ask about their jobs one by one
(and ``squeue`` over SSH costs a round trip each time).  So a runner has one
:class:`JobManager`; each calculation job that waits for its scheduler job
registers with :meth:`JobManager.wait_for_job`, and one polling task per
computer asks the scheduler about *all* registered jobs in a single call,
no more often than the computer's ``minimum_poll_interval``.  A job whose
state is final resolves its waiter.  A transport or scheduler failure is
handed to every waiter of that poll, whose own retry policy decides what
next (their next ``wait_for_job`` registers them again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.orm.computer import Computer
    from plait.schedulers import JobInfo
    from plait.transports import TransportPool

__all__ = ["JobManager"]

LOGGER = logging.getLogger("plait.jobs")


class _ComputerPoller:
    def __init__(self, manager: JobManager, computer: Computer) -> None:
        self.manager = manager
        self.computer = computer
        self.scheduler = computer.get_scheduler()
        self.interval = float(computer.options.get("minimum_poll_interval") or 0.0)
        self.waiting: dict[str, list[asyncio.Future[JobInfo]]] = {}
        self.listeners: dict[str, list[Callable[[JobInfo], None]]] = {}
        self.last_states: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.last_poll = 0.0
        self.polls = 0

    def add(self, job_id: str, on_update: Callable[[JobInfo], None] | None) -> asyncio.Future[JobInfo]:
        future: asyncio.Future[JobInfo] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(job_id, []).append(future)
        if on_update is not None:
            self.listeners.setdefault(job_id, []).append(on_update)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"plait-poll-{self.computer.label}"
            )
        self.wake.set()
        return future

    def discard(self, job_id: str, future: asyncio.Future[JobInfo]) -> None:
        futures = self.waiting.get(job_id, [])
        if future in futures:
            futures.remove(future)
        if not futures:
            self.waiting.pop(job_id, None)
            self.listeners.pop(job_id, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            delay = self.last_poll + self.interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.waiting:
                break
            job_ids = sorted(self.waiting)
            self.last_poll = loop.time()
            try:
                async with self.manager.pool.request(
                    self.computer.pool_key,
                    self.computer.get_transport,
                    safe_interval=self.computer.safe_interval(),
                    max_concurrent_operations=int(
                        self.computer.options.get("max_concurrent_operations") or 8
                    ),
                ) as transport:
                    infos = await self.scheduler.query(transport, job_ids)
                self.polls += 1
            except Exception as exc:  # transport or scheduler trouble: every waiter decides for itself
                LOGGER.warning("polling %s for %d job(s) failed: %s", self.computer.label, len(job_ids), exc)
                for job_id in job_ids:
                    for future in self.waiting.pop(job_id, []):
                        if not future.done():
                            future.set_exception(exc)
                    self.listeners.pop(job_id, None)
                continue
            for job_id in job_ids:
                info = infos.get(job_id)
                if info is None:
                    continue
                if self.last_states.get(job_id) != info.raw_state:
                    self.last_states[job_id] = info.raw_state
                    for listener in self.listeners.get(job_id, []):
                        try:
                            listener(info)
                        except Exception:  # a status display must not stop polling
                            LOGGER.exception("job status listener failed")
                if info.state.is_final:
                    self.last_states.pop(job_id, None)
                    self.listeners.pop(job_id, None)
                    for future in self.waiting.pop(job_id, []):
                        if not future.done():
                            future.set_result(info)


class JobManager:
    """The scheduler pollers of one runner, one per computer."""

    def __init__(self, pool: TransportPool) -> None:
        self.pool = pool
        self._pollers: dict[int, _ComputerPoller] = {}

    def poller(self, computer: Computer) -> _ComputerPoller:
        assert computer.pk is not None
        poller = self._pollers.get(computer.pk)
        if poller is None:
            poller = self._pollers[computer.pk] = _ComputerPoller(self, computer)
        return poller

    async def wait_for_job(
        self, computer: Computer, job_id: str, on_update: Callable[[JobInfo], None] | None = None
    ) -> JobInfo:
        """Return the job's final :class:`~plait.schedulers.JobInfo` once the scheduler reports it.

        Raises whatever the batched poll raised (TransportError, SchedulerError).
        """
        poller = self.poller(computer)
        future = poller.add(job_id, on_update)
        try:
            return await future
        finally:
            poller.discard(job_id, future)

    def statistics(self) -> dict[str, Any]:
        return {
            p.computer.label: {"polls": p.polls, "waiting": len(p.waiting)} for p in self._pollers.values()
        }

    async def close(self) -> None:
        for poller in self._pollers.values():
            if poller.task is not None:
                poller.task.cancel()
        await asyncio.gather(
            *(p.task for p in self._pollers.values() if p.task is not None), return_exceptions=True
        )
