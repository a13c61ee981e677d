"""A daemon worker: claims runnable processes from the database and runs them.

The worker is one Python process with one event loop and one
:class:`~plait.engine.runner.Runner` with the daemon's placement
(:class:`plait.engine.placement.Daemon`).  Its life:

* **claim** — up to ``slots`` processes at a time, those the database says
  are runnable (submitted, not terminated, not paused, no live lease,
  waiting for no child), taking a lease on each (``claim_runnable``).  It
  looks when the broker rings the work bell, and at least every
  ``poll_interval`` seconds;
* **run** — each process continues from its last checkpoint;
* **park** — a work chain that waits for its children, and a paused
  process, are committed and *released*: they hold no slot, no memory and
  no lease while they wait, and the last child's termination makes the
  parent runnable again (``process_waits``).  Calculation jobs waiting for
  their scheduler stay with the worker but do not count against its slots;
* **renew** — one UPDATE every third of the lease time extends the leases
  of everything the worker holds, and records its heartbeat in ``workers``.
  A worker that dies stops renewing; once its leases expire, other workers
  claim its processes and continue them from their checkpoints;
* **stop** (SIGTERM) — no more claims; each process is interrupted at a
  safe point (a step running in a thread finishes and commits first), the
  leases are released, the worker leaves.

Run one with ``python -m plait.daemon.worker --profile NAME`` (the daemon's
supervisor does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

from plait.engine import lifecycle
from plait.engine.leases import new_owner_id
from plait.engine.placement import Daemon
from plait.engine.process import INPUT_LINK_TYPES
from plait.engine.runner import Runner
from plait.orm import ProcessNode, ProcessState, load_node
from plait.orm.errors import NotExistentError
from plait.orm.node import links_from_rows, node_from_row

__all__ = ["Worker", "main"]

LOGGER = logging.getLogger("plait.worker")

#: claimed processes rebuilt in one trip to the database thread (and one read transaction)
LOAD_BATCH = 25


class Worker:
    """One daemon worker of a profile (see the module docstring)."""

    def __init__(
        self,
        *,
        slots: int = 200,
        lease_seconds: float | None = None,
        poll_interval: float | None = None,
        stop_timeout: float = 60.0,
    ) -> None:
        from plait.storage import get_profile

        self.profile = get_profile()
        options = self.profile.options.get("daemon", {}) if isinstance(self.profile.options, dict) else {}
        self.slots = int(options.get("slots", slots))
        #: processes held at most, calculation jobs waiting for their scheduler included: bounds memory
        self.max_held = int(options.get("max_held", 20 * self.slots))
        self.lease_seconds = float(
            lease_seconds or os.environ.get("PLAIT_LEASE_SECONDS") or options.get("lease_seconds", 30.0)
        )
        default_poll = 0.2 if self.profile.storage_backend == "sqlite" else 2.0
        self.poll_interval = float(poll_interval or options.get("poll_interval", default_poll))
        self.stop_timeout = stop_timeout
        self.worker_id = new_owner_id("worker")
        self.runner: Runner | None = None
        self.broker: Any = None
        self._stopping = asyncio.Event()
        self._started = time.time()
        #: the supervisor that started us (it passes its pid); the worker leaves when it is gone
        self.supervisor_pid = int(os.environ.get("PLAIT_SUPERVISOR_PID") or os.getppid())
        self.claimed = 0

    # -- main ------------------------------------------------------------------------------------
    async def run(self) -> None:
        from plait.broker import create_broker
        from plait.engine.bell import set_ringer
        from plait.storage import get_backend

        loop = asyncio.get_running_loop()
        backend = get_backend()
        self.broker = create_broker(self.profile)
        await self.broker.start()
        set_ringer(self.broker)
        runner = self.runner = Runner(
            loop, owner=self.worker_id, lease_seconds=self.lease_seconds, placement=Daemon()
        )
        runner.control_broker = self.broker
        runner.install()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        await asyncio.to_thread(
            backend.upsert_worker, self.worker_id, socket.gethostname(), os.getpid(), self.info()
        )
        gc.collect()
        gc.freeze()  # the imported code and caches are permanent: keep them out of every collection
        LOGGER.info(
            "worker %s started (slots %d, lease %g s)", self.worker_id, self.slots, self.lease_seconds
        )
        heartbeat = loop.create_task(self._heartbeat(), name="plait-worker-heartbeat")
        runner._ensure_control_server()
        try:
            await self._claim_loop()
        finally:
            heartbeat.cancel()
            await self._shutdown()

    async def _claim_loop(self) -> None:
        runner = self.runner
        assert runner is not None
        while not self._stopping.is_set():
            # a slot is held only while step code runs in a thread: a process waiting at an await
            # (a job for its scheduler, an async step) holds only memory, bounded by max_held
            busy = sum(1 for pk in list(runner._processes) if runner.runs_step_code(pk))
            free = min(self.slots - busy, self.max_held - len(runner._processes))
            claimed: list[int] = []
            if free > 0:
                try:
                    claimed = await runner.call_db(
                        None, lifecycle.claim_runnable, self.worker_id, self.lease_seconds, free
                    )
                except Exception as exc:
                    LOGGER.warning("claiming failed (%s); trying again", exc)
                for first in range(0, len(claimed), LOAD_BATCH):
                    await self._start(claimed[first : first + LOAD_BATCH])
            if claimed and len(claimed) == free:
                await asyncio.sleep(0)
                continue
            bell = asyncio.ensure_future(self.broker.wait_for_work(self.poll_interval))
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait([bell, stop], return_when=asyncio.FIRST_COMPLETED)
            for waiter in (bell, stop):
                waiter.cancel()

    async def _start(self, pks: list[int]) -> None:
        """Rebuild the processes just claimed, in one trip to the database thread, and run them.

        Their rows are read in one shared read transaction, and those never started are moved
        to ``running`` in one commit (not one each): at thousands of processes a minute, the
        per-process round trips were what a worker spent its time on.
        """
        runner = self.runner
        assert runner is not None
        loaded = await runner.call_db(None, self._load_claimed, pks)
        for pk, process, exc in loaded:
            if process is not None:
                self.claimed += 1
                runner.start(process)
                continue
            assert exc is not None
            if _is_transient(exc):
                # the database (or the disk) is away for a moment: nothing is wrong with the process;
                # let go of the claim, and it is claimed again (here or elsewhere) once it is back
                LOGGER.warning("could not load process %s (%s); letting go of it for now", pk, exc)
                with contextlib.suppress(Exception):
                    await runner.call_db(None, lifecycle.release, self.worker_id, [pk])
                continue
            LOGGER.error("cannot continue process %s: %s", pk, exc)
            try:
                await runner.call_db(None, self._mark_excepted, pk, exc)
            except Exception as again:  # never let one process take the worker down
                LOGGER.warning("could not mark process %s excepted: %s", pk, again)

    def _load_claimed(self, pks: list[int]) -> list[tuple[int, Any, BaseException | None]]:
        """(database thread) ``(pk, process or None, error or None)`` for each claimed pk, in order."""
        from plait.storage import get_backend

        runner = self.runner
        assert runner is not None
        backend = get_backend()
        loaded: list[tuple[int, Any, BaseException | None]] = []
        with backend.snapshot():
            # the nodes, their process rows and their inputs in three queries for the whole batch
            rows = backend.get_nodes(pks, with_processes=True)
            types = [t.value for t in INPUT_LINK_TYPES]
            inputs = backend.get_links_of_many(rows, incoming=True, link_types=types)
            for pk in pks:
                try:
                    row = rows.get(pk)
                    if row is None:
                        raise NotExistentError(f"no node with pk {pk}")
                    node = node_from_row(row)
                    if not isinstance(node, ProcessNode):
                        raise TypeError(f"node {pk} is a {type(node).__name__}, not a process")
                    links = links_from_rows(inputs[pk])
                    loaded.append((pk, runner._load(node, claimed=True, input_links=links), None))
                except Exception as exc:
                    loaded.append((pk, None, exc))
        fresh = [
            p.node for _, p, _ in loaded if p is not None and p.node.process_state is ProcessState.CREATED
        ]
        if fresh:
            try:
                lifecycle.start_running(fresh, self.worker_id)
            except Exception as exc:  # each process's own first commit tries again and reports
                LOGGER.warning("could not mark %d claimed processes running at once: %s", len(fresh), exc)
        return loaded

    def _mark_excepted(self, pk: int, exc: BaseException) -> None:
        """A claimed process that cannot be rebuilt here (its class is gone): excepted, with why."""
        import traceback

        text = "".join(traceback.format_exception(exc))
        node = load_node(pk)
        assert isinstance(node, ProcessNode)
        lifecycle.end(
            node,
            self.worker_id,
            ProcessState.EXCEPTED,
            log_level="ERROR",
            log=f"excepted: cannot be continued: {exc}",
            exception=text,
        )

    def info(self) -> dict[str, Any]:
        runner = self.runner
        held = len(runner._processes) if runner is not None else 0
        return {
            "slots": self.slots,
            "held": held,
            "claimed": self.claimed,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "lease_seconds": self.lease_seconds,
        }

    async def _heartbeat(self) -> None:
        from plait.storage import get_backend

        backend = get_backend()
        beats = 0
        parent = self.supervisor_pid
        while True:
            await asyncio.sleep(min(self.lease_seconds / 3, 2.0))
            if os.getppid() != parent:
                # the supervisor died (we were re-parented): a worker nobody supervises must not linger
                LOGGER.warning("the supervisor (pid %d) is gone; stopping", parent)
                self._stopping.set()
                return
            try:
                await asyncio.to_thread(lifecycle.renew, self.worker_id, self.lease_seconds)
                if self.runner is not None:
                    await self.runner.let_go_of_lost()
                await asyncio.to_thread(
                    backend.upsert_worker, self.worker_id, socket.gethostname(), os.getpid(), self.info()
                )
                beats += 1
                if beats % 30 == 0:  # housekeeping, now and then
                    await asyncio.to_thread(backend.clear_stale_waits)
                    await asyncio.to_thread(backend.purge_messages, time.time() - 3600)
            except Exception as exc:  # the database may be busy or restarting: keep the worker alive
                LOGGER.warning("heartbeat failed: %s", exc)

    async def _shutdown(self) -> None:
        """Interrupt every process at a safe point, release the leases, leave."""
        from plait.storage import get_backend

        runner = self.runner
        assert runner is not None
        tasks = list(runner._tasks.values())
        LOGGER.info("worker %s stopping; interrupting %d process(es)", self.worker_id, len(tasks))
        for task in tasks:
            task.cancel()  # a step running in a thread finishes and commits first (call_in_thread)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.stop_timeout)
            for task in pending:
                task.cancel()
        backend = get_backend()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(lifecycle.release, self.worker_id)
            await asyncio.to_thread(backend.delete_worker, self.worker_id)
        await runner.close()
        await self.broker.close()
        LOGGER.info("worker %s stopped", self.worker_id)


def _is_transient(exc: BaseException) -> bool:
    """A database or operating-system error that says nothing about the process itself."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in (
        "sqlalchemy",
        "psycopg",
        "sqlite3",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plait.daemon.worker", description="Run one daemon worker."
    )
    parser.add_argument("--profile", default=None, help="profile name (default: the default profile)")
    parser.add_argument("--slots", type=int, default=200, help="processes run at once")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("PLAIT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s",
        stream=sys.stdout,
    )
    from plait.storage import load_profile

    load_profile(args.profile)
    worker = Worker(slots=args.slots)
    asyncio.run(worker.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
