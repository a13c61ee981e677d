"""Work chains: workflows written as an outline of steps, checkpointed after every step.

::

    class Relax(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.input("structure", valid_type=Dict)
            spec.output("energy", valid_type=Float)
            spec.exit_code(300, "ERROR_NOT_CONVERGED", "not converged after {n} iterations")
            spec.outline(
                cls.setup,
                while_(cls.not_converged)(cls.run_scf, cls.inspect),
                if_(cls.failed)(return_(300)),
                cls.finalize,
            )

        def run_scf(self):
            return ToContext(scf=self.submit(Scf, structure=self.inputs.structure))

Steps are methods, plain or ``async def``.  A plain step runs in a worker
thread (so slow user code never blocks the event loop) and may call
calcfunctions and even ``plait.run``; an ``async def`` step runs on the loop
and may ``await``.  Conditions (of ``if_`` and ``while_``) must be quick,
pure functions of the context: they run on the loop and are evaluated again
on resume.

Children launched with :meth:`WorkChain.submit` in one step run
concurrently; the chain goes on to the next step when every child it put in
the context (``ToContext``/``to_context``) has terminated.  After each step
the context, the position in the outline and the awaited children are
committed as a checkpoint, so a chain whose interpreter dies continues from
its last step with :func:`plait.resume`.

Durable timers: ``await self.sleep(seconds)`` in an ``async def`` step waits
until a wake time that is committed before the wait starts (the ``wake_at``
column and the step's checkpoint).  A step that is run again after a crash,
a daemon restart or a pause reaches the same sleep (sleeps are counted in
the step, as launches are) and waits only for what is left.  In a daemon
worker the sleeping chain is parked: no lease, no slot, no memory.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from plait.engine import lifecycle
from plait.engine.checkpoint import CHECKPOINT_VERSION, AttributeDict, decode, encode
from plait.engine.exit_code import ExitCode
from plait.engine.lifecycle import EngineError
from plait.engine.process import Process, _backend
from plait.engine.spec import ProcessSpec
from plait.orm import Node, ProcessNode, ProcessState, WorkChainNode, load_node

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder

__all__ = ["ToContext", "WorkChain", "append_", "if_", "return_", "while_"]


class ToContext(dict):
    """Returned from a step: ``ToContext(name=child_node)`` waits for the child, then sets ``ctx.name``."""


class append_:
    """Wrap a child for ``ToContext``/``to_context`` so it is appended to a list in the context."""

    def __init__(self, target: ProcessNode) -> None:
        self.target = target


# -- the outline -------------------------------------------------------------------------------------


class _Conditional:
    def __init__(self, kind: str, condition: Callable[..., Any]) -> None:
        self.kind = kind
        self.condition = condition
        self.body: tuple[Any, ...] | None = None

    def __call__(self, *body: Any) -> Any:
        if self.body is not None:
            raise TypeError(f"{self.kind}(...) already has its body")
        self.body = body
        return self._owner()

    def _owner(self) -> Any:
        return self


class _If:
    """``if_(cond)(*steps).elif_(cond)(*steps).else_(*steps)``."""

    def __init__(self, condition: Callable[..., Any]) -> None:
        self.branches: list[_Conditional] = [_IfBranch(self, "if_", condition)]
        self.else_body: tuple[Any, ...] | None = None

    def __call__(self, *body: Any) -> _If:
        return self.branches[0](*body)

    def elif_(self, condition: Callable[..., Any]) -> _IfBranch:
        branch = _IfBranch(self, "elif_", condition)
        self.branches.append(branch)
        return branch

    def else_(self, *body: Any) -> _If:
        self.else_body = body
        return self


class _IfBranch(_Conditional):
    def __init__(self, owner: _If, kind: str, condition: Callable[..., Any]) -> None:
        super().__init__(kind, condition)
        self.owner = owner

    def _owner(self) -> _If:
        return self.owner


class _While(_Conditional):
    pass


class _Return:
    def __init__(self, exit_code: ExitCode | int | str | None = None) -> None:
        self.exit_code = exit_code

    def __call__(self, exit_code: ExitCode | int | str) -> _Return:
        return _Return(exit_code)


def if_(condition: Callable[..., Any]) -> _If:
    """Run the body when ``condition(self)`` is true; chain ``.elif_(...)`` and ``.else_(...)``."""
    return _If(condition)


def while_(condition: Callable[..., Any]) -> _While:
    """Run the body again and again while ``condition(self)`` is true."""
    return _While("while_", condition)


#: end the work chain here: ``return_`` (success) or ``return_(exit_code | status | label)``.
return_ = _Return()

# compiled program operations
_CALL, _JUMP_IF_NOT, _JUMP, _RETURN, _END = "call", "jump_if_not", "jump", "return", "end"


def _compile(outline: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Flatten the outline into a program of calls and jumps; a position is just an index."""
    program: list[list[Any]] = []

    def emit(block: Sequence[Any]) -> None:
        for instruction in block:
            if isinstance(instruction, _If):
                end_jumps = []
                for branch in instruction.branches:
                    if branch.body is None:
                        raise TypeError(f"{branch.kind}({_name(branch.condition)}) has no body: add (...)")
                    _check_takes_self(branch.condition, "predicate")
                    test = len(program)
                    program.append([_JUMP_IF_NOT, branch.condition, None])
                    emit(branch.body)
                    end_jumps.append(len(program))
                    program.append([_JUMP, None])
                    program[test][2] = len(program)
                if instruction.else_body is not None:
                    emit(instruction.else_body)
                for index in end_jumps:
                    program[index][1] = len(program)
            elif isinstance(instruction, _While):
                if instruction.body is None:
                    raise TypeError(f"while_({_name(instruction.condition)}) has no body: add (...)")
                _check_takes_self(instruction.condition, "predicate")
                start = len(program)
                program.append([_JUMP_IF_NOT, instruction.condition, None])
                emit(instruction.body)
                program.append([_JUMP, start])
                program[start][2] = len(program)
            elif isinstance(instruction, _Return):
                program.append([_RETURN, instruction.exit_code])
            elif callable(instruction):
                _check_takes_self(instruction, "step")
                program.append([_CALL, instruction])
            else:
                raise TypeError(
                    f"{instruction!r} in the outline is not a step, if_, while_ or return_: give the "
                    "method itself (cls.step, not cls.step() or its name)"
                )

    emit(outline)
    program.append([_END])
    return [tuple(op) for op in program]


