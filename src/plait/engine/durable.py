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
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from plait.engine.exit_code import ExitCode
from plait.engine.lifecycle import EngineError, encode_call_key
from plait.engine.ports import flatten_nodes
from plait.engine.process_function import FunctionProcess, ProcessFunction
from plait.engine.resolve import resolve_process
from plait.orm import LinkType, Node, ProcessNode, WorkFunctionNode, load_node

__all__ = ["DurableWorkflow", "NonDeterminismError", "call", "current_workflow", "workflow"]

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: contextvars.ContextVar[DurableWorkflowProcess | None] = contextvars.ContextVar(
    "plait_durable_workflow", default=None
)


class NonDeterminismError(EngineError):
    """A replayed durable workflow launched something else than it did before at a recorded position."""


def current_workflow() -> DurableWorkflowProcess | None:
    """The durable workflow whose coroutine is running in this task, or None."""
    return _CURRENT.get()


class DurableWorkflowProcess(FunctionProcess):
    """The process class generated for one ``@workflow`` function: runs the coroutine on the loop."""

    def _node_attributes(self, non_db: dict[str, Any]) -> dict[str, Any]:
        attributes = super()._node_attributes(non_db)
        attributes["durable_workflow"] = True
        return attributes

    async def _execute(self) -> ExitCode | None:
        args, kwargs = self._function_arguments()
        token = _CURRENT.set(self)
        try:
            result = await self._func(*args, **kwargs)
        finally:
            _CURRENT.reset(token)
        return await self.runner.call_db(self, self._register_result, result)  # type: ignore[union-attr]

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
    returns the recorded child's outputs without running it again.

    Raises:
        EngineError: not awaited inside a running ``@workflow`` function, or the child did not
            finish ok.
        NonDeterminismError: the replay launches another class or other inputs at a recorded position.
    """
    parent = _CURRENT.get()
    if parent is None or parent.runner is None:
        raise EngineError("plait.call() is awaited inside a running @plait.workflow function")
    cls, merged = resolve_process(process, inputs, kwargs)
    parent._check_replay(cls, cls.prepare_inputs(merged))
    launched = parent.runner.submit_child(parent, process, inputs, kwargs)  # started now: order is kept
    await parent.runner.wait_for_children(parent, [launched.pk])  # type: ignore[list-item]
    node = load_node(launched.pk)
    assert isinstance(node, ProcessNode)
    if not node.is_finished_ok:
        raise EngineError(
            f"child {node.process_label} (process {node.pk}) of durable workflow "
            f"{parent.process_label_string()} ended {node.process_state.value}"
            + (f" with exit status {node.exit_status}" if node.exit_status else "")
        )
    outputs = {label: value for label, _, value in node.get_outgoing((LinkType.CREATE, LinkType.RETURN))}
    if list(outputs) == ["result"]:
        return outputs["result"]
    from plait.engine.process_function import _nest

    return _nest(outputs)


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
