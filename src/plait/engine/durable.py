"""Durable async workflows: ``@workflow`` on an ``async def`` makes a process that survives crashes.

::

    @plait.workflow
    async def fan_out(n: Int) -> ...:
        results = await asyncio.gather(*(plait.call(square, x=i) for i in range(n.value)))
        return {"total": total(*results)}

Inputs and outputs come from the signature, exactly as for process functions
(:mod:`plait.engine.process_function`); the node is a ``WorkFunctionNode``
whose ``process_type`` names the function and whose attribute
``durable_workflow`` is True (queryable), with CALL links to every child.

Inside the function, ``await plait.call(child, **inputs)`` runs ``child`` as a
recorded child and returns its outputs (the single ``result`` node, or the
dict of outputs).  Each launch gets the call key ``workflow_pk:index`` in the
order launches are *started*; ``asyncio.gather`` of coroutines created in
order starts them in order, so the sequence is deterministic.

Resume is replay: the function runs again from the top, and each launch whose
key was recorded returns that child (finished: its outputs at once;
unfinished: it is waited for) instead of launching anew, through the same
mechanism as work chain children (``Process._reuse_recorded_call``).  A
replayed launch of a different class or different inputs raises
:class:`NonDeterminismError`, naming the position and both launches.

What must be deterministic: the sequence of launches (class and inputs at
each position).  What need not be: logging, pure computation, timing.

Waiting: while its calls wait for unfinished children, the workflow commits
``waiting`` and asks the host whether to park (``park_with_checkpoint``, as a
work chain does): a daemon worker parks it (lease released, no slot held, woken
by the last child), so the coroutine is dropped and the next claim replays it;
in a script the calls wait in memory.  ``await plait.sleep(seconds)`` is a
durable timer: its wake time is committed (the ``wake_at`` column and the
workflow's checkpoint) before the wait, and a replay waits only for the time
left.  A :class:`NonDeterminismError` pauses the workflow (its message is
reported and is the paused status); playing it replays from the top again.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from plait.engine.exit_code import ExitCode
from plait.engine.lifecycle import EngineError, ProcessParked, encode_call_key, waiting_status
from plait.engine.ports import flatten_nodes
from plait.engine.process_function import FunctionProcess, ProcessFunction, _nest
from plait.engine.resolve import resolve_process
from plait.orm import LinkType, Node, ProcessNode, ProcessState, WorkFunctionNode, load_node

__all__ = ["DurableWorkflow", "NonDeterminismError", "call", "current_workflow", "sleep", "workflow"]

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: contextvars.ContextVar[DurableWorkflowProcess | None] = contextvars.ContextVar(
    "plait_durable_workflow", default=None
)

#: loop turns a waiting call lets pass before the workflow decides to park, so that the launches
#: started alongside it (an ``asyncio.gather``) are submitted first and the park waits for all
_SETTLE_TURNS = 3
_CHECKPOINT_VERSION = 1


class NonDeterminismError(EngineError):
    """A replayed durable workflow launched something else than it did before at a recorded position."""


def current_workflow() -> DurableWorkflowProcess | None:
    """The durable workflow whose coroutine is running in this task, or None."""
    return _CURRENT.get()


class DurableWorkflowProcess(FunctionProcess):
    """The process class generated for one ``@workflow`` function: runs the coroutine on the loop."""

    def __init__(self, inputs: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(inputs, **kwargs)
        #: ``{child pk: future}`` of the calls waiting for an unfinished child, not yet settled
        self._waits: dict[int, asyncio.Future[None]] = {}
        #: the task deciding whether to park for ``_waits``, and (while it commits) the future new
        #: launches wait for: launches made during its first loop turns join the same park
        self._settling: asyncio.Task[None] | None = None
        self._committing: asyncio.Future[None] | None = None
        self._parked = False
        self._diverged: NonDeterminismError | None = None
        #: ``{index: wake time}`` of the durable timers reached so far (kept in the checkpoint)
        self._sleeps: dict[str, float] = {}
        self._sleep_index = 0
        self._wake_event: asyncio.Event | None = None  # set by the placement while a timer waits

    def _node_attributes(self, non_db: dict[str, Any]) -> dict[str, Any]:
        attributes = super()._node_attributes(non_db)
        attributes["durable_workflow"] = True
        return attributes

    # -- running ---------------------------------------------------------------------------------
    async def _execute(self) -> ExitCode | None:
        runner = self.runner
        assert runner is not None
        while True:
            try:
                result = await self._run_from_the_top()
            except NonDeterminismError as exc:
                if self._parked:
                    raise ProcessParked() from None
                # the user fixes the code and plays it (or restarts it): pause, through the lifecycle
                await runner.call_db(self, self.report, f"paused: {exc}")
                await runner.pause_process(self, f"non-determinism: {exc}")  # a daemon parks it here
                await runner.call_db(self, self._prepare_replay)
                continue
            if self._parked:
                raise ProcessParked()  # the coroutine swallowed the park: it still waits in the database
            return await runner.call_db(self, self._register_result, result)

    async def _run_from_the_top(self) -> Any:
        """Run the function once from the top (a first run and a replay are the same thing)."""
        args, kwargs = self._function_arguments()
        token = _CURRENT.set(self)
        try:
            return await self._func(*args, **kwargs)
        finally:
            _CURRENT.reset(token)

    def _prepare_replay(self) -> None:
        """(thread) Before an in-memory replay: every recorded launch is matched again from launch 0."""
        from plait.storage import get_backend

        self._call_counter = 0
        self._sleep_index = 0
        self._diverged = None
        self._recorded_children = {
            row["call_key"]: row["node_id"] for row in get_backend().get_children(self.pk) if row["call_key"]
        }

    def _restore(self, checkpoint: dict[str, Any] | None) -> None:
        """A workflow resumes from the top; its checkpoint holds only the wake times of its timers."""
        if checkpoint:
            self._sleeps = {str(k): float(v) for k, v in checkpoint.get("sleeps", {}).items()}

    def request_pause(self) -> None:
        super().request_pause()
        if self._wake_event is not None:
            self._wake_event.set()  # a sleeping workflow looks at the pause at once

    async def _before_launch(self) -> None:
        """Wait while a park is decided, then refuse to go on if it parked or diverged."""
        runner = self.runner
        assert runner is not None
        while self._committing is not None:
            await asyncio.shield(self._committing)
        runner.check_safe_point(self)  # a launch is a safe point: a kill or a pause takes effect here
        if self._pause_requested and not self._parked:
            await runner.pause_process(self)
        if self._parked:
            raise ProcessParked()
        if self._diverged is not None:
            raise self._diverged

    async def _launch(self, process: Any, inputs: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
        runner = self.runner
        assert runner is not None
        await self._before_launch()
        cls, merged = resolve_process(process, inputs, kwargs)
        try:
            self._check_replay(cls, cls.prepare_inputs(merged))
        except NonDeterminismError as exc:
            self._diverged = exc  # the launches after it in a gather stop too: nothing new is launched
            raise
        # no await between the check and the submission: the call key follows the launch order
        child = runner.submit_child(self, process, inputs, kwargs)
        assert child.pk is not None
        if not child.is_terminated:
            await self._wait_for(child.pk)
        return await runner.call_db(self, self._outputs_of, child.pk)

    async def _wait_for(self, pk: int) -> None:
        """Wait for child ``pk``: parked with the other waiting calls, or in memory."""
        runner = self.runner
        assert runner is not None
        future: asyncio.Future[None] = runner.loop.create_future()
        self._waits[pk] = future
        if self._settling is None:
            self._settling = runner.loop.create_task(self._settle(), name=f"plait-durable-{self.pk}")
        await future  # raises ProcessParked if the workflow parked
        await runner.wait_for_children(self, [pk])
        if not self._waits and self._settling is None and self.node.process_state is ProcessState.WAITING:
            await runner.call_db(self, self._commit_running)

    async def _settle(self) -> None:
        """Commit waiting for every call that waits now, and park if the host parks (a daemon)."""
        runner = self.runner
        assert runner is not None
        parked = False
        error: BaseException | None = None
        try:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            self._committing = runner.loop.create_future()
            parked = await runner.call_db(self, self._commit_waiting, list(self._waits))
        except BaseException as exc:  # a kill or a lost lease: every waiting call sees it
            error = exc
        waits, self._waits = self._waits, {}
        self._parked = self._parked or parked
        self._settling = None
        committing, self._committing = self._committing, None
        if committing is not None:
            committing.set_result(None)
        for future in waits.values():
            if future.done():
                continue
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            elif parked:
                future.set_exception(ProcessParked())
            else:
                future.set_result(None)

    def _commit_waiting(self, pks: list[int]) -> bool:
        """(thread) Commit waiting for ``pks``; True when the host parked the workflow meanwhile."""
        from plait.storage import get_backend

        runner = self.runner
        assert runner is not None
        if self._kill_message is not None or self._pause_requested:
            return False  # the kill or pause that interrupts the workflow now writes its row
        status = waiting_status(pks)
        with get_backend().transaction():
            self._commit(ProcessState.WAITING, status=status)
            return runner.park_with_checkpoint(self, pks, status)

    def _commit_running(self) -> None:
        self._commit(ProcessState.RUNNING, status=None)  # wake_at stays: when it was last due

    def _outputs_of(self, pk: int) -> Any:
        """(thread) The outputs of child ``pk``; raises if it did not finish ok."""
        node = load_node(pk)
        assert isinstance(node, ProcessNode)
        if not node.is_finished_ok:
            raise EngineError(
                f"child {node.process_label} (process {node.pk}) of durable workflow "
                f"{self.process_label_string()} ended {node.process_state.value}"
                + (f" with exit status {node.exit_status}" if node.exit_status else "")
            )
        outputs = {label: value for label, _, value in node.get_outgoing((LinkType.CREATE, LinkType.RETURN))}
        if list(outputs) == ["result"]:
            return outputs["result"]
        return _nest(outputs)

    async def _sleep(self, seconds: float) -> None:
        runner = self.runner
        assert runner is not None
        await self._before_launch()
        key = str(self._sleep_index)
        self._sleep_index += 1
        wake_at = self._sleeps.get(key)
        if wake_at is None:
            wake_at = time.time() + float(seconds)
            self._sleeps[key] = wake_at
        elif wake_at <= time.time():
            return  # a replayed timer whose time has passed: nothing to wait for
        await runner.call_db(self, self._commit_sleep, wake_at)
        try:
            await runner.sleep_until(self, wake_at)
        except ProcessParked:
            self._parked = True  # the other calls of this attempt end with it
            for future in self._waits.values():
                if not future.done():
                    future.set_exception(ProcessParked())
            raise
        finally:
            self._wake_event = None
        await runner.call_db(self, self._commit_running)

    def _commit_sleep(self, wake_at: float) -> None:
        """(thread) Commit the wake time (column and checkpoint) before the wait starts."""
        checkpoint = {
            "version": _CHECKPOINT_VERSION,
            "kind": "durable_workflow",
            "sleeps": dict(self._sleeps),
        }
        status = f"sleeping until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(wake_at))}"
        self._commit(
            ProcessState.WAITING, checkpoint=checkpoint, keep_history=False, status=status, wake_at=wake_at
        )

    def _check_replay(self, cls: type[Any], inputs: dict[str, Any]) -> None:
        """Refuse a replayed launch that differs from the one recorded at its position."""
        key = encode_call_key(self.pk, self._call_counter)
        pk = self._recorded_children.get(key)
        if pk is None:
            return
        recorded = load_node(pk)
        assert isinstance(recorded, ProcessNode)
        new_label = cls.process_label_string()
        differs = recorded.process_type != cls.process_type_string()
        if not differs:
            new = {k: v._compute_hash() for k, v in flatten_nodes(inputs, cls.spec().inputs).items()}
            old = {k: v._compute_hash() for k, v in _input_nodes(recorded)}
            differs = new != old
        if differs:
            raise NonDeterminismError(
                f"durable workflow {self.process_label_string()} (process {self.pk}): launch "
                f"{self._call_counter} was {recorded.process_label} (process {pk}) with its recorded inputs, "
                "the replay launches "
                f"{new_label} with other inputs or another class; launches must happen in the same order "
                "with the same inputs on every run (fix the code, then play the workflow)"
            )


def _input_nodes(node: ProcessNode) -> list[tuple[str, Node]]:
    return [
        (label, value)
        for label, _, value in node.get_incoming((LinkType.INPUT_CALC, LinkType.INPUT_WORK))
        if isinstance(value, Node)
    ]


async def call(process: Any, inputs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run ``process`` as a recorded child of the running durable workflow and return its outputs.

    Returns the ``result`` output node when that is the only output, else the
    dict of outputs.  On replay, a launch already recorded at this position
    returns the recorded child's outputs without running it again.  Inside a
    workflow ``await plait.arun(process, ...)`` means the same.

    Raises:
        EngineError: not awaited inside a running ``@workflow`` function, or the child did not
            finish ok.
        NonDeterminismError: the replay launches another class or other inputs at a recorded position.
    """
    parent = _CURRENT.get()
    if parent is None or parent.runner is None:
        raise EngineError("plait.call() is awaited inside a running @plait.workflow function")
    return await parent._launch(process, inputs, kwargs)


