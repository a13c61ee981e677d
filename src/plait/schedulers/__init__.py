"""The scheduler layer: how plait submits, polls and cancels jobs (direct, slurm, pbs).

The contract is in :mod:`plait.schedulers.contract`; plugins are found by
name through the ``plait.schedulers`` entry point group
(:func:`get_scheduler_class`).  Importing this package is cheap: the plugins
and :mod:`importlib.metadata` are only loaded when a plugin is asked for.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

from plait.schedulers.contract import (
    FAILURE_KINDS,
    CodeRun,
    JobInfo,
    JobResources,
    JobState,
    JobTemplate,
    Scheduler,
)
from plait.schedulers.errors import (
    InvalidJobOptionError,
    SchedulerError,
    SchedulerOutputError,
    SchedulerRefusedError,
    SchedulerUnavailableError,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "FAILURE_KINDS",
    "CodeRun",
    "InvalidJobOptionError",
    "JobInfo",
    "JobResources",
    "JobState",
    "JobTemplate",
    "Scheduler",
    "SchedulerError",
    "SchedulerOutputError",
    "SchedulerRefusedError",
    "SchedulerUnavailableError",
    "available_schedulers",
    "get_scheduler_class",
]

ENTRY_POINT_GROUP = "plait.schedulers"

#: The built-in plugins, used when the package metadata (and so its entry points) is missing,
#: e.g. when running from a source tree that was never installed.
_BUILTINS = {
    "direct": ("plait.schedulers.direct", "DirectScheduler"),
    "slurm": ("plait.schedulers.slurm", "SlurmScheduler"),
    "pbs": ("plait.schedulers.pbs", "PbsScheduler"),
}


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    """The registered plugins, scanned once per interpreter (scanning costs milliseconds)."""
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # broken metadata of some installed distribution: fall back to the built-ins
        return {}


def available_schedulers() -> list[str]:
    """The names of every scheduler plugin: registered entry points and the built-ins."""
    return sorted(set(_entry_points()) | set(_BUILTINS))


def get_scheduler_class(name: str) -> type[Scheduler]:
    """The scheduler plugin class registered under ``name`` (``"direct"``, ``"slurm"``, ``"pbs"``...).

    An entry point of the ``plait.schedulers`` group wins; the built-ins are
    found by name even without package metadata.

    Raises:
        ValueError: no plugin has that name (the message lists the known ones).
        TypeError: the entry point does not name a :class:`Scheduler` subclass.
        ImportError: the plugin's module cannot be imported (its own error, unchanged).
    """
    entry_point = _entry_points().get(name)
    if entry_point is not None:
        cls = entry_point.load()
    elif name in _BUILTINS:
        module_name, class_name = _BUILTINS[name]
        cls = getattr(importlib.import_module(module_name), class_name)
    else:
        raise ValueError(
            f"no scheduler plugin named {name!r}; known: {', '.join(available_schedulers())}"
            f" (plugins register under the {ENTRY_POINT_GROUP!r} entry point group)"
        )
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise TypeError(
            f"the scheduler plugin {name!r} is {cls!r}, not a subclass of plait.schedulers.Scheduler"
        )
    return cls
