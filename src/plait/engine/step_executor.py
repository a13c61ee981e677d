"""Threads that run synchronous user code (work chain steps, process functions under ``arun``).

Why not a plain ``ThreadPoolExecutor``: a step may itself call
``plait.run(SubWorkChain)``, which hands the child to the event loop and
*blocks its thread* until the child is done.  The child's own synchronous
steps need threads too.  With a fixed pool, enough blocked parents would
take every thread and the children could never run: a deadlock.

Here at most ``max_running`` threads run user code at once, but a thread
that blocks on a nested launch (inside :meth:`StepExecutor.blocking`) gives
its place up while it waits, and a new thread is started if work is queued
and no thread is free.  Idle threads exit after ``idle_seconds``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

__all__ = ["StepExecutor", "get_db_executor", "get_step_executor"]

#: threads running user code at once (blocked nested launches do not count); PLAIT_STEP_THREADS overrides
DEFAULT_STEP_THREADS = 8
#: threads for the engine's own database work (commits, claims, lease renewals)
DB_THREADS = 2


class StepExecutor(Executor):
    """An executor whose running-thread count excludes threads blocked on nested launches."""

    def __init__(self, max_running: int = DEFAULT_STEP_THREADS, idle_seconds: float = 30.0) -> None:
        self._max_running = max_running
        self._idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._queue: collections.deque[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]
        ]
        self._queue = collections.deque()
        self._threads = 0
        self._idle = 0
        self._running = 0  # threads running user code and not blocked
        self._shutdown = False
        self._local = threading.local()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            if self._shutdown:
                raise RuntimeError("the step executor is shut down")
            self._queue.append((future, fn, args, kwargs))
            self._wake_or_spawn()
        return future

    def _wake_or_spawn(self) -> None:
        # called with the lock held
        if self._idle > 0:
            self._cond.notify()
        elif self._running < self._max_running:
            self._threads += 1
            self._idle += 1
            thread = threading.Thread(target=self._worker, name=f"plait-step-{self._threads}", daemon=True)
            thread.start()

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue or self._running >= self._max_running:
                    if self._shutdown or not self._cond.wait(timeout=self._idle_seconds):
                        if not self._queue or self._shutdown:
                            self._idle -= 1
                            self._threads -= 1
                            return
                future, fn, args, kwargs = self._queue.popleft()
                self._idle -= 1
                self._running += 1
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._cond:
                    self._running -= 1
                    self._idle += 1
                    if self._queue:
                        self._cond.notify()

    @contextlib.contextmanager
    def blocking(self) -> Iterator[None]:
        """Mark the calling step thread as blocked (waiting for a nested launch) while inside."""
        with self._cond:
            self._running -= 1
            if self._queue:
                self._wake_or_spawn()
        try:
            yield
        finally:
            with self._cond:
                self._running += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._cond.notify_all()


_executor: StepExecutor | None = None
_db_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def get_step_executor() -> StepExecutor:
    """The interpreter-wide executor for user code (created on first use)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = StepExecutor(
                max_running=int(os.environ.get("PLAIT_STEP_THREADS") or DEFAULT_STEP_THREADS)
            )
        return _executor


def get_db_executor() -> ThreadPoolExecutor:
    """The interpreter-wide executor for the engine's database work.

    Kept apart from user code so that slow steps never delay a commit, a
    claim or a lease renewal (which would let leases expire while their
    processes still run), and small so that plait's own threads compete
    little with the event loop for the GIL.
    """
    global _db_executor
    with _lock:
        if _db_executor is None:
            _db_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="plait-db")
        return _db_executor