async def sleep(seconds: float) -> None:
    """A durable timer: ``await plait.sleep(60)`` in a ``@workflow`` (or an async work chain step).

    The wake time is committed before the wait starts, so it survives a crash or
    a daemon restart: the replay reaches the same sleep and waits only for the
    time left.  A daemon worker parks the workflow until then (no slot held); a
    paused workflow does not wake until played; a kill ends it while it sleeps.

    Raises:
        ValueError: ``seconds`` is negative, not finite or not a number.
        EngineError: awaited outside a running workflow or async work chain step.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValueError(f"sleep(seconds): expected a finite number of seconds, got {seconds!r}")
    if seconds < 0:
        raise ValueError(f"sleep(seconds): seconds must not be negative, got {seconds!r}")
    parent = _CURRENT.get()
    if parent is not None and parent.runner is not None:
        await parent._sleep(seconds)
        return
    from plait.engine.context import current_process
    from plait.engine.workchain import WorkChain

    chain = current_process()
    if isinstance(chain, WorkChain):
        await chain.sleep(seconds)
        return
    raise EngineError(
        "plait.sleep() is awaited inside a running @plait.workflow function or an async work chain step"
    )


class DurableWorkflow(ProcessFunction):
    """What ``@workflow`` returns: launch it with ``plait.run``/``arun``/``submit`` like any process."""

    def run_get_node(self, *args: Any, **kwargs: Any) -> tuple[Any, ProcessNode]:
        from plait.engine.launch import run_get_node

        return run_get_node(self.process_class, self._bind(args, kwargs))

    def __repr__(self) -> str:
        func = self.__wrapped__
        return f"<workflow {func.__module__}.{func.__qualname__}>"


def workflow(func: F) -> F:
    """Decorate an ``async def`` as a durable workflow: resumed by replay, each launch recorded once.

    Raises:
        TypeError: ``func`` is not an ``async def``.
    """
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"@workflow decorates an async def; {func.__qualname__} is a plain function")
    wrapper = DurableWorkflow(func, WorkFunctionNode)
    wrapper.process_class = type(
        wrapper.process_class.__name__,
        (DurableWorkflowProcess,),
        {
            k: wrapper.process_class.__dict__[k]
            for k in ("_func", "_signature", "_var_keyword", "_var_positional", "_node_class")
        }
        | {"__module__": func.__module__, "__qualname__": func.__qualname__},
    )
    return wrapper  # type: ignore[return-value]
