"""Finding transport plugins by name, through the ``plait.transports`` entry points.

A plugin registers its class in its package metadata::

    [project.entry-points."plait.transports"]
    mycluster = "my_package.transport:MyClusterTransport"

and plait finds it with :func:`get_transport_class`.  Nothing is imported
until a plugin is asked for, so ``import plait.transports`` stays cheap and
a broken plugin only hurts the computers that use it.
"""

from __future__ import annotations

import functools
from typing import Any

from .contract import BlockingTransport, Transport

__all__ = ["ENTRY_POINT_GROUP", "get_transport_class", "load_transport_plugins", "transport_plugin_names"]

ENTRY_POINT_GROUP = "plait.transports"

TransportClass = type[Transport] | type[BlockingTransport]


@functools.cache
def _entry_points() -> dict[str, Any]:
    """The registered plugins by name, scanned once per interpreter (a scan costs milliseconds)."""
    from importlib.metadata import entry_points

    found: dict[str, Any] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry)
    return found


def transport_plugin_names() -> list[str]:
    """Names of the installed transport plugins, sorted; nothing is imported."""
    return sorted(_entry_points())


def get_transport_class(name: str) -> TransportClass:
    """Import and return the transport class registered as ``name``.

    Raises:
        LookupError: no plugin has that name (the message lists those that exist).
        TypeError: the entry point does not name a Transport or BlockingTransport subclass.
        ImportError: the plugin's module cannot be imported.
    """
    entry = _entry_points().get(name)
    if entry is None:
        known = ", ".join(transport_plugin_names()) or "none"
        raise LookupError(f"no transport plugin named {name!r} (installed: {known})")
    found = [entry]
    loaded = entry.load()
    if not (isinstance(loaded, type) and issubclass(loaded, Transport | BlockingTransport)):
        raise TypeError(
            f"the transport plugin {name!r} ({found[0].value}) is not a subclass of "
            "Transport or BlockingTransport"
        )
    return loaded


def load_transport_plugins() -> dict[str, TransportClass]:
    """Import every installed transport plugin; ``{name: class}``."""
    return {name: get_transport_class(name) for name in transport_plugin_names()}
