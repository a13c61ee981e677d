"""A work chain that runs one process again and again until it succeeds, fixing it through handlers.

Nearly every plugin's base work chain (a ``PwBaseWorkChain``) has this
shape, as in aiida-core::

    class AddBase(BaseRestartWorkChain):
        _process_class = ArithmeticAddCalculation

        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.expose_inputs(ArithmeticAddCalculation, namespace="add")
            spec.expose_outputs(ArithmeticAddCalculation)
            spec.outline(
                cls.setup,
                while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
                cls.results,
            )

        def setup(self):
            super().setup()
            self.ctx.inputs = self.exposed_inputs(ArithmeticAddCalculation, "add")

        @process_handler(priority=100, exit_codes=ArithmeticAddCalculation.exit_codes.ERROR_NEGATIVE_NUMBER)
        def handle_negative(self, node):
            self.ctx.inputs.x = abs(node.inputs["x"].value)
            return ProcessHandlerReport()

Each iteration :meth:`~BaseRestartWorkChain.run_process` submits
``_process_class`` with ``ctx.inputs``; :meth:`~BaseRestartWorkChain.inspect_process`
calls the enabled handlers, highest priority first, on the finished child.
A handler returns None (not its problem) or a :class:`ProcessHandlerReport`:
it changed ``ctx.inputs`` and the child runs again (exit status 0), or the
chain stops with the report's exit code; ``do_break`` skips the handlers
after it.  Every handler that acts leaves a report line.

Everything the loop keeps between iterations is in ``self.ctx``, which is
checkpointed after every step, so a chain survives its worker dying.  The
context holds JSON values and *stored* nodes only: put plain values in
``ctx.inputs`` (``ctx.inputs.x = 5``; the child's port wraps it into an
``Int`` when it is launched) or nodes made by a calcfunction.

What plait does as aiida-core 2.8: the inputs ``max_iterations``,
``clean_workdir``, ``handler_overrides``, ``on_unhandled_failure`` (``abort``,
the default, ``pause``, ``restart_once``, ``restart_and_pause``) and
``pause_on_max_iterations``; the exit codes 301, 302, 401, 402; the call
link labels ``iteration_01``...  Where it differs: the handlers considered
are written to the report, not to a ``considered_handlers`` extra; a
handler override given as a bare bool is accepted without a deprecation
warning; a chain that pauses itself is played with ``plait process play``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from plait.engine.exit_code import ExitCode
from plait.engine.workchain import ToContext, WorkChain, append_
from plait.orm import Bool, CalcJobNode, Dict, Int, Node, ProcessNode, Str

if TYPE_CHECKING:
    from plait.engine.process import Process
    from plait.engine.spec import ProcessSpec

__all__ = ["BaseRestartWorkChain", "ProcessHandlerReport", "process_handler"]

LOGGER = logging.getLogger("plait.restart")

#: what ``on_unhandled_failure`` may say (aiida-core 2.8); ``abort`` is the default
UNHANDLED_FAILURE_ACTIONS = ("abort", "pause", "restart_once", "restart_and_pause")


class ProcessHandlerReport(NamedTuple):
    """What a process handler returns when it dealt with the finished child.

    ``exit_code`` with status 0 (the default): the problem is fixed in
    ``ctx.inputs``, run the child again.  A non-zero ``exit_code``: stop the
    chain with it.  ``do_break``: call no further handler for this child.
    """

    do_break: bool = False
    exit_code: ExitCode = ExitCode(0)


class _HandlerInfo(NamedTuple):
    priority: int
    enabled: bool
    exit_statuses: tuple[int, ...] | None


def process_handler(
    wrapped: Callable[..., Any] | None = None,
    *,
    priority: int = 0,
    exit_codes: ExitCode | list[ExitCode] | tuple[ExitCode, ...] | None = None,
    enabled: bool = True,
) -> Any:
    """Mark a method ``(self, node)`` of a :class:`BaseRestartWorkChain` as a process handler.

    Args:
        priority: handlers are called highest priority first.
        exit_codes: call the handler only when the child finished with one of these.
        enabled: off by default when False (``handler_overrides`` switches it per launch).

    Raises:
        TypeError: used on something that is not a function of ``(self, node)``, or a keyword of
            the wrong type (when the class is defined).
    """
    if wrapped is None:
        return functools.partial(process_handler, priority=priority, exit_codes=exit_codes, enabled=enabled)
    if not inspect.isfunction(wrapped):
        raise TypeError(
            f"process_handler decorates a method (self, node), got {wrapped!r}; give its options as "
            "keywords: @process_handler(priority=..., exit_codes=[...])"
        )
    name = wrapped.__name__
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"process handler {name}: priority must be an int, got {priority!r}")
    if not isinstance(enabled, bool):
        raise TypeError(f"process handler {name}: enabled must be a bool, got {enabled!r}")
    codes = [exit_codes] if isinstance(exit_codes, ExitCode) else exit_codes
    if codes is not None:
        if not isinstance(codes, (list, tuple)) or not all(isinstance(code, ExitCode) for code in codes):
            raise TypeError(
                f"process handler {name}: exit_codes must be an ExitCode or a list of them (e.g. "
                f"Child.exit_codes.ERROR_X), got {exit_codes!r}"
            )
    parameters = list(inspect.signature(wrapped).parameters.values())
    if len(parameters) != 2 or any(
        p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters
    ):
        raise TypeError(
            f"process handler {name} must take (self, node), it takes {inspect.signature(wrapped)}"
        )
    statuses = tuple(code.status for code in codes) if codes is not None else None

    @functools.wraps(wrapped)
    def handler(self: BaseRestartWorkChain, node: ProcessNode) -> ProcessHandlerReport | None:
        if statuses is not None and node.exit_status not in statuses:
            return None
        return wrapped(self, node)

    handler._process_handler = _HandlerInfo(priority, enabled, statuses)  # type: ignore[attr-defined]
    return handler


def _handler_info(value: Any) -> _HandlerInfo | None:
    info = getattr(value, "_process_handler", None)
    return info if isinstance(info, _HandlerInfo) else None


def validate_on_unhandled_failure(value: Str | None) -> str | None:
    """Refuse an ``on_unhandled_failure`` that is not one of :data:`UNHANDLED_FAILURE_ACTIONS`."""
    if value is None or value.value in UNHANDLED_FAILURE_ACTIONS:
        return None
    return f"'{value.value}' is not one of {', '.join(UNHANDLED_FAILURE_ACTIONS)}"


def validate_handler_overrides(process_class: type[BaseRestartWorkChain], value: Dict | None) -> str | None:
    """Refuse overrides that name no handler of ``process_class`` or say something else than
    ``bool`` or ``{"enabled": bool, "priority": int}``."""
    if value is None:
        return None
    names = sorted(process_class.get_process_handlers())
    for name, override in value.get_dict().items():
        if name not in names:
            known = ", ".join(names) or "none"
            return f"'{name}' is not a process handler of {process_class.__name__} (its handlers: {known})"
        if isinstance(override, bool):
            continue
        if not isinstance(override, dict):
            return (
                f"the override of '{name}' must be a bool or a dict with 'enabled' and/or 'priority', "
                f"got {override!r}"
            )
        unknown = sorted(set(override) - {"enabled", "priority"})
        if unknown:
            return f"the override of '{name}' has keys {unknown}; only 'enabled' and 'priority' are known"
        if "enabled" in override and not isinstance(override["enabled"], bool):
            return f"the override of '{name}': enabled must be a bool, got {override['enabled']!r}"
        priority = override.get("priority")
        if "priority" in override and (not isinstance(priority, int) or isinstance(priority, bool)):
            return f"the override of '{name}': priority must be an int, got {priority!r}"
    return None


def _copy_mappings(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the nested mappings of ``values`` (the nodes and plain values inside are shared)."""
    return {
        key: _copy_mappings(value) if isinstance(value, Mapping) and not isinstance(value, Node) else value
        for key, value in values.items()
    }


