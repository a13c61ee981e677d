"""Where the engine is running right now: the current process and the current runner.

Both live in context variables, so they follow a process into the threads
that run its synchronous steps (the engine runs each step in a copied
context) and into the asyncio tasks it creates.

:func:`current_process` is public: code running inside a process (a step,
a calcfunction body, a parser) can find the process that runs it.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.engine.process import Process
    from plait.engine.runner import Runner

__all__ = ["current_process", "current_runner_for_thread"]

_process: contextvars.ContextVar[Process | None] = contextvars.ContextVar("plait_process", default=None)
#: set in the threads that run synchronous steps: the runner whose loop to hand nested launches to.
_step_thread = threading.local()


def current_process() -> Process | None:
    """The process whose code is running here, or None outside any process."""
    return _process.get()


def set_current_process(process: Process | None) -> contextvars.Token[Process | None]:
    return _process.set(process)


def reset_current_process(token: contextvars.Token[Process | None]) -> None:
    _process.reset(token)


def current_runner_for_thread() -> Runner | None:
    """The runner that runs this thread's synchronous step, if this is a step thread."""
    return getattr(_step_thread, "runner", None)


def set_runner_for_thread(runner: Runner | None) -> Any:
    previous = getattr(_step_thread, "runner", None)
    _step_thread.runner = runner
    return previous
