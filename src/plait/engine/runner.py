"""The runner: runs processes as asyncio tasks on one event loop.

There is one runner per event loop (:meth:`Runner.for_loop`).  It

* starts processes and children as tasks, and resolves whoever waits for
  their termination;
* holds a lease on every process it runs (``lease_owner`` in the database)
  and renews the leases of all of them with one UPDATE every third of the
  lease time, so that a process is never run by two interpreters at once
  and one whose interpreter died can be taken over;
* implements kill and pause at safe points (between steps, or while a
  process waits for its children);
* resumes a process from its last checkpoint (:meth:`Runner.aresume`).

The runner never starts or re-enters a loop: it lives on the loop that
called it.  Synchronous step code runs in the step executor's threads and
reaches the runner back through :meth:`asyncio.AbstractEventLoop.call_soon_threadsafe`
and :func:`asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plait.engine import lifecycle
from plait.engine.context import reset_current_process, set_current_process, set_runner_for_thread
from plait.engine.leases import live_holder, new_owner_id, owner_is_dead
from plait.engine.lifecycle import (
    TERMINAL_STATES,
    KillSignal,
    LeaseLostError,
    NotResumableError,
    ProcessHeldError,
    ProcessKilledError,
    ProcessParked,
    call_index,
)
from plait.engine.placement import InProcess, Placement
from plait.engine.process import Process
from plait.engine.resolve import load_process_class, resolve_process
from plait.orm import LinkType, Node, ProcessNode, ProcessState, load_node

if TYPE_CHECKING:
    from plait.broker.contract import Broker
    from plait.broker.control import ControlRequest, ControlServer
    from plait.engine.builder import ProcessBuilder
    from plait.engine.job_manager import JobManager
    from plait.storage import StorageBackend
    from plait.transports import TransportPool

__all__ = [
    "ProcessParked",
    "Runner",
    "load_process_class",
    "new_owner_id",
    "owner_is_dead",
    "resolve_process",
]

LOGGER = logging.getLogger("plait.runner")

TERMINAL = TERMINAL_STATES


def _copy_result(source: concurrent.futures.Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        return
    exc = source.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(source.result())


def _poll_done(
    loop: asyncio.AbstractEventLoop, done: threading.Event, finished: asyncio.Future[None]
) -> None:
    if done.is_set():
        finished.set_result(None)
    else:
        loop.call_later(0.01, _poll_done, loop, done, finished)


class Runner:
    """Runs processes on one event loop.  Get it with :meth:`Runner.for_loop`."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runner] = weakref.WeakKeyDictionary()
    _by_loop_lock = threading.Lock()

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.5,
        placement: Placement | None = None,
    ) -> None:
        self.loop = loop
        #: where children run and what happens to a process that waits (see :mod:`plait.engine.placement`)
        self.placement: Placement = placement or InProcess()
        self.owner = owner or new_owner_id()
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self._thread_id: int | None = None
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._processes: dict[int, Process] = {}
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._in_thread_step: set[int] = set()
        self._play_events: dict[int, asyncio.Event] = {}
        self._killing: dict[int, asyncio.Task[None]] = {}
        self._pending_control: dict[int, tuple[str, str]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False
        self._transport_pool: TransportPool | None = None
        self._job_manager: JobManager | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._control_server: ControlServer | None = None
        #: control servers told to stop that still answer the requests in hand (close() waits for them)
        self._stopping_control: set[asyncio.Task[None]] = set()
        #: the broker whose control bell wakes this runner (None: poll the database)
        self.control_broker: Broker | None = None
        self.control_poll_interval = 0.25

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop | None = None) -> Runner:
        """The runner of ``loop`` (default: the running loop), created on first use."""
        loop = loop or asyncio.get_running_loop()
        with cls._by_loop_lock:
            runner = cls._by_loop.get(loop)
            if runner is None or runner._closed:
                runner = cls(loop)
                cls._by_loop[loop] = runner
            return runner

    @classmethod
    def existing_for_loop(cls, loop: asyncio.AbstractEventLoop) -> Runner | None:
        """The open runner of ``loop`` if there is one (never creates one)."""
        with cls._by_loop_lock:
            runner = cls._by_loop.get(loop)
        return runner if runner is not None and not runner._closed else None

    def install(self) -> None:
        """Make this runner the one :meth:`for_loop` returns for its loop (a daemon worker's)."""
        with Runner._by_loop_lock:
            Runner._by_loop[self.loop] = self

    @property
    def transport_pool(self) -> TransportPool:
        """The :class:`~plait.transports.TransportPool` of this runner (one connection per computer
        and user)."""
        if self._transport_pool is None:
            from plait.transports import TransportPool

            self._transport_pool = TransportPool(idle_timeout=60.0)
        return self._transport_pool

    @property
    def job_manager(self) -> JobManager:
        """The batched scheduler pollers of this runner."""
        if self._job_manager is None:
            from plait.engine.job_manager import JobManager

            self._job_manager = JobManager(self.transport_pool)
        return self._job_manager

    @property
    def backend(self) -> StorageBackend:
        from plait.storage import get_backend

        return get_backend()

    def _on_loop_thread(self) -> bool:
        return self._thread_id == threading.get_ident()

    # -- launching ---------------------------------------------------------------------------
    async def create(
        self,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
        *,
        parent: Process | None,
    ) -> Process:
        """Validate inputs and store a new process (in a thread; state created, leased here).

        Inputs are validated on the loop, or in a thread when the class's validation reads the
        storage (``prepare_reads_storage``: a calculation job loads its computer).
        """
        cls, merged = resolve_process(process, inputs, kwargs)
        if cls.prepare_reads_storage:
            prepared = await self.call_db(None, cls.prepare_inputs, merged)
        else:
            prepared = cls.prepare_inputs(merged)
        instance = cls(prepared, runner=self)
        store = functools.partial(
            instance._store_new,
            state=ProcessState.RUNNING,
            parent=parent,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
        )
        try:
            await self.call_db(None, store)
        except asyncio.CancelledError:
            # cancelled while the store ran (it always completes): a top-level launch nobody
            # awaits any more must not stay behind active and leased
            if parent is None and instance.node is not None and instance.node.is_stored:
                reason = "cancelled: the task that launched it was cancelled before it started"
                await asyncio.shield(self.call_db(None, instance._killed, reason))
            raise
        return instance

    def start(self, process: Process) -> asyncio.Task[Any]:
        """Run ``process`` as a task on this loop (call on the loop thread)."""
        self._thread_id = threading.get_ident()
        pk = process.pk
        if pk in self._tasks:
            return self._tasks[pk]
        pending = self._pending_control.pop(pk, None)
        if pending is not None:  # a request reached it while it was being rebuilt
            action, message = pending
            if action == "kill":
                process.request_kill(message)
            else:
                process.request_pause()
        process.runner = self
        task = self.loop.create_task(self._drive(process), name=f"plait-process-{pk}")
        self._tasks[pk] = task
        self._processes[pk] = process
        self._ensure_heartbeat()
        self._ensure_control_server()
        return task

    async def arun_get_node(
        self,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        parent: Process | None = None,
    ) -> tuple[dict[str, Any], ProcessNode]:
        """Launch and await a process on this loop; re-raise what made it except."""
        self._thread_id = threading.get_ident()
        if parent is None:
            from plait.engine import caching

            if caching.may_launch_from_cache(process, inputs, kwargs or {}):
                hit = await self.call_db(None, caching.launch_from_cache, process, inputs, kwargs or {})
                if hit is not None:
                    return hit  # stored and finished in one transaction: no task, lease or heartbeat
        instance = await self.create(process, inputs, kwargs or {}, parent=parent)
        return await self.await_process(self.start(instance), instance, kill_on_cancel=parent is None)

    async def await_process(
        self, task: asyncio.Task[Any], process: Process, *, kill_on_cancel: bool = False
    ) -> tuple[dict[str, Any], ProcessNode]:
        """Wait for a process task and return its outputs; re-raise what made it except.

        ``kill_on_cancel`` (a top-level launch: ``arun``, ``run``): cancelling
        the wait — a ``wait_for`` timeout, an interrupted notebook cell, Ctrl-C
        in ``run`` — kills the process (recorded killed, with the reason) and
        releases its lease before the cancellation goes on.  Without it (a
        nested launch) the process stays as last checkpointed.
        """
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if kill_on_cancel and not task.done():
                reason = "cancelled: the task that awaited it was cancelled (or interrupted)"
                self.kill(process.pk, reason)
                await asyncio.shield(self._kill_task(process))
                await asyncio.wait([task], timeout=self.lease_seconds)
            raise
        node = process.node
        exception = process._exception
        if exception is not None:
            raise exception
        if process._lease_lost:
            raise LeaseLostError(f"process {node.pk} was taken over by another runner; it goes on there")
        if node.process_state is ProcessState.KILLED:
            raise ProcessKilledError(f"process {node.pk} was killed: {node.exit_message}")
        return process.nested_outputs(), node

    def submit_child(
        self,
        parent: Process,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
    ) -> ProcessNode:
        """Launch a child of ``parent`` where the placement says; callable from a step thread."""
        return self.placement.submit_child(self, parent, process, inputs, kwargs)

    async def wait_for_children(self, parent: Process, pks: list[int]) -> None:
        """Return when every child in ``pks`` has terminated, as the placement waits (it may park)."""
        await self.placement.wait_for_children(self, parent, pks)

    @property
    def parks_waiting(self) -> bool:
        """Whether a process that commits ``waiting`` is parked in the database in that commit."""
        return self.placement.parks_waiting

    def runs_step_code(self, pk: int) -> bool:
        """True while process ``pk`` has code (a step, a parser, a commit) running in a thread."""
        return pk in self._in_thread_step

    def _start_child_here(
        self,
        parent: Process,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
    ) -> ProcessNode:
        """Create a child of ``parent`` and start it as a task of this runner."""
        cls, merged = resolve_process(process, inputs, kwargs)
        recorded = self._recorded_child(parent, cls)
        if recorded is not None:
            return recorded
        child = cls(cls.prepare_inputs(merged), runner=self)
        child._store_new(
            state=ProcessState.RUNNING, parent=parent, owner=self.owner, lease_seconds=self.lease_seconds
        )
        self._processes[child.pk] = child  # visible to kill() before its task starts
        if self._on_loop_thread():
            self.start(child)
        else:
            self.loop.call_soon_threadsafe(self.start, child)
        return child.node

    def _recorded_child(self, parent: Process, cls: type[Process]) -> ProcessNode | None:
        """On resume: the child this launch made before the crash; restarted here if unfinished."""
        node = parent._reuse_recorded_call(cls)
        if node is None:
            return None
        if not node.is_terminated and node.pk not in self._tasks:
            process = self._load(node)
            if self._on_loop_thread():
                self.start(process)
            else:
                self.loop.call_soon_threadsafe(self.start, process)
        return node

    # -- driving -----------------------------------------------------------------------------
    async def _drive(self, process: Process) -> None:
        pk = process.pk
        token = set_current_process(process)
        try:
            self.check_safe_point(process)
            if process.node.process_state is ProcessState.CREATED:
                await self.call_db(process, process._commit, ProcessState.RUNNING)
            result = await process._execute()
            if not process._terminated:
                await self.call_db(process, process._finish, result)
        except asyncio.CancelledError:
            if process._lease_lost:
                pass  # another runner holds it now: nothing more is written from here
            elif process._kill_message is not None:
                await self._kill_task(process)
            elif process._pause_requested and self.placement.pauses_at_awaits:
                # interrupted at an await: it continues from its checkpoint when played
                await self.placement.pause_interrupted(self, process)
            else:
                raise  # the runner is shutting down: the process stays as last checkpointed
        except KillSignal:
            await self._kill_task(process)
        except ProcessParked:
            pass  # it waits in the database, committed and released
        except LeaseLostError:
            if process._kill_message is not None:
                await self._kill_task(process)
            else:
                LOGGER.warning("process %s was taken over by another runner; this runner lets go of it", pk)
        except Exception as exc:
            if process._kill_message is not None:
                # killed while a step ran: the step's late writes were refused; the kill stands
                await self._kill_task(process)
            else:
                process._exception = exc
                await self.call_db(process, process._except, exc)
                if process._terminated:  # recorded here: its children go with it (not if it was lost)
                    await self._kill_children(process, f"its caller {pk} excepted")
        finally:
            reset_current_process(token)
            self._tasks.pop(pk, None)
            self._processes.pop(pk, None)
            self._in_thread_step.discard(pk)
            for future in self._waiters.pop(pk, []):
                if not future.done():
                    future.set_result(None)
            if not self._tasks:
                # nothing held here any more: no leases to renew, and (except in a daemon worker)
                # no control requests to poll for; a notebook's loop keeps no plait task around
                if self._heartbeat is not None:
                    self._heartbeat.cancel()
                    self._heartbeat = None
                if self._control_task is not None and not self.placement.keeps_control_server:
                    self._stop_control_server()

    def _kill_task(self, process: Process) -> asyncio.Task[None]:
        """The one task that records ``process`` killed and cleans up after it (made on first call)."""
        task = self._killing.get(process.pk)
        if task is None:
            task = self.loop.create_task(self._terminate_killed(process), name=f"plait-kill-{process.pk}")
            self._killing[process.pk] = task
            task.add_done_callback(functools.partial(self._forget_kill, process.pk))
        return task

    def _forget_kill(self, pk: int, _task: asyncio.Task[None]) -> None:
        self._killing.pop(pk, None)

    async def _terminate_killed(self, process: Process) -> None:
        """Kill ``process``: first recorded killed (so nothing it still does is committed), then its
        scheduler job cancelled, then every descendant killed."""
        message = process._kill_message or "killed"
        if not process._terminated:
            await self.call_db(None, process._killed, message)
        if not process._terminated:  # refused: killed already elsewhere, or no longer ours
            row = await self.call_db(None, self.backend.get_process, process.pk)
            if row is None or row["state"] != ProcessState.KILLED.value:
                return  # another runner holds it now: its children are not ours to kill
        if not process.node.process_state.is_terminal or process.node.process_state is ProcessState.KILLED:
            try:
                await process._on_kill()
            except Exception:
                LOGGER.exception("clean-up of killed process %s failed", process.pk)
        await self._kill_children(process, f"its caller {process.pk} was killed")

    def check_safe_point(self, process: Process) -> None:
        """Raise the kill signal if a kill was requested (called between steps)."""
        if process._kill_message is not None:
            raise KillSignal()

    async def after_checkpoint(self, process: Process) -> None:
        """Safe point after a committed step: honour kill and pause requests."""
        self.check_safe_point(process)
        if process._pause_requested:
            await self.pause_process(process)

    async def sleep_until(self, process: Process, wake_at: float) -> None:
        """Wait until ``wake_at`` (a durable timer whose wake time is committed), honouring kill and
        pause; the daemon's placement parks the process instead (:class:`ProcessParked`)."""
        await self.placement.sleep_until(self, process, wake_at)

    async def pause_process(self, process: Process, reason: str | None = None) -> None:
        """Mark ``process`` paused (with ``reason`` as its status) and wait until it is played.

        Used for pause requests at a safe point, and by calculation jobs whose
        retries ran out: the cluster can be fixed and the process played.
        Raises the kill signal if the process is killed while paused; the
        daemon's placement parks it instead of waiting (:class:`ProcessParked`).
        """
        await self.placement.pause(self, process, reason)

    async def _pause_in_memory(self, process: Process, reason: str | None) -> None:
        """Pause and wait in this runner until played (the in-process placement)."""
        event = self._play_events.setdefault(process.pk, asyncio.Event())
        event.clear()
        previous_status = process.node.process_status
        owner = self.owner
        await self.call_db(
            process, functools.partial(lifecycle.pause_held, process.node, owner, reason, release=False)
        )
        try:
            await event.wait()
        finally:
            self._play_events.pop(process.pk, None)
        process._pause_requested = False
        self.check_safe_point(process)
        status = previous_status if reason else lifecycle.KEEP_STATUS
        await self.call_db(process, lifecycle.play_held, process.node, owner, status)

    async def call_in_thread(self, process: Process | None, fn: Any, *args: Any) -> Any:
        """Run user code ``fn(*args)`` (a step, a parser, a process function) in the step executor.

        Work handed to a thread is never torn apart half way: if the awaiting
        task is cancelled, this waits for the thread to finish, then re-raises
        the cancellation.
        """
        from plait.engine.step_executor import get_step_executor

        return await self._hand_off(get_step_executor(), process, fn, args)

    async def call_db(self, process: Process | None, fn: Any, *args: Any) -> Any:
        """Run the engine's database work ``fn(*args)`` (a commit, a claim, a query) off the loop.

        A separate small pool from user code: slow steps never delay commits or
        lease renewals, and a write waiting for SQLite's lock never stalls the loop.
        """
        from plait.engine.step_executor import get_db_executor

        return await self._hand_off(get_db_executor(), process, fn, args)

    async def _hand_off(self, executor: Any, process: Process | None, fn: Any, args: tuple[Any, ...]) -> Any:
        context = contextvars.copy_context()
        pk = process.pk if process is not None else None
        if pk is not None:
            self._in_thread_step.add(pk)
        loop = self.loop
        waiter = loop.create_future()  # one loop future per call (debug mode records a stack for each)
        done = threading.Event()

        def deliver(source: concurrent.futures.Future[Any]) -> None:
            done.set()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_copy_result, source, waiter)

        try:
            executor.submit(context.run, self._in_thread, fn, args).add_done_callback(deliver)
            try:
                return await waiter
            except asyncio.CancelledError:
                if not done.is_set():
                    finished = loop.create_future()
                    loop.call_soon(_poll_done, loop, done, finished)
                    await asyncio.wait([finished])
                raise
        finally:
            if pk is not None:
                self._in_thread_step.discard(pk)

    def _in_thread(self, fn: Any, args: tuple[Any, ...]) -> Any:
        previous = set_runner_for_thread(self)
        try:
            return fn(*args)
        finally:
            set_runner_for_thread(previous)

    # -- waiting for other processes ----------------------------------------------------------------
    async def wait_for_termination(self, parent: Process | None, pks: Iterable[int]) -> None:
        """Return when every process in ``pks`` has terminated.

        Processes run by this runner resolve a future when they end; others
        are resumed here when nobody runs them (their owner died and nothing
        else will), or watched by polling the database.
        """
        pending = list(pks)
        states = await self.call_db(None, self.backend.get_process_states, pending)
        pending = [pk for pk in pending if states.get(pk, ("finished", False))[0] not in TERMINAL]
        if not pending:
            return
        futures = []
        external = []
        for pk in pending:
            if pk in self._tasks or await self._adopt_orphan(pk):
                futures.append(self._termination_future(pk))
            else:
                external.append(pk)
        if external:
            futures.append(asyncio.ensure_future(self._poll_until_terminated(external)))
        try:
            await asyncio.gather(*futures)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise

    def _termination_future(self, pk: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self._waiters.setdefault(pk, []).append(future)
        return future

    async def _adopt_orphan(self, pk: int) -> bool:
        """Resume child ``pk`` here if it is not submitted to a daemon and its owner is gone."""
        if not self.placement.adopts_orphans():
            return False
        row = await self.call_db(None, self.backend.get_process, pk)
        if row is None or row["submitted"]:
            return False
        holder = live_holder(row["lease_owner"], row["lease_expires"])
        if holder not in (None, self.owner):
            return False
        try:
            node = await self.call_db(None, load_node, pk)
            process = await self.call_db(None, self._load, node)
        except (ImportError, RuntimeError) as exc:
            LOGGER.error("cannot resume child %s: %s", pk, exc)
            return False
        self.start(process)
        return True

    async def _poll_until_terminated(self, pks: list[int]) -> None:
        remaining = set(pks)
        while remaining:
            await asyncio.sleep(self.poll_interval)
            states = await self.call_db(None, self.backend.get_process_states, remaining)
            remaining = {pk for pk in remaining if states.get(pk, ("finished", False))[0] not in TERMINAL}

    # -- control --------------------------------------------------------------------------------------
    def kill(self, pk: int, message: str = "killed by request") -> bool:
        """Kill process ``pk`` if this runner runs it; True if it does.  Call on the loop thread.

        The process is recorded killed at once (its row is the truth: a step
        still running in a thread can commit nothing more, nor launch a
        child), then interrupted if it waits, its scheduler job cancelled and
        its descendants killed — all in :meth:`_kill_task`, which a caller may
        await.
        """
        process = self._processes.get(pk)
        if process is None:
            return False
        if process._kill_message is None:
            process.request_kill(message)
        task = self._tasks.get(pk)
        if pk in self._play_events:
            self._play_events[pk].set()
        elif task is not None and pk not in self._in_thread_step:
            task.cancel()
        self._kill_task(process)
        return True

    def pause(self, pk: int) -> bool:
        """Ask process ``pk`` to pause at its next safe point (at once at an await, if the placement
        says so); True if this runner runs it."""
        process = self._processes.get(pk)
        if process is None:
            return False
        process.request_pause()
        task = self._tasks.get(pk)
        if self.placement.pauses_at_awaits and task is not None and pk not in self._in_thread_step:
            task.cancel()
        return True

    def play(self, pk: int) -> bool:
        event = self._play_events.get(pk)
        process = self._processes.get(pk)
        if process is not None:
            process._pause_requested = False
        if event is None:
            return process is not None
        event.set()
        return True

    async def _kill_children(self, process: Process, message: str) -> None:
        """Kill every non-terminated child of ``process`` (and so, recursively, theirs).

        Children run here are killed here; the others are killed wherever
        they are (through their holder, or in the database if nobody holds
        them) by :func:`plait.engine.control.kill`.
        """
        from plait.engine import control

        tasks = []
        elsewhere = []
        rows = await asyncio.to_thread(self.backend.get_children, process.pk)
        for row in rows:
            if row["state"] in TERMINAL:
                continue
            child = row["node_id"]
            if self.kill(child, message):
                task = self._tasks.get(child)
                if task is not None:
                    tasks.append(task)
            else:
                elsewhere.append(child)
        if elsewhere:
            await control.akill(elsewhere, message=message)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- control requests from other processes (plait process pause/play/kill) -------------------
    def _ensure_control_server(self) -> None:
        if self._control_task is None or self._control_task.done():
            from plait.broker.control import ControlServer

            server = ControlServer(
                self.owner,
                self.handle_control,
                broker=self.control_broker,
                poll_interval=self.control_poll_interval,
            )
            self._control_server = server
            self._control_task = self.loop.create_task(server.run(), name="plait-control")

    async def _control_unstarted(self, pk: int, action: str, payload: dict[str, Any]) -> str:
        """Kill or pause a process this runner holds but has not started: noted for :meth:`start`,
        and a kill recorded at once (the lease is ours, so the write is ours to make)."""
        from plait.engine import control

        self._pending_control[pk] = (action, payload.get("message") or "killed by request")
        if action == "pause":
            return "pause requested: it takes effect at the next safe point"
        node = await self.call_db(None, load_node, pk)
        message = payload.get("message") or "killed by request"
        if isinstance(node, ProcessNode):
            await self.call_db(None, lifecycle.kill, node, self.owner, message)
        await control.kill_descendants(pk, f"its caller {pk} was killed")
        return "killed"

    def _stop_control_server(self) -> None:
        """Stop serving control requests once the ones being handled have their replies."""
        server, task = self._control_server, self._control_task
        if server is not None and server.busy and task is not None:
            server.stop()  # a request in hand (e.g. the kill that ended the last process) gets its reply
            self._stopping_control.add(task)
            task.add_done_callback(self._stopping_control.discard)
        elif task is not None:
            task.cancel()
        self._control_server = None
        self._control_task = None

    async def handle_control(self, request: ControlRequest) -> dict[str, Any]:
        """Act on a control request addressed to this runner; the reply says what happened."""
        from plait.engine import control

        pk, action = request.pk, request.action
        process = self._processes.get(pk)
        if process is None:
            row = await self.call_db(None, self.backend.get_process, pk)
            if row is not None and row["lease_owner"] == self.owner and action in ("kill", "pause"):
                # held here but not started yet (a worker's claim, still being rebuilt)
                return {"ok": True, "message": await self._control_unstarted(pk, action, request.payload)}
            message = await control.apply_directly(pk, action, request.payload)
            return {"ok": True, "message": message}
        if action == "status":
            node = process.node
            paused = ", paused" if node.paused else ""
            detail = f": {node.process_status}" if node.process_status else ""
            where = " (in a step)" if pk in self._in_thread_step else ""
            return {
                "ok": True,
                "message": f"{node.process_state.value}{paused}, held by {self.owner}{where}{detail}",
            }
        if action == "kill":
            self.kill(pk, request.payload.get("message") or "killed by request")
            await asyncio.shield(self._kill_task(process))
            return {"ok": True, "message": "killed"}
        if action == "pause":
            if process.node.paused:
                return {"ok": True, "message": "already paused"}
            self.pause(pk)
            for _ in range(100):  # report it paused if it reaches a safe point soon
                await asyncio.sleep(0)
                if process.node.paused or pk not in self._processes:
                    return {"ok": True, "message": "paused"}
                await asyncio.sleep(0.02)
            return {"ok": True, "message": "pause requested: it takes effect at the next safe point"}
        if action == "play":
            if not process.node.paused and not process._pause_requested:
                return {"ok": True, "message": "not paused"}
            self.play(pk)
            return {"ok": True, "message": "played"}
        return {"ok": False, "error": f"unknown action '{action}'"}

    # -- resuming ---------------------------------------------------------------------------------------
    def _load(
        self,
        node: ProcessNode,
        *,
        claimed: bool = False,
        input_links: Sequence[tuple[str, LinkType, Node]] | None = None,
    ) -> Process:
        """Rebuild a process from its node and checkpoint, ready to continue (a database read or two).

        A process continues from its last checkpoint; one without a
        checkpoint (a process function, a work chain that crashed in its first
        step) starts again from the beginning.  Either way the children that
        the interrupted attempt launched after that point are found again by
        their call keys (``caller_pk:index``), so none is launched twice.

        ``claimed``: the caller has just taken the lease (a worker's claim), so it is not taken again.
        ``input_links``: the node's input links, read already (see :meth:`Process._load`).

        Raises:
            NotResumableError: the class cannot be imported, or the checkpoint not read.
        """
        try:
            cls = load_process_class(node)
        except ImportError as exc:
            raise NotResumableError(str(exc)) from exc
        process = cls._load(node, self, input_links=input_links)
        process._recorded_children = {}
        checkpoint = node._process_row.get("checkpoint")
        # a process never started has no past to restore, unless it is a restart that starts at a step
        if node.process_state is not ProcessState.CREATED or checkpoint:
            process._restore(checkpoint)
            calls_done = process._call_counter  # calls committed with the checkpoint (0 without one)
            process._recorded_children = {
                child["call_key"]: child["node_id"]
                for child in self.backend.get_children(process.pk)
                if child["call_key"] and call_index(child["call_key"]) >= calls_done
            }
        process._owner = self.owner
        if not claimed:
            lifecycle.take_lease(process.pk, self.owner, self.lease_seconds, force=True)
        return process

    def claim(self, pk: int, *, force: bool = False) -> ProcessNode:
        """Check that process ``pk`` may be resumed here; raise a clear error if not.

        Raises:
            TypeError: the node is not a process.
            ProcessHeldError: another live interpreter holds it (unless ``force``).
        """
        node = load_node(pk)
        if not isinstance(node, ProcessNode):
            raise TypeError(f"node {pk} is a {type(node).__name__}, not a process")
        row = self.backend.get_process(pk)
        holder = live_holder(row["lease_owner"], row["lease_expires"]) if row else None
        if row and holder and holder != self.owner and not force:
            raise ProcessHeldError(
                f"process {pk} is held by {holder} until {time.ctime(row['lease_expires'])}: it is "
                "still running "
                "there (or wait for the lease to expire, or resume with force=True)"
            )
        return node

    async def aresume(self, pk: int, *, force: bool = False) -> tuple[dict[str, Any], ProcessNode]:
        """Continue process ``pk`` from its last checkpoint and wait for it to terminate."""
        self._thread_id = threading.get_ident()
        if pk in self._tasks:
            return await self.await_process(self._tasks[pk], self._processes[pk])
        node = await self.call_db(None, functools.partial(self.claim, pk, force=force))
        if node.is_terminated:
            from plait.engine.process_function import _nest

            links = await self.call_db(None, node.get_outgoing, (LinkType.CREATE, LinkType.RETURN))
            return _nest({label: value for label, _, value in links}), node
        process = await self.call_db(None, self._load, node)
        return await self.await_process(self.start(process), process)

    # -- leases -----------------------------------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        if not self.placement.renews_leases:
            return
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = self.loop.create_task(self._renew_leases(), name="plait-lease-heartbeat")

    async def _renew_leases(self) -> None:
        try:
            while self._tasks:
                await asyncio.sleep(self.lease_seconds / 3)
                if self._tasks:
                    await self.call_db(None, lifecycle.renew, self.owner, self.lease_seconds)
                    await self.let_go_of_lost()
        except asyncio.CancelledError:
            pass

    async def let_go_of_lost(self) -> list[int]:
        """Stop running the processes whose lease another runner took (fencing, seen from this side).

        A runner cut off from the database for longer than its lease (a
        network partition, a frozen host) finds on its return that others
        took its processes over.  It must not touch them again: each is
        interrupted without any commit (one in a thread step finishes, and its
        commit is refused).  Called after every lease renewal; returns the pks
        let go of.
        """
        if not self._processes:
            return []
        held = set(await self.call_db(None, self.backend.held_by, self.owner))
        suspects = [pk for pk in list(self._processes) if pk not in held]
        if not suspects:
            return []
        rows = await self.call_db(None, functools.partial(self.backend.list_processes, pks=suspects))
        lost = []
        for row in rows:
            holder = row["lease_owner"]
            if holder is None or holder == self.owner:  # released by this runner itself (a park, an end)
                continue
            process = self._processes.get(row["node_id"])
            task = self._tasks.get(row["node_id"])
            if process is None or task is None or process._terminated:
                continue
            LOGGER.warning(
                "process %s is now held by %s: this runner lost its lease and lets go of it",
                row["node_id"],
                holder,
            )
            process._lease_lost = True
            lost.append(row["node_id"])
            if row["node_id"] not in self._in_thread_step:
                task.cancel()
        return lost

    # -- shutting down ------------------------------------------------------------------------------------
    async def wait_all(self) -> None:
        """Return when every process this runner started has terminated (children included)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop the lease heartbeat, pollers and connections; running processes keep their last checkpoint."""
        self._closed = True
        if self._control_task is not None:
            self._stop_control_server()
        for control in list(self._stopping_control):  # the replies in hand are posted before we go
            try:
                await asyncio.wait_for(asyncio.shield(control), timeout=5.0)
            except (TimeoutError, asyncio.CancelledError, Exception):
                control.cancel()
                await asyncio.gather(control, return_exceptions=True)
        if self._job_manager is not None:
            await self._job_manager.close()
        if self._transport_pool is not None:
            await self._transport_pool.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        with Runner._by_loop_lock:
            if Runner._by_loop.get(self.loop) is self:
                del Runner._by_loop[self.loop]
