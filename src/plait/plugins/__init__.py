"""Plugins found by name: one factory per kind, one lookup behind them all.

In aiida-core's shape, so that plugin code ports with an import change::

    from plait.plugins import CalculationFactory, DataFactory

    ShellJob = CalculationFactory("shell")
    Int = DataFactory("core.int")

Each factory imports the plugin registered under that name in its entry
point group (see :mod:`plait.plugins.entry_points`) and checks that it is a
plugin of its kind.  An unknown name raises :class:`MissingPluginError`
listing what is installed, for every kind alike; a registration of the
wrong kind raises :class:`InvalidPluginError`.  ``plait plugin list`` shows
what is installed.
"""

from __future__ import annotations

from typing import Any

from plait.plugins.entry_points import (
    GROUPS,
    InvalidPluginError,
    MissingPluginError,
    entry_point,
    load_plugin,
    plugin_entry_points,
    plugin_names,
)

__all__ = [
    "GROUPS",
    "CalculationFactory",
    "DataFactory",
    "InvalidPluginError",
    "MissingPluginError",
    "ParserFactory",
    "SchedulerFactory",
    "TransportFactory",
    "WorkflowFactory",
    "entry_point",
    "load_plugin",
    "plugin_entry_points",
    "plugin_names",
]


def _process_or_function(group: str, name: str) -> Any:
    """A process class or a process function (``@calcfunction``, ``@workfunction``) registered as ``name``."""
    from plait.engine.process import Process

    loaded = load_plugin(group, name)
    if isinstance(loaded, type) and issubclass(loaded, Process):
        return loaded
    if getattr(loaded, "is_process_function", False):
        return loaded
    raise InvalidPluginError(
        f"the plugin {name!r} of {GROUPS[group]!r} ({entry_point(group, name).value}) is {loaded!r}, "
        "neither a process class nor a process function"
    )


def CalculationFactory(name: str) -> Any:
    """The calculation registered as ``name`` in ``plait.calculations`` (a CalcJob or a calcfunction)."""
    return _process_or_function("calculations", name)


def WorkflowFactory(name: str) -> Any:
    """The workflow registered as ``name`` in ``plait.workflows`` (a WorkChain class or a workfunction)."""
    return _process_or_function("workflows", name)


def ParserFactory(name: str) -> Any:
    """The :class:`~plait.engine.parser.Parser` class registered as ``name`` in ``plait.parsers``."""
    from plait.engine.parser import Parser

    return load_plugin("parsers", name, Parser)


def DataFactory(name: str) -> Any:
    """The data class registered as ``name`` in ``plait.data`` (``"core.int"``, ``"core.array"``...)."""
    from plait.orm.node import Node

    return load_plugin("data", name, Node)


def TransportFactory(name: str) -> Any:
    """The transport class registered as ``name`` in ``plait.transports`` (async or blocking contract)."""
    from plait.transports.plugins import get_transport_class

    return get_transport_class(name)


def SchedulerFactory(name: str) -> Any:
    """The scheduler class registered as ``name`` in ``plait.schedulers``."""
    from plait.schedulers import get_scheduler_class

    return get_scheduler_class(name)
