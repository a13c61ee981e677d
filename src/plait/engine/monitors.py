"""Calculation job monitors: functions that look into a running job's folder and may stop it.

A calculation job takes a ``monitors`` input namespace of ``Dict`` nodes, as in
aiida-core 2.x.  Each names a function and how to call it::

    ShellJob inputs:
        monitors={"converged": Dict({
            "entry_point": "mypackage.monitors:stop_when_converged",  # or an entry point name
            "kwargs": {"threshold": 1e-6},      # passed to the function (JSON values)
            "priority": 0,                      # higher runs first (then by key)
            "minimum_poll_interval": 30,        # seconds between two calls (default below)
            "disabled": False,
        })}

``entry_point`` is a name registered under the ``plait.calculations.monitors``
entry point group, or a ``module:function`` path.  While the scheduler job is
queued or running, each monitor is called at most every
``minimum_poll_interval`` seconds (default: the computer's
``minimum_poll_interval``, at least :data:`DEFAULT_INTERVAL`) as::

    monitor(node, transport, **kwargs)

``node`` is the job's ``CalcJobNode`` (``node.remote_workdir`` is its folder on
the computer) and ``transport`` the pooled connection to that computer.  How
it runs depends on how it is written:

* a plain ``def`` runs in a worker thread and gets a *blocking* transport
  (:meth:`CalcJob.blocking_transport`: the calls go through the job's own
  connection on the engine's loop);
* an ``async def`` is awaited on the loop and gets the *async* transport; it
  must not block (no ``time.sleep``, no blocking I/O).

Either way the event loop never waits on user code.  A monitor returns:

* ``None``: nothing to do;
* a string: stop the job.  The scheduler job is cancelled, the files are
  retrieved and parsed, and the process finishes with exit code 150
  ``STOPPED_BY_MONITOR`` and the string as its message;
* a :class:`CalcJobMonitorResult`, for the rest: ``action`` ``kill``,
  ``disable-self`` (this monitor is not called again) or ``disable-all``;
  ``retrieve=False`` (a killed job ends at once, nothing retrieved),
  ``parse=False`` (retrieved but not parsed), ``override_exit_code=False``
  (the parser's exit code stands, not 150); ``outputs``: nodes recorded as
  outputs of the job (they must fit its output ports) with any action.

A monitor that raises is reported on the process (``plait process report``)
and disabled; the job goes on.  Monitors run only while the job waits for its
scheduler; a monitor's decision to stop the job is in the job's checkpoint, so
a restarted worker retrieves and parses as it said.

Where plait differs from aiida-core on purpose: only a ``kill`` result changes
the exit code (aiida-core also overrides it after a ``disable-*`` result that
came at the last poll); ``minimum_poll_interval`` may be a float; a monitor
that raises is disabled instead of pausing the job after retries; a monitor
can be a ``module:function`` path as well as an entry point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from plait.orm import Dict, Node

if TYPE_CHECKING:
    from plait.engine.calcjob import CalcJob
    from plait.engine.exit_code import ExitCode
    from plait.schedulers import JobInfo

__all__ = [
    "ENTRY_POINT_GROUP",
    "CalcJobMonitor",
    "CalcJobMonitorAction",
    "CalcJobMonitorResult",
    "CalcJobMonitors",
    "load_monitor_function",
    "validate_monitors",
]

ENTRY_POINT_GROUP = "plait.calculations.monitors"
#: seconds between two calls of a monitor that sets no ``minimum_poll_interval`` (at least)
DEFAULT_INTERVAL = 1.0
#: the exit status of a job stopped by a monitor (aiida-core's number)
STOPPED_BY_MONITOR = 150


class CalcJobMonitorAction(enum.Enum):
    """What the engine does with a monitor's result."""

    KILL = "kill"  #: cancel the scheduler job; no monitor is called again
    DISABLE_ALL = "disable-all"  #: call no monitor again for this job
    DISABLE_SELF = "disable-self"  #: call this monitor no more


