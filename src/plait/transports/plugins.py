"""Finding transport plugins by name, through the ``plait.transports`` entry points.

A plugin registers its class in its package metadata::

    [project.entry-points."plait.transports"]
    mycluster = "my_package.transport:MyClusterTransport"

and plait finds it with :func:`get_transport_class`, through the one plugin
lookup (:mod:`plait.plugins.entry_points`, which imports nothing else of
plait, so the transports still stand alone).  Nothing is imported until a
plugin is asked for, so ``import plait.transports`` stays cheap and a
broken plugin only hurts the computers that use it.
"""

from __future__ import annotations

from plait.plugins.entry_points import load_plugin, plugin_names

from .contract import BlockingTransport, Transport

__all__ = ["ENTRY_POINT_GROUP", "get_transport_class", "load_transport_plugins", "transport_plugin_names"]

ENTRY_POINT_GROUP = "plait.transports"

TransportClass = type[Transport] | type[BlockingTransport]


def transport_plugin_names() -> list[str]:
    """Names of the installed transport plugins, sorted; nothing is imported."""
    return plugin_names(ENTRY_POINT_GROUP)


def get_transport_class(name: str) -> TransportClass:
    """Import and return the transport class registered as ``name``.

    Raises:
        MissingPluginError: no plugin has that name (a ``LookupError``; the message lists those that exist).
        InvalidPluginError: the entry point does not name a Transport or BlockingTransport subclass
            (a ``TypeError``).
        ImportError: the plugin's module cannot be imported.
    """
    loaded: TransportClass = load_plugin(ENTRY_POINT_GROUP, name, (Transport, BlockingTransport))
    return loaded


def load_transport_plugins() -> dict[str, TransportClass]:
    """Import every installed transport plugin; ``{name: class}``."""
    return {name: get_transport_class(name) for name in transport_plugin_names()}
