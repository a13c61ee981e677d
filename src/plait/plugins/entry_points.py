"""The one lookup of plugins by name, through Python entry points.

Every kind of plugin registers in its package metadata under a group of
its own (``plait.calculations``, ``plait.parsers``, ``plait.data``,
``plait.transports``, ``plait.schedulers``, ``plait.workflows``,
``plait.calculations.monitors``)::

    [project.entry-points."plait.calculations"]
    "mycode.relax" = "my_package.calculations:RelaxCalculation"

This module scans a group once per interpreter and imports a plugin only
when it is asked for, so a broken plugin hurts only what uses it.  It
imports nothing else of plait: every layer (the transports included) may
use it, and an unknown name gives the same error everywhere.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "GROUPS",
    "InvalidPluginError",
    "MissingPluginError",
    "entry_point",
    "load_plugin",
    "plugin_entry_points",
    "plugin_names",
]

#: the kinds of plugins and their entry point groups
GROUPS: dict[str, str] = {
    "calculations": "plait.calculations",
    "parsers": "plait.parsers",
    "data": "plait.data",
    "transports": "plait.transports",
    "schedulers": "plait.schedulers",
    "workflows": "plait.workflows",
    "monitors": "plait.calculations.monitors",
}


class MissingPluginError(LookupError, ValueError):
    """No plugin of that name is installed in that group (the message lists those that are).

    A ``LookupError`` and a ``ValueError``, so that code written against the
    older per-kind lookups (which raised one or the other) keeps working.
    """


class InvalidPluginError(TypeError):
    """The entry point names something that is not a plugin of its kind."""


def _group(group: str) -> str:
    """``"calculations"`` or ``"plait.calculations"`` -> ``"plait.calculations"``."""
    if group in GROUPS:
        return GROUPS[group]
    if group in GROUPS.values():
        return group
    raise MissingPluginError(f"no plugin group {group!r} (groups: {', '.join(GROUPS)})")


@functools.cache
def plugin_entry_points(group: str) -> dict[str, EntryPoint]:
    """The registered entry points of ``group`` by name; the first registration of a name wins.

    Broken metadata of some unrelated installed distribution gives an empty
    scan rather than an error (built-ins that need no metadata still work).
    """
    from importlib.metadata import entry_points  # only when a plugin is asked for: import plait stays cheap

    found: dict[str, EntryPoint] = {}
    try:
        scanned = entry_points(group=_group(group))
    except MissingPluginError:
        raise
    except Exception:
        return found
    for entry in scanned:
        found.setdefault(entry.name, entry)
    return found


def plugin_names(group: str) -> list[str]:
    """The names of the plugins installed in ``group``, sorted; nothing is imported."""
    return sorted(plugin_entry_points(group))


def entry_point(group: str, name: str) -> EntryPoint:
    """The entry point ``name`` of ``group``.

    Raises:
        MissingPluginError: none has that name (the message lists the installed ones).
    """
    found = plugin_entry_points(group).get(name)
    if found is None:
        full = _group(group)
        known = ", ".join(plugin_names(group)) or "none"
        raise MissingPluginError(
            f"no plugin named {name!r} in {full!r} (installed: {known}); a package registers one "
            f'under [project.entry-points."{full}"] in its pyproject.toml'
        )
    return found


def load_plugin(group: str, name: str, base: type | tuple[type, ...] | None = None) -> Any:
    """Import and return the plugin ``name`` of ``group``; with ``base``, check it is such a class.

    Raises:
        MissingPluginError: no plugin has that name.
        InvalidPluginError: it is not a subclass of ``base``.
        ImportError: the plugin's module cannot be imported (its own error, unchanged).
    """
    found = entry_point(group, name)
    loaded = found.load()
    if base is not None and not (isinstance(loaded, type) and issubclass(loaded, base)):
        bases = base if isinstance(base, tuple) else (base,)
        wanted = " or ".join(f"{b.__module__}.{b.__qualname__}" for b in bases)
        raise InvalidPluginError(
            f"the plugin {name!r} of {_group(group)!r} ({found.value}) is {loaded!r}, "
            f"not a subclass of {wanted}"
        )
    return loaded
