"""The scheduler layer: how plait submits, polls and cancels jobs (direct, slurm, pbs, lsf, sge).

The contract is in :mod:`plait.schedulers.contract`; plugins are found by
name through the ``plait.schedulers`` entry point group
(:func:`get_scheduler_class`).  Importing this package is cheap: the plugins
and :mod:`importlib.metadata` are only loaded when a plugin is asked for.
"""

from __future__ import annotations

import importlib

from plait.plugins import entry_points as plugin_lookup
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
    "lsf": ("plait.schedulers.lsf", "LsfScheduler"),
    "sge": ("plait.schedulers.sge", "SgeScheduler"),
}


def available_schedulers() -> list[str]:
    """The names of every scheduler plugin: registered entry points and the built-ins."""
    return sorted(set(plugin_lookup.plugin_names(ENTRY_POINT_GROUP)) | set(_BUILTINS))


def get_scheduler_class(name: str) -> type[Scheduler]:
    """The scheduler plugin class registered under ``name`` (``"direct"``, ``"slurm"``, ``"lsf"``...).

    An entry point of the ``plait.schedulers`` group wins; the built-ins are
    found by name even without package metadata.

    Raises:
        MissingPluginError: no plugin has that name (a ``ValueError``; the message lists the known ones).
        InvalidPluginError: the entry point does not name a :class:`Scheduler` subclass (a ``TypeError``).
        ImportError: the plugin's module cannot be imported (its own error, unchanged).
    """
    if name in plugin_lookup.plugin_entry_points(ENTRY_POINT_GROUP) or name not in _BUILTINS:
        try:
            found: type[Scheduler] = plugin_lookup.load_plugin(ENTRY_POINT_GROUP, name, Scheduler)
        except plugin_lookup.MissingPluginError:
            raise plugin_lookup.MissingPluginError(
                f"no scheduler plugin named {name!r}; known: {', '.join(available_schedulers())}"
                f" (plugins register under the {ENTRY_POINT_GROUP!r} entry point group)"
            ) from None
        return found
    module_name, class_name = _BUILTINS[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(cls, type) and issubclass(cls, Scheduler)
    return cls
