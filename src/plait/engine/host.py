"""The runner as a process sees it: the one small protocol the author API is driven through.

:class:`~plait.engine.process.Process`, work chains, calculation jobs, process
functions and parsers never import the runner; they hold a ``ProcessHost``
(a :class:`~plait.engine.runner.Runner` is one) and call only what is listed
here.  So the author API and the runtime can change apart, and a test can
drive a process with a host of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder
    from plait.engine.job_manager import JobManager
    from plait.engine.process import Process
    from plait.orm import ProcessNode
    from plait.transports import TransportPool

__all__ = ["ProcessHost"]


class ProcessHost(Protocol):
    """What a running process may ask of whatever runs it."""

    #: the event loop the process's task runs on
    loop: asyncio.AbstractEventLoop
    #: how long a lease taken for a new child lasts
    lease_seconds: float

    @property
    def transport_pool(self) -> TransportPool:
        """The pooled connections to computers (one per computer and user)."""
        ...

    @property
    def job_manager(self) -> JobManager:
        """The batched scheduler pollers."""
        ...

    def _on_loop_thread(self) -> bool:
        """True when called from the thread of :attr:`loop`."""
        ...

    async def call_db(self, process: Process | None, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the engine's database work ``fn(*args)`` off the loop."""
        ...

    async def call_in_thread(self, process: Process | None, fn: Callable[..., Any], *args: Any) -> Any:
        """Run user code ``fn(*args)`` in a step thread."""
        ...

    def check_safe_point(self, process: Process) -> None:
        """Raise the pending kill of ``process``, if any (between steps)."""
        ...

    async def after_checkpoint(self, process: Process) -> None:
        """A checkpoint was committed: act on a pause or kill requested meanwhile."""
        ...

    async def sleep_until(self, process: Process, wake_at: float) -> None:
        """Wait for a durable timer whose wake time is committed (may park the process)."""
        ...

    async def pause_process(self, process: Process, reason: str | None = None) -> None:
        """Pause ``process`` (with ``reason``) and return when it is played."""
        ...

    def submit_child(
        self,
        parent: Process,
        process: Any,
        inputs: Mapping[str, Any] | ProcessBuilder | None,
        kwargs: Mapping[str, Any],
    ) -> ProcessNode:
        """Launch a child of ``parent``; returns its node at once (callable from a step thread)."""
        ...

    async def wait_for_children(self, parent: Process, pks: list[int]) -> None:
        """Return when every process of ``pks`` has terminated (or raise ``ProcessParked``)."""
        ...

    @property
    def parks_waiting(self) -> bool:
        """Whether a process that commits ``waiting`` is parked in the database in that commit
        (see ``Placement.parks_waiting``)."""
        ...