class BaseRestartWorkChain(WorkChain):
    """Run ``_process_class`` until it succeeds, calling the process handlers after each failure.

    Subclasses set ``_process_class``, declare an outline around
    :meth:`setup`, :meth:`should_run_process`, :meth:`run_process`,
    :meth:`inspect_process` and :meth:`results`, and put the child's inputs in
    ``self.ctx.inputs`` in their ``setup``.  See the module docstring.
    """

    #: the process run in the loop
    _process_class: ClassVar[type[Process] | None] = None

    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        super().define(spec)
        spec.input(
            "max_iterations",
            valid_type=Int,
            default=lambda: Int(5),
            help="how many times the process is run at most before the chain gives up",
        )
        spec.input(
            "clean_workdir",
            valid_type=Bool,
            default=lambda: Bool(False),
            help="when the chain terminates, remove the work folders of the calculation jobs it ran",
        )
        spec.input(
            "handler_overrides",
            valid_type=Dict,
            required=False,
            validator=functools.partial(validate_handler_overrides, cls),
            help="{handler: bool} or {handler: {'enabled': bool, 'priority': int}}: switch handlers "
            "per launch",
        )
        spec.input(
            "on_unhandled_failure",
            valid_type=Str,
            required=False,
            validator=validate_on_unhandled_failure,
            help="what a failure no handler deals with does: abort (default), pause, restart_once, "
            "restart_and_pause",
        )
        spec.input(
            "pause_on_max_iterations",
            valid_type=Bool,
            required=False,
            help="pause instead of stopping when max_iterations is reached (played: the count starts again)",
        )
        spec.exit_code(301, "ERROR_SUB_PROCESS_EXCEPTED", "the sub process excepted")
        spec.exit_code(302, "ERROR_SUB_PROCESS_KILLED", "the sub process was killed")
        spec.exit_code(
            401, "ERROR_MAXIMUM_ITERATIONS_EXCEEDED", "the maximum number of iterations was exceeded"
        )
        spec.exit_code(402, "ERROR_UNHANDLED_FAILURE", "the process failed with an unhandled failure")

    def __init__(self, inputs: Any, **kwargs: Any) -> None:
        _ = self.process_class  # refuse a class without _process_class before anything is stored
        super().__init__(inputs, **kwargs)

    @property
    def process_class(self) -> type[Process]:
        """The process run in the loop.

        Raises:
            ValueError: the class did not set ``_process_class`` to a process class.
        """
        from plait.engine.expose import process_class_of
        from plait.engine.process import Process

        cls = process_class_of(type(self)._process_class)
        if not isinstance(cls, type) or not issubclass(cls, Process):
            raise ValueError(
                f"{type(self).__name__}._process_class must be the process class to run, got {cls!r}"
            )
        return cls

    # -- handlers ------------------------------------------------------------------------------------
    @classmethod
    def get_process_handlers(cls) -> dict[str, Callable[..., Any]]:
        """The process handlers of this class by name (those of parent classes included)."""
        handlers: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if _handler_info(value) is not None:
                    handlers[name] = value
                elif name in handlers:
                    del handlers[name]  # overridden by a plain method
        return handlers

    @classmethod
    def is_process_handler(cls, name: str) -> bool:
        return name in cls.get_process_handlers()

    def get_process_handlers_by_priority(self) -> list[tuple[int, str, Callable[..., Any]]]:
        """The enabled handlers with their priorities (``handler_overrides`` applied), highest first;
        handlers of one priority in the order of their names."""
        overrides = self.ctx.get("handler_overrides", {})
        chosen = []
        for name, handler in self.get_process_handlers().items():
            info = _handler_info(handler)
            assert info is not None
            override = overrides.get(name, {})
            if isinstance(override, bool):
                override = {"enabled": override}
            if not override.get("enabled", info.enabled):
                continue
            chosen.append((int(override.get("priority", info.priority)), name, handler))
        chosen.sort(key=lambda item: (-item[0], item[1]))
        return chosen

    # -- the outline steps ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Start the loop's context; a subclass calls it, then sets ``self.ctx.inputs``."""
        overrides = self.inputs.get("handler_overrides")
        self.ctx.handler_overrides = overrides.get_dict() if overrides is not None else {}
        self.ctx.process_name = self.process_class.process_label_string()
        self.ctx.unhandled_failure = False
        self.ctx.is_finished = False
        self.ctx.iteration = 0
        self.ctx.children = []

    def should_run_process(self) -> bool:
        """Run (again) until the last child succeeded with no handler acting on it."""
        return not self.ctx.is_finished

    def run_process(self) -> ToContext:
        """Submit ``_process_class`` with ``ctx.inputs`` (call link ``iteration_NN``).

        Raises:
            AttributeError: ``ctx.inputs`` was never set.
        """
        self.ctx.iteration += 1
        if "inputs" not in self.ctx:
            raise AttributeError(
                f"{type(self).__name__}: set self.ctx.inputs (the inputs of {self.ctx.process_name}) in "
                "setup before run_process"
            )
        inputs = _copy_mappings(self.ctx.inputs)
        metadata = inputs.setdefault("metadata", {})
        metadata["call_link_label"] = f"iteration_{self.ctx.iteration:02d}"
        node = self.submit(self.process_class, inputs)
        self.report(f"launching {self.ctx.process_name}<{node.pk}> iteration #{self.ctx.iteration}")
        return ToContext(children=append_(node))

    def _pause_for_inspection(self) -> None:
        self.report(
            f"pausing for inspection: fix the cause, then `plait process play {self.pk}` runs "
            f"{self.ctx.process_name} again (or `plait process kill {self.pk}`)"
        )
        self.request_pause()

    def inspect_process(self) -> ExitCode | None:
        """Call the handlers on the last child and decide: done, run again, pause or stop.

        The child excepted or was killed: stop (301, 302).  A handler
        reported: run again (report exit status 0) or stop with its exit
        code; too many iterations stop with 401 (or pause, with
        ``pause_on_max_iterations``).  The child failed and no handler
        reported: ``on_unhandled_failure`` decides (402 when aborting).  The
        child succeeded and no handler reported: the loop ends.

        Raises:
            TypeError: a handler returned something else than None or a ProcessHandlerReport.
        """
        node: ProcessNode = self.ctx.children[-1]
        name = f"{self.ctx.process_name}<{node.pk}>"
        if node.is_excepted:
            self.report(f"{name} excepted, aborting")
            return self.exit_codes.ERROR_SUB_PROCESS_EXCEPTED
        if node.is_killed:
            self.report(f"{name} was killed, aborting")
            return self.exit_codes.ERROR_SUB_PROCESS_KILLED

        last_report: ProcessHandlerReport | None = None
        for priority, handler_name, handler in self.get_process_handlers_by_priority():
            report = handler(self, node)
            if report is None:
                continue
            if not isinstance(report, ProcessHandlerReport):
                raise TypeError(
                    f"process handler {handler_name} returned {type(report).__name__}: a handler returns "
                    "None or ProcessHandlerReport(do_break=..., exit_code=...)"
                )
            last_report = report
            outcome = (
                "restart"
                if report.exit_code.status == 0
                else f"stop with exit status {report.exit_code.status}"
            )
            self.report(
                f"handler {handler_name} (priority {priority}) acted on {name} (exit status "
                f"{node.exit_status}): {outcome}{', no further handler' if report.do_break else ''}"
            )
            if report.do_break:
                break

        if node.is_failed and last_report is None:
            return self._unhandled_failure(node, name)
        self.ctx.unhandled_failure = False

        if last_report is None:
            self.ctx.is_finished = True  # succeeded, and no handler wanted more
            return None
        if self.ctx.is_finished:  # a handler declared the work done (and calls results itself)
            return last_report.exit_code if last_report.exit_code.status else None

        status = last_report.exit_code.status
        if node.is_finished_ok:
            what = "finished successfully but a handler " + (
                "asked for a restart" if status == 0 else "found an unrecoverable problem"
            )
        else:
            what = "failed and a handler " + (
                "dealt with the problem" if status == 0 else "found an unrecoverable problem"
            )
        if status != 0:
            self.report(f"{name} {what}, aborting")
            return last_report.exit_code
        max_iterations = self.inputs.max_iterations.value
        if self.ctx.iteration >= max_iterations:
            self.report(f"reached the maximum number of iterations ({max_iterations}); last ran: {name}")
            pause = self.inputs.get("pause_on_max_iterations")
            if pause is None or not pause.value:
                return self.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED
            self.ctx.iteration = 0
            self.report("the iteration count starts again when the chain is played")
            self._pause_for_inspection()
            return None
        self.report(f"{name} {what}, restarting")
        return None

    def _unhandled_failure(self, node: ProcessNode, name: str) -> ExitCode | None:
        given = self.inputs.get("on_unhandled_failure")
        action = given.value if given is not None else "abort"
        failed = f"{name} failed with exit status {node.exit_status} and no handler dealt with it"
        if action == "abort":
            self.report(f"{failed}, aborting")
            return self.exit_codes.ERROR_UNHANDLED_FAILURE
        if action == "pause":
            self.report(failed)
            self._pause_for_inspection()
            return None
        if not self.ctx.unhandled_failure:  # restart_once and restart_and_pause: once more first
            self.ctx.unhandled_failure = True
            self.report(f"{failed}, restarting once more")
            return None
        if action == "restart_once":
            self.report(f"{failed} for the second time in a row, aborting")
            return self.exit_codes.ERROR_UNHANDLED_FAILURE
        self.report(f"{failed} for the second time in a row")
        self.ctx.unhandled_failure = False  # played: two more tries before pausing again
        self._pause_for_inspection()
        return None

    def get_outputs(self, node: ProcessNode) -> Mapping[str, Any]:
        """The outputs to attach from the last child: by default those exposed from ``_process_class``."""
        return self.exposed_outputs(node, self.process_class)

    def results(self) -> ExitCode | None:
        """Attach the exposed outputs of the last child (a required one it lacks is reported)."""
        node: ProcessNode = self.ctx.children[-1]
        self.report(f"work chain completed after {self.ctx.iteration} iterations")
        outputs = self.get_outputs(node)
        for name, port in self.spec().outputs.ports.items():
            if name not in outputs:
                if port.required:
                    self.report(
                        f"required output '{name}' is not an output of {self.ctx.process_name}<{node.pk}>"
                    )
                continue
            if name in self.outputs or any(label.startswith(f"{name}.") for label in self.outputs):
                continue  # attached already (results run twice after a crash)
            self.out(name, outputs[name])
        return None

    # -- clean_workdir: at termination, in every terminal state ----------------------------------------
    def _finish(self, result: ExitCode | None) -> ExitCode:
        self._clean_workdirs()
        return super()._finish(result)

    def _except(self, exc: BaseException) -> None:
        self._clean_workdirs()
        super()._except(exc)

    def _killed(self, message: str) -> None:
        self._clean_workdirs()
        super()._killed(message)

    def _clean_workdirs(self) -> None:
        """(thread) With ``clean_workdir``, remove the work folders of the terminated calculation jobs
        this chain ran (at any depth), as ``plait calcjob cleanworkdir`` does; a folder that cannot be
        removed is reported and the chain ends all the same."""
        flag = self.inputs.get("clean_workdir")
        if flag is None or not flag.value or self.node is None or self.runner is None:
            return
        try:
            self._clean_terminated_calcjobs()
        except Exception as exc:  # the chain's end must not depend on a computer being reachable
            LOGGER.warning("process %s: cleaning the work folders failed: %s", self.pk, exc)
            self.report(f"the remote folders could not be cleaned: {exc}")

    def _clean_terminated_calcjobs(self) -> None:
        from plait.orm.calcjob_files import CalcJobFileError, RemoteWorkdir

        runner = self.runner
        assert runner is not None
        if runner._on_loop_thread():
            raise RuntimeError("the work folders are cleaned from a thread, not on the event loop")
        by_computer: dict[Any, list[RemoteWorkdir]] = {}
        for descendant in self.node.called_descendants():
            if not isinstance(descendant, CalcJobNode) or not descendant.is_terminated:
                continue
            try:
                workdir = RemoteWorkdir.of(descendant)
            except CalcJobFileError:
                continue  # never uploaded, or cleaned already
            by_computer.setdefault(workdir.computer.pool_key, []).append(workdir)
        if not by_computer:
            return
        pool = runner.transport_pool

        async def clean() -> list[str]:
            cleaned = []
            for key, workdirs in by_computer.items():
                computer = workdirs[0].computer
                async with pool.request(
                    key,
                    computer.get_transport,
                    safe_interval=computer.safe_interval(),
                    max_concurrent_operations=int(computer.options.get("max_concurrent_operations") or 8),
                ) as transport:
                    for workdir in workdirs:
                        async with workdir.connection(transport):
                            await workdir.clean()
                        cleaned.append(str(workdir.node.pk))
            return cleaned

        cleaned = asyncio.run_coroutine_threadsafe(clean(), runner.loop).result()
        self.report(f"cleaned remote folders of calculations: {' '.join(cleaned)}")