def _check_takes_self(fn: Any, kind: str) -> None:
    """Refuse a step or predicate that cannot be called with the work chain alone.

    Raises:
        TypeError: not callable, or its signature does not take exactly ``self``.
    """
    if not callable(fn):
        raise TypeError(f"the {kind} {fn!r} in the outline is not callable: give a method (cls.name)")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: it is called as is
    try:
        signature.bind(object())
    except TypeError:
        raise TypeError(
            f"the {kind} {_name(fn)}{signature} in the outline needs a signature that takes only self "
            f"(def {_name(fn)}(self): ...)"
        ) from None


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))


def _fingerprint(program: list[tuple[Any, ...]]) -> str:
    text = "|".join(",".join(_name(part) if callable(part) else repr(part) for part in op) for op in program)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# -- the work chain ------------------------------------------------------------------------------------


class WorkChain(Process):
    """A workflow of outline steps with a checkpointed context (``self.ctx``)."""

    _node_class = WorkChainNode
    _program_cache: ClassVar[tuple[list[tuple[Any, ...]], str] | None] = None

    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        super().define(spec)

    @classmethod
    def _launch_problem(cls) -> str | None:
        if cls is WorkChain:
            return "WorkChain is a base class: launch a subclass whose define() declares spec.outline(...)"
        if not cls.spec().get_outline():
            return f"{cls.__name__}.define() must declare spec.outline(...)"
        return super()._launch_problem()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Build the spec and check the outline when the class is defined, so a mistake in
        ``define`` (a non-callable step, a predicate with the wrong signature, a missing
        ``super().define(spec)``) is an error at once, not at the first launch."""
        super().__init_subclass__(**kwargs)
        if cls.spec().get_outline():
            cls._program()

    @classmethod
    def _program(cls) -> tuple[list[tuple[Any, ...]], str]:
        cached = cls.__dict__.get("_program_cache")
        if cached is None:
            outline = cls.spec().get_outline()
            if not outline:
                raise TypeError(f"{cls.__name__}.define() must declare spec.outline(...)")
            program = _compile(outline)
            cached = (program, _fingerprint(program))
            cls._program_cache = cached
        return cached

    def __init__(self, inputs: Any, **kwargs: Any) -> None:
        super().__init__(inputs, **kwargs)
        self.ctx = AttributeDict()
        self._pc = 0
        self._awaiting: list[dict[str, Any]] = []
        self._parked = False  # parked in the commit of the last step (daemon placement)
        #: the checkpoint the current step started from (None: the chain's start), for durable sleeps
        self._step_checkpoint: dict[str, Any] | None = None
        #: ``{index: wake time}`` of the sleeps the current step committed, and the next index
        self._sleeps: dict[str, float] = {}
        self._sleep_index = 0
        self._in_async_step = False

    # -- user API ----------------------------------------------------------------------------
    def to_context(self, **targets: ProcessNode | append_) -> None:
        """Wait for these children after the current step and put them in the context.

        ``self.to_context(scf=node)`` sets ``ctx.scf``; ``to_context(runs=append_(node))``
        appends to the list ``ctx.runs``.  A dotted key (``"a.b"``) nests.
        """
        for key, target in targets.items():
            append = isinstance(target, append_)
            node = target.target if isinstance(target, append_) else target
            if not isinstance(node, ProcessNode) or not node.is_stored:
                raise TypeError(
                    f"to_context({key}=...): expected the process node returned by self.submit(), got "
                    f"{node!r}"
                )
            self._awaiting.append({"pk": node.pk, "key": key, "append": append})

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a durable timer), in an ``async def`` step: ``await self.sleep(60)``.

        The wake time is committed before the wait starts, so the wait survives a crash or a
        daemon restart: the step runs again from its start (as any interrupted step does), its
        launches are matched to the children made before, and each sleep it reaches again waits
        only for the time left.  A pause stops the timer from waking the chain until it is played
        (then it wakes at once if its time has passed); a kill ends it while it sleeps.

        Raises:
            ValueError: ``seconds`` is negative, not finite or not a number.
            EngineError: not awaited inside an ``async def`` step of a running work chain.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError(f"sleep(seconds): expected a finite number of seconds, got {seconds!r}")
        if seconds < 0:
            raise ValueError(f"sleep(seconds): seconds must not be negative, got {seconds!r}")
        runner = self.runner
        if runner is None or not self._in_async_step:
            raise EngineError(
                "self.sleep() is awaited inside an async def step of a running work chain "
                "(a plain step cannot wait: split it, and make the step that sleeps async)"
            )
        key = str(self._sleep_index)
        self._sleep_index += 1
        wake_at = self._sleeps.get(key)
        if wake_at is None:
            wake_at = time.time() + float(seconds)
            self._sleeps[key] = wake_at
            await runner.call_db(self, self._commit_sleep, wake_at)
        await runner.sleep_until(self, wake_at)
        await runner.call_db(self, self._commit_woken)

    def _commit_sleep(self, wake_at: float) -> None:
        """Commit the wake time: the step's starting checkpoint with this step's sleeps, waiting."""
        if self._step_checkpoint is not None:
            checkpoint = dict(self._step_checkpoint)
        else:  # the chain's first step: nothing was checkpointed yet
            _, fingerprint = self._program()
            checkpoint = {
                "version": CHECKPOINT_VERSION,
                "kind": "workchain",
                "pc": self._pc,
                "outline": fingerprint,
                "ctx": {},
                "awaiting": [],
                "calls": 0,
            }
        checkpoint["sleeps"] = dict(self._sleeps)
        status = f"sleeping until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(wake_at))}"
        self._commit(
            ProcessState.WAITING, checkpoint=checkpoint, keep_history=False, status=status, wake_at=wake_at
        )

    def _commit_woken(self) -> None:
        self._commit(ProcessState.RUNNING, status=None)  # wake_at stays: when it was due

    def request_pause(self) -> None:
        super().request_pause()
        event = getattr(self, "_wake_event", None)
        if event is not None:
            event.set()  # a sleeping chain looks at the pause at once

    def submit(
        self, process: Any, inputs: dict[str, Any] | ProcessBuilder | None = None, **kwargs: Any
    ) -> ProcessNode:
        """Launch a child process that runs concurrently; returns its node at once.

        Raises:
            InputValidationError: the child's inputs are refused (nothing stored).
        """
        if self.runner is None:
            raise EngineError("this work chain is not running on a runner")
        return self.runner.submit_child(self, process, inputs, kwargs)

    # -- checkpoint -------------------------------------------------------------------------------
    def _make_checkpoint(self) -> dict[str, Any]:
        _, fingerprint = self._program()
        ctx = {key: encode(value, f"ctx.{key}") for key, value in self.ctx.items()}
        return {
            "version": CHECKPOINT_VERSION,
            "kind": "workchain",
            "pc": self._pc,
            "outline": fingerprint,
            "ctx": ctx,
            "awaiting": list(self._awaiting),
            "calls": self._call_counter,
        }

    def _restore(self, checkpoint: dict[str, Any] | None) -> None:
        if not checkpoint:
            return
        if checkpoint.get("version") != CHECKPOINT_VERSION:
            raise lifecycle.NotResumableError(
                f"checkpoint version {checkpoint.get('version')} of process {self.pk} is not supported "
                f"by this plait (version {CHECKPOINT_VERSION})"
            )
        _, fingerprint = self._program()
        if checkpoint.get("outline") != fingerprint:
            raise lifecycle.NotResumableError(
                f"the outline of {type(self).__name__} changed since process {self.pk} was checkpointed; "
                "it cannot be resumed with this code"
            )
        self._pc = int(checkpoint["pc"])
        self.ctx = AttributeDict({k: decode(v, load_node) for k, v in checkpoint.get("ctx", {}).items()})
        self._awaiting = list(checkpoint.get("awaiting", []))
        self._call_counter = int(checkpoint.get("calls", self._call_counter))
        self._sleeps = {str(k): float(v) for k, v in checkpoint.get("sleeps", {}).items()}
        self._step_checkpoint = {k: v for k, v in checkpoint.items() if k != "sleeps"}

    # -- running -----------------------------------------------------------------------------------
    def _condition(self, fn: Callable[..., Any]) -> bool:
        result = fn(self)
        if inspect.isawaitable(result):
            raise TypeError(f"condition {_name(fn)} must be a plain function (it returned an awaitable)")
        if not isinstance(result, bool):
            warnings.warn(
                f"{type(self).__name__}: the predicate {_name(fn)} returned {type(result).__name__}, not a "
                "bool; its truth value is used (return a bool to silence this)",
                UserWarning,
                stacklevel=2,
            )
        return bool(result)

    async def _execute(self) -> ExitCode | None:
        program, _ = self._program()
        while True:
            if self._awaiting:
                await self._resolve_awaiting()
            op = program[self._pc]
            kind = op[0]
            if kind == _JUMP_IF_NOT:
                self._pc = self._pc + 1 if self._condition(op[1]) else op[2]
            elif kind == _JUMP:
                self._pc = op[1]
            elif kind == _END:
                return None
            elif kind == _RETURN:
                return self._exit_code_from(op[1])
            else:
                fn = op[1]
                self._step_name = _name(fn)
                self.runner.check_safe_point(self)  # type: ignore[union-attr]
                self._sleep_index = 0
                if inspect.iscoroutinefunction(fn):
                    self._in_async_step = True
                    try:
                        result = await fn(self)
                    finally:
                        self._in_async_step = False
                    exit_code = await self.runner.call_db(self, self._conclude_step, fn, result)  # type: ignore[union-attr]
                else:
                    # one thread hop per step: the step's thread commits its checkpoint right after it
                    exit_code = await self.runner.call_in_thread(self, self._run_step, fn)  # type: ignore[union-attr]
                if exit_code is not None or self._terminated:
                    return exit_code
                if self._parked:
                    raise lifecycle.ProcessParked()
                await self.runner.after_checkpoint(self)  # type: ignore[union-attr]

    def _run_step(self, fn: Callable[..., Any]) -> ExitCode | None:
        """Run a synchronous step, then conclude it (in the step's thread)."""
        return self._conclude_step(fn, fn(self))

    def _conclude_step(self, fn: Callable[..., Any], result: Any) -> ExitCode | None:
        """Interpret what the step returned and commit its checkpoint (waiting or running)."""
        self._pc += 1
        self._sleeps = {}  # the next step starts with no sleeps of its own
        exit_code = self._handle_step_result(fn, result)
        if exit_code is not None:
            return exit_code
        program, _ = self._program()
        checkpoint = self._make_checkpoint()  # refuses a bad context value at the step that set it
        self._settle_unrepeated_calls()
        if not self._awaiting and program[self._pc][0] == _END:
            self._finish(None)  # the last step: finish in the same commit round trip
            return None
        if self._awaiting:
            pks = [item["pk"] for item in self._awaiting]
            self._parked = self._commit_waiting_for(pks, checkpoint=checkpoint)
        else:
            self._commit(ProcessState.RUNNING, checkpoint=checkpoint, status=None)
        self._step_checkpoint = checkpoint
        return None

    def _settle_unrepeated_calls(self) -> None:
        """After a re-run step: end the calls of the interrupted attempt that this attempt did not repeat.

        A process function (or anything not submitted to the daemon) can only
        run inside the step that called it; if the step did not call it
        again, nobody ever will, so it is ended excepted instead of being left
        active with no holder.  Submitted children run on their own.
        """
        leftover = getattr(self, "_recorded_children", None)
        if not leftover:
            return
        for key, pk in list(leftover.items()):
            row = _backend().get_process(pk)
            if row is not None and not row["submitted"] and row["state"] in lifecycle.ACTIVE_STATES:
                lifecycle.end_abandoned(
                    pk,
                    self.pk,
                    self._owner,
                    ProcessState.EXCEPTED,
                    log=f"excepted: the re-run of step {self._step_name} of {self.pk} did not call it again",
                    exception=f"interrupted: its caller's step was re-run and did not call it again ({key})",
                )
            del leftover[key]

    def _handle_step_result(self, fn: Callable[..., Any], result: Any) -> ExitCode | None:
        if result is None:
            return None
        if isinstance(result, ToContext):
            self.to_context(**result)
            return None
        if isinstance(result, ExitCode):
            return result if result.status != 0 else None
        if isinstance(result, int) and not isinstance(result, bool) and result >= 0:
            if result == 0:
                return None  # as aiida-core: zero is success, the outline goes on
            return (
                self.exit_codes(result) if result in {c.status for c in self.exit_codes} else ExitCode(result)
            )
        raise TypeError(
            f"step {_name(fn)} returned {type(result).__name__} {result!r}: a step returns None, "
            "ToContext(...), an ExitCode (self.exit_codes.LABEL) or a positive exit status"
        )

    def _exit_code_from(self, value: ExitCode | int | str | None) -> ExitCode | None:
        if value is None or isinstance(value, ExitCode):
            return value
        return self.exit_codes(value)

    async def _resolve_awaiting(self) -> None:
        """Wait for every awaited child, put it in the context, and commit running."""
        pks = [item["pk"] for item in self._awaiting]
        await self.runner.wait_for_children(self, pks)  # type: ignore[union-attr]
        await self.runner.call_db(self, self._resolve_and_commit)  # type: ignore[union-attr]

    def _resolve_and_commit(self) -> None:
        for item in self._awaiting:
            node = load_node(item["pk"])
            self._set_ctx(item["key"], node, item["append"])
        self._awaiting = []
        checkpoint = self._make_checkpoint()
        self._commit(ProcessState.RUNNING, checkpoint=checkpoint, status=None)
        self._step_checkpoint = checkpoint

    def _set_ctx(self, key: str, value: Node, append: bool) -> None:
        parts = key.split(".")
        target: Any = self.ctx
        for part in parts[:-1]:
            if part not in target:
                target[part] = AttributeDict()
            target = target[part]
        if append:
            existing = target[parts[-1]] if parts[-1] in target else []
            target[parts[-1]] = [*existing, value]
        else:
            target[parts[-1]] = value