@dataclasses.dataclass
class CalcJobMonitorResult:
    """A monitor's verdict (a monitor may return a plain string instead: ``kill`` with that message).

    Raises (on creation):
        TypeError: a field of the wrong type.
        ValueError: an unknown ``action``, or ``parse=True`` with ``retrieve=False``.
    """

    key: str | None = None  #: the monitor's key in ``monitors`` (the engine sets it)
    message: str | None = None
    action: CalcJobMonitorAction | str = CalcJobMonitorAction.KILL
    retrieve: bool = True
    parse: bool = True
    override_exit_code: bool = True
    outputs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.action, str):
            try:
                self.action = CalcJobMonitorAction(self.action)
            except ValueError:
                known = ", ".join(a.value for a in CalcJobMonitorAction)
                raise ValueError(f"monitor result action '{self.action}' is not one of {known}") from None
        for name in ("key", "message"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise TypeError(f"monitor result {name} must be a str or None, got {getattr(self, name)!r}")
        for name in ("retrieve", "parse", "override_exit_code"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"monitor result {name} must be a bool, got {getattr(self, name)!r}")
        if self.outputs is not None and not isinstance(self.outputs, Mapping):
            raise TypeError(f"monitor result outputs must be a dict of nodes, got {self.outputs!r}")
        if not self.retrieve and self.parse:
            raise ValueError("a monitor result cannot parse without retrieving: set parse=False too")

    @property
    def kills(self) -> bool:
        return self.action is CalcJobMonitorAction.KILL

    def to_json(self) -> dict[str, Any]:
        """The result for the job's checkpoint (``outputs`` are recorded on the node, not here)."""
        action = self.action.value if isinstance(self.action, CalcJobMonitorAction) else self.action
        return {
            "key": self.key,
            "message": self.message,
            "action": action,
            "retrieve": self.retrieve,
            "parse": self.parse,
            "override_exit_code": self.override_exit_code,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CalcJobMonitorResult:
        return cls(**{k: data[k] for k in data if k != "outputs"})


def load_monitor_function(name: str) -> Callable[..., Any]:
    """The function ``name`` names: an entry point of ``plait.calculations.monitors`` or ``module:function``.

    Raises:
        ValueError: no such entry point (the message lists the known ones), or not a function.
        ImportError: the ``module:function`` path cannot be imported.
    """
    from plait.orm.registry import import_object
    from plait.plugins.entry_points import MissingPluginError, load_plugin

    if ":" in name:
        function = import_object(name)
    else:
        try:
            function = load_plugin(ENTRY_POINT_GROUP, name)
        except MissingPluginError as exc:
            raise MissingPluginError(f"{exc}; or give a 'module:function' path") from None
    if not callable(function):
        raise ValueError(f"monitor '{name}' is a {type(function).__name__}, not a function")
    return function


@dataclasses.dataclass
class CalcJobMonitor:
    """One entry of the ``monitors`` namespace, checked (see the module docstring for the fields).

    Raises (on creation):
        TypeError: a field of the wrong type.
        ValueError: a non-positive interval, an unknown function, a function without ``node`` and
            ``transport`` parameters, or ``kwargs`` it does not take.
        ImportError: the ``module:function`` cannot be imported.
    """

    entry_point: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    priority: int = 0
    minimum_poll_interval: float | None = None
    disabled: bool = False
    #: when it was last called (``time.monotonic()``), None before its first call
    call_timestamp: float | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.entry_point, str) or not self.entry_point:
            raise TypeError(f"entry_point must be a non-empty str, got {self.entry_point!r}")
        if not isinstance(self.kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {self.kwargs!r}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise TypeError(f"priority must be an int, got {self.priority!r}")
        interval = self.minimum_poll_interval
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0
        ):
            raise ValueError(f"minimum_poll_interval must be a number of seconds > 0, got {interval!r}")
        if not isinstance(self.disabled, bool):
            raise TypeError(f"disabled must be a bool, got {self.disabled!r}")
        function = self.load()
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            return
        names = list(parameters)
        if names[:2] != ["node", "transport"] and not {"node", "transport"} <= set(names):
            raise ValueError(
                f"monitor '{self.entry_point}' must take (node, transport, **kwargs), "
                f"it takes ({', '.join(names)})"
            )
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            unknown = sorted(set(self.kwargs) - set(names[2:]))
            if unknown:
                raise ValueError(
                    f"monitor '{self.entry_point}' does not take the keywords {', '.join(unknown)}"
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalcJobMonitor:
        fields = {f.name for f in dataclasses.fields(cls) if f.name != "call_timestamp"}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
        if "entry_point" not in data:
            raise ValueError("it needs an 'entry_point': an entry point name or 'module:function'")
        return cls(**dict(data))

    def load(self) -> Callable[..., Any]:
        return load_monitor_function(self.entry_point)


def validate_monitors(value: Any, _namespace: Any = None) -> str | None:
    """Validator of the ``monitors`` namespace: each entry a ``Dict`` that makes a :class:`CalcJobMonitor`."""
    for key, node in (value or {}).items():
        if not isinstance(node, Dict):
            return f"monitors.{key} must be a Dict, got {type(node).__name__}"
        try:
            CalcJobMonitor.from_dict(node.get_dict())
        except (TypeError, ValueError, ImportError) as exc:
            return f"monitors.{key} is invalid: {exc}"
    return None


class CalcJobMonitors:
    """The monitors of one job, by priority (high first) then key, with when each is due."""

    def __init__(self, monitors: Mapping[str, Dict], default_interval: float = DEFAULT_INTERVAL) -> None:
        parsed = {key: CalcJobMonitor.from_dict(node.get_dict()) for key, node in monitors.items()}
        self.monitors: dict[str, CalcJobMonitor] = dict(
            sorted(parsed.items(), key=lambda item: (-item[1].priority, item[0]))
        )
        self.default_interval = max(DEFAULT_INTERVAL, float(default_interval or 0.0))

    def interval(self, monitor: CalcJobMonitor) -> float:
        return float(monitor.minimum_poll_interval or self.default_interval)

    @property
    def active(self) -> bool:
        return any(not m.disabled for m in self.monitors.values())

    def disable_all(self) -> None:
        for monitor in self.monitors.values():
            monitor.disabled = True

    def seconds_to_next(self) -> float | None:
        """Seconds until a monitor is due (0: now), None when every monitor is disabled."""
        now = time.monotonic()
        waits = [
            0.0 if m.call_timestamp is None else max(0.0, m.call_timestamp + self.interval(m) - now)
            for m in self.monitors.values()
            if not m.disabled
        ]
        return min(waits) if waits else None

    async def run_due(self, process: CalcJob) -> CalcJobMonitorResult | None:
        """Call each monitor that is due, in order, until one returns a result; return it (key set).

        A monitor that raises, or returns something other than None, a str or a
        :class:`CalcJobMonitorResult`, is reported on the process and disabled.
        """
        for key, monitor in self.monitors.items():
            if monitor.disabled:
                continue
            if monitor.call_timestamp is not None and (
                time.monotonic() - monitor.call_timestamp < self.interval(monitor)
            ):
                continue
            monitor.call_timestamp = time.monotonic()
            try:
                returned = await _call(process, monitor)
                result = _as_result(returned)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                monitor.disabled = True
                await process._report_async(
                    f"monitor '{key}' ({monitor.entry_point}) failed and is disabled: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            if result is not None:
                result.key = key
                return result
        return None


async def _call(process: CalcJob, monitor: CalcJobMonitor) -> Any:
    function = monitor.load()
    runner = process.runner
    assert runner is not None
    if inspect.iscoroutinefunction(function):
        async with process._transport() as transport:
            return await function(process.node, transport, **monitor.kwargs)

    def call_with_blocking_transport() -> Any:
        with process.blocking_transport() as transport:
            return function(process.node, transport, **monitor.kwargs)

    return await runner.call_in_thread(process, call_with_blocking_transport)


def _as_result(returned: Any) -> CalcJobMonitorResult | None:
    if returned is None:
        return None
    if isinstance(returned, str):
        return CalcJobMonitorResult(message=returned)
    if isinstance(returned, CalcJobMonitorResult):
        return returned
    raise TypeError(f"it returned {type(returned).__name__}: return None, a str or a CalcJobMonitorResult")


# -- what the calculation job does with them ----------------------------------------------------------


def job_monitors(process: CalcJob) -> CalcJobMonitors | None:
    """The job's monitors (made once per process object, so disabled ones stay disabled), or None."""
    given = process.inputs.get("monitors") or {}
    if not given:
        return None
    monitors = process._monitors
    if monitors is None:
        interval = float(process.computer.options.get("minimum_poll_interval") or 0.0)
        monitors = CalcJobMonitors(given, default_interval=interval)
        if process._monitor_result is not None:
            monitors.disable_all()  # a monitor stopped the job before a restart: none runs again
        process._monitors = monitors
    return monitors


async def watch_job(process: CalcJob, waiting: Awaitable[JobInfo]) -> JobInfo:
    """Await the scheduler's final word on the job (``waiting``) while calling the job's monitors.

    A ``kill`` result cancels the scheduler job (then waits for the
    scheduler to report it gone); outputs a monitor returns are registered
    on the process at once (committed with its next checkpoint).
    """
    monitors = job_monitors(process)
    job = asyncio.ensure_future(waiting)
    try:
        while monitors is not None and monitors.active:
            delay = monitors.seconds_to_next()
            if delay is None:
                break
            finished, _ = await asyncio.wait({job}, timeout=delay)
            if job in finished:
                break
            check = asyncio.ensure_future(monitors.run_due(process))
            either: set[asyncio.Future[Any]] = {job, check}
            done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if check not in done:  # the job ended while a monitor ran: its verdict no longer matters
                check.cancel()
                break
            result = check.result()
            if result is not None:
                await _apply(process, monitors, result)
        return await job
    finally:
        if not job.done():
            job.cancel()


async def _apply(process: CalcJob, monitors: CalcJobMonitors, result: CalcJobMonitorResult) -> None:
    key = result.key or "?"
    for label, value in (result.outputs or {}).items():
        try:
            if not isinstance(value, Node):
                raise TypeError(f"output '{label}' is a {type(value).__name__}, not a node")
            process.out(label, value)
        except Exception as exc:
            await process._report_async(f"monitor '{key}' returned an output that was refused: {exc}")
    action = result.action
    if action is CalcJobMonitorAction.DISABLE_SELF:
        monitors.monitors[key].disabled = True
    elif action is CalcJobMonitorAction.DISABLE_ALL:
        monitors.disable_all()
    if action is not CalcJobMonitorAction.KILL:
        if result.message:
            await process._report_async(f"monitor '{key}': {result.message}")
        return
    monitors.disable_all()
    process._monitor_result = result
    await process._report_async(f"monitor '{key}' stops the job: {result.message or 'no reason given'}")
    await process._kill_scheduler_job()


def stopped_exit_code(process: CalcJob) -> ExitCode | None:
    """``STOPPED_BY_MONITOR`` with the monitor's message when a monitor killed the job, else None."""
    result = process._monitor_result
    if result is None:
        return None
    message = result.message or f"stopped by monitor '{result.key}'"
    return process.exit_codes.STOPPED_BY_MONITOR.format(message=message)
