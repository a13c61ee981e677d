"""From what a user launches, or what a node records, to a process class.

The pieces that both the runner and the author API (process functions,
parsers, the daemon's placement) need, kept apart from the runner so that
they never import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.engine.process import Process
from plait.orm import ProcessNode
from plait.orm.registry import import_object

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder

__all__ = ["check_one_way_of_giving_inputs", "load_process_class", "resolve_process"]


def check_one_way_of_giving_inputs(inputs: Any, kwargs: Mapping[str, Any]) -> None:
    """Refuse an inputs dict given together with keyword inputs, as aiida-core does.

    ``run(Cls, {"x": 1}, y=2)`` would otherwise merge the two silently, and a
    name given both ways would win one way or the other unnoticed.  A builder
    with keyword inputs added on top stays allowed (aiida-core's
    ``run(builder, **kwargs)``).

    Raises:
        ValueError: both were given; nothing is stored.
    """
    if isinstance(inputs, Mapping) and kwargs:
        raise ValueError(
            f"got both an inputs dict ({', '.join(sorted(map(str, inputs))) or 'empty'}) and keyword inputs "
            f"({', '.join(sorted(kwargs))}): pass the inputs one way, e.g. run(Process, **inputs) or "
            "run(Process, inputs)"
        )


def resolve_process(
    process: Any, inputs: Mapping[str, Any] | ProcessBuilder | None, kwargs: Mapping[str, Any]
) -> tuple[type[Process], dict[str, Any]]:
    """Turn what a user passes to run/submit (class, process function or builder) into a class and inputs."""
    from plait.engine.builder import ProcessBuilder
    from plait.engine.process_function import ProcessFunction

    if isinstance(process, ProcessBuilder):
        return process.process_class, {**process._inputs(), **dict(kwargs)}
    if isinstance(inputs, ProcessBuilder):
        return inputs.process_class, {**inputs._inputs(), **dict(kwargs)}
    check_one_way_of_giving_inputs(inputs, kwargs)
    merged = {**dict(inputs or {}), **dict(kwargs)}
    if isinstance(process, ProcessFunction):
        return process.process_class, merged
    if isinstance(process, type) and issubclass(process, Process):
        return process, merged
    raise TypeError(f"{process!r} is not a process class, a process function or a builder")


def load_process_class(node: ProcessNode) -> type[Process]:
    """Import the class (or function) that a process node was made by.

    Raises:
        ImportError: the class cannot be imported (named, with why).
    """
    from plait.engine.process_function import ProcessFunction

    if not node.process_type:
        raise ImportError(f"process {node.pk} records no process type")
    obj = import_object(node.process_type)
    if isinstance(obj, ProcessFunction):
        return obj.process_class
    if isinstance(obj, type) and issubclass(obj, Process):
        return obj
    raise ImportError(f"'{node.process_type}' of process {node.pk} is not a process class")
