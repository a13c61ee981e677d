"""Launching processes: ``run``, ``run_get_node``, ``arun``, ``arun_get_node``, ``submit``, ``resume``.

Where the blocking functions run the work (no loop is ever re-entered):

* **process functions** (``@calcfunction``/``@workfunction``) run straight
  through in the calling thread; they never wait, so they need no loop;
* in a **plain script** (no running loop in the thread) ``run`` runs a loop
  itself with :func:`asyncio.run` until the process and every child it
  started have terminated;
* in a **step thread** (a plain work chain step calling ``run``), the
  launch is handed back to the runner's loop and the step thread waits;
* in a **thread whose loop is running** (Jupyter), the work goes to the
  engine's own loop in a background thread and the caller waits; inside an
  ``async def`` step, use ``await plait.arun(...)`` instead.

``arun``/``arun_get_node`` are native coroutines for code that already runs
in a loop.  ``submit`` stores the process for a daemon worker to run.

Called from code whose thread runs an event loop (an async web service),
``run`` and ``submit`` work but freeze that loop until they return, so
they warn (a ``RuntimeWarning``, shown once per calling line) and name the
async form to use: ``await plait.arun(...)``, ``await plait.asubmit(...)``.
A notebook cell, whose loop belongs to the kernel, does not warn.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.engine import durable
from plait.engine.context import current_process, current_runner_for_thread
from plait.engine.lifecycle import EngineError
from plait.engine.loop_thread import is_engine_loop_thread, run_on_engine_loop
from plait.engine.process import Process
from plait.engine.process_function import ProcessFunction
from plait.engine.resolve import check_one_way_of_giving_inputs
from plait.engine.runner import Runner, resolve_process
from plait.orm import ProcessNode, ProcessState

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder

__all__ = ["aresume", "arun", "arun_get_node", "resume", "run", "run_get_node", "run_get_pk", "submit"]

Inputs = Mapping[str, Any] | None


async def _arun_in_fresh_loop(
    process: Any, inputs: Inputs | ProcessBuilder, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], ProcessNode]:
    runner = Runner.for_loop()
    try:
        result = await runner.arun_get_node(process, inputs, kwargs, parent=None)
        await runner.wait_all()
        return result
    finally:
        await runner.close()


def run_get_node(
    process: Any, inputs: Inputs | ProcessBuilder = None, *args: Any, **kwargs: Any
) -> tuple[Any, ProcessNode]:
    """Run a process to its end and return ``(outputs, node)``; blocks the calling thread.

    ``outputs`` is a dict of the output nodes (nested for namespaces), or the
    single node for a process function that returned one node.

    Raises:
        InputValidationError: bad inputs (nothing stored).
        Exception: whatever made the process except (the node is marked excepted first).
        ProcessKilledError: the process was killed.
    """
    _console_reports_if_top_level()
    if isinstance(process, ProcessFunction):
        check_one_way_of_giving_inputs(inputs, kwargs)
        merged = {**dict(inputs or {}), **kwargs} if isinstance(inputs, Mapping) else kwargs
        positional = (inputs, *args) if inputs is not None and not isinstance(inputs, Mapping) else args
        return process.run_get_node(*positional, **merged)
    if args:
        raise TypeError("positional inputs are only accepted by process functions; pass inputs by name")
    parent = current_process()
    runner = current_runner_for_thread()
    if runner is not None:
        from plait.engine.step_executor import get_step_executor

        future = asyncio.run_coroutine_threadsafe(
            runner.arun_get_node(process, inputs, kwargs, parent=parent), runner.loop
        )
        with get_step_executor().blocking():
            outputs, node = future.result()
        return outputs, node
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        if parent is None:
            from plait.engine.caching import launch_from_cache

            hit = launch_from_cache(process, inputs, kwargs)  # a cache hit needs no loop
            if hit is not None:
                return hit
        outputs, node = asyncio.run(_arun_in_fresh_loop(process, inputs, kwargs))
        return outputs, node
    if parent is not None or is_engine_loop_thread():
        raise EngineError(
            "plait.run() was called inside an async step, where it would block the event loop: "
            "use `await plait.arun(...)` (or `await self.arun(...)`) there"
        )
    warn_if_blocking_a_loop("run", "await plait.arun(...)")
    return run_on_engine_loop(_arun_in_fresh_loop(process, inputs, kwargs))


def run(process: Any, inputs: Inputs | ProcessBuilder = None, *args: Any, **kwargs: Any) -> Any:
    """Run a process to its end and return its outputs (see :func:`run_get_node`)."""
    outputs, _ = run_get_node(process, inputs, *args, **kwargs)
    return outputs


def run_get_pk(
    process: Any, inputs: Inputs | ProcessBuilder = None, *args: Any, **kwargs: Any
) -> tuple[Any, int]:
    """Run a process to its end and return ``(outputs, pk)`` (see :func:`run_get_node`)."""
    outputs, node = run_get_node(process, inputs, *args, **kwargs)
    assert node.pk is not None
    return outputs, node.pk


async def arun_get_node(
    process: Any, inputs: Inputs | ProcessBuilder = None, *args: Any, **kwargs: Any
) -> tuple[Any, ProcessNode]:
    """Run a process on the running loop and return ``(outputs, node)`` when it terminates.

    Process functions run in a worker thread so the loop is not blocked by
    user code.  Other processes run as tasks of this loop's runner.
    """
    _console_reports_if_top_level()
    runner = Runner.for_loop()
    if isinstance(process, ProcessFunction):
        check_one_way_of_giving_inputs(inputs, kwargs)
        merged = {**dict(inputs or {}), **kwargs} if isinstance(inputs, Mapping) else kwargs
        positional = (inputs, *args) if inputs is not None and not isinstance(inputs, Mapping) else args
        return await runner.call_in_thread(None, lambda: process.run_get_node(*positional, **merged))
    if args:
        raise TypeError("positional inputs are only accepted by process functions; pass inputs by name")
    return await runner.arun_get_node(process, inputs, kwargs, parent=current_process())


async def arun(process: Any, inputs: Inputs | ProcessBuilder = None, *args: Any, **kwargs: Any) -> Any:
    """Run a process on the running loop and return its outputs.

    Awaited inside a ``@plait.workflow`` function it means :func:`plait.call`: the
    process runs as a recorded child of the workflow, replayed from the record on resume.
    """
    if durable.current_workflow() is not None and not args:
        return await durable.call(process, inputs, **kwargs)  # type: ignore[arg-type]
    outputs, _ = await arun_get_node(process, inputs, *args, **kwargs)
    return outputs


def submit(
    process: Any,
    inputs: Inputs | ProcessBuilder = None,
    *,
    wait: bool = False,
    wait_interval: float = 5.0,
    **kwargs: Any,
) -> ProcessNode:
    """Store a process for the daemon to run and return its node (at once, unless ``wait``).

    With ``wait=True`` the call blocks until the daemon has run the process
    to its end, looking at its state every ``wait_interval`` seconds, and
    returns the node refreshed (:func:`plait.await_processes` waits for many).

    Inside a work chain step use ``self.submit(...)`` instead, which also
    records the call and lets the chain wait for the child.

    Raises:
        InputValidationError: bad inputs (nothing stored).
        ValueError: the process class cannot be imported by a daemon worker
            (defined in ``__main__`` or inside a function), or ``wait_interval`` is not positive.
        EngineError: ``wait=True`` inside a running process (wait with ``ToContext`` there).
    """
    parent = current_process()
    if wait:
        from plait.engine.waiting import check_wait_arguments, refuse_inside_process

        check_wait_arguments(wait_interval, None)
        refuse_inside_process("plait.submit(..., wait=True)")
    if parent is not None and parent.runner is not None and hasattr(parent, "submit"):
        return parent.submit(process, inputs, **kwargs)
    warn_if_blocking_a_loop("submit", "await plait.asubmit(...)")
    cls, merged = resolve_process(process, inputs, kwargs)
    problem = cls.check_importable()
    if problem:
        raise ValueError(
            f"cannot submit {cls.process_label_string()} to the daemon: {problem}, so a daemon worker cannot "
            "import it; move it into a module (or use plait.run to run it in this interpreter)"
        )
    instance = cls(cls.prepare_inputs(merged))
    node = instance._store_new(state=ProcessState.CREATED, parent=None, submitted=True)
    from plait.engine.bell import ring_work

    ring_work()
    _warn_if_no_worker(instance.pk)
    if wait:
        from plait.engine.waiting import await_processes

        await_processes([node], wait_interval=wait_interval)
    return node


def in_notebook_kernel() -> bool:
    """True in a Jupyter (IPython kernel) cell, where blocking the cell's loop is what the user wants."""
    if "IPython" not in sys.modules:
        return False
    get_ipython = getattr(sys.modules["IPython"], "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def warn_if_blocking_a_loop(name: str, async_form: str) -> None:
    """Warn when blocking ``plait.<name>`` is called on a thread whose event loop is running.

    That is an async service (a web app's handler) freezing its own loop
    until the call returns; a notebook cell is exempt.  The warning points
    at the caller's line (the first frame outside this module), so Python's
    default filter shows it once per call site.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if in_notebook_kernel():
        return
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    warnings.warn_explicit(
        f"plait.{name}() blocks this thread's running event loop until it returns; "
        f"in async code use `{async_form}` instead",
        RuntimeWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__", "__main__"),
        registry=frame.f_globals.setdefault("__warningregistry__", {}),
        module_globals=frame.f_globals,
    )


def _console_reports_if_top_level() -> None:
    """A launch from a script (not from inside a process) shows report lines on stderr (report_log)."""
    if current_process() is None and current_runner_for_thread() is None:
        from plait.engine.report_log import enable_console_reports

        enable_console_reports()


_warned_no_worker = False


def _warn_if_no_worker(pk: int) -> None:
    """Say once, clearly, when nothing will run what was just submitted."""
    global _warned_no_worker
    if _warned_no_worker:
        return
    import logging
    import time

    from plait.storage import get_backend, get_profile

    workers = get_backend().list_workers()
    if any(time.time() - w["heartbeat"] < 120 for w in workers):
        return
    _warned_no_worker = True
    logging.getLogger("plait.submit").warning(
        "process %s was submitted, but no daemon worker of profile '%s' is running: "
        "start one with `plait daemon start` (it will then run everything submitted)",
        pk,
        get_profile().name,
    )


def resume(pk: int, *, force: bool = False) -> tuple[dict[str, Any], ProcessNode]:
    """Continue process ``pk`` from its last checkpoint in this interpreter and wait for its end.

    Children that were running when the previous interpreter died are
    resumed too.  Raises RuntimeError if another live interpreter holds the
    process (unless ``force``).
    """
    _console_reports_if_top_level()
    runner = current_runner_for_thread()
    if runner is not None:
        return asyncio.run_coroutine_threadsafe(runner.aresume(pk, force=force), runner.loop).result()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_aresume_in_fresh_loop(pk, force))
    return run_on_engine_loop(_aresume_in_fresh_loop(pk, force))


async def _aresume_in_fresh_loop(pk: int, force: bool) -> tuple[dict[str, Any], ProcessNode]:
    runner = Runner.for_loop()
    try:
        result = await runner.aresume(pk, force=force)
        await runner.wait_all()
        return result
    finally:
        await runner.close()


async def aresume(pk: int, *, force: bool = False) -> tuple[dict[str, Any], ProcessNode]:
    """Async :func:`resume` on the running loop."""
    _console_reports_if_top_level()
    return await Runner.for_loop().aresume(pk, force=force)


def is_process_class(obj: Any) -> bool:
    return isinstance(obj, ProcessFunction) or (isinstance(obj, type) and issubclass(obj, Process))
