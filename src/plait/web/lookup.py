"""Finding what a request names: a node, a process, a process class (never by ``eval``)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from plait.orm import Node, ProcessNode, load_node
from plait.web.errors import ApiError

__all__ = ["ENTRY_POINT_GROUPS", "get_node", "get_process", "load_process_class", "resolve_inputs"]

#: the entry-point groups a class may be named from, tried in this order
ENTRY_POINT_GROUPS = ("plait.calculations", "plait.workflows")
#: the key of the JSON object that stands for a stored node in submitted inputs
NODE_REFERENCE = "$node"


def get_node(pk: int) -> Node:
    """The stored node ``pk``.  Raises NotExistentError (404) when there is none."""
    return load_node(pk)


def get_process(pk: int) -> ProcessNode:
    """The process node ``pk``.  Raises NotExistentError (404), or ApiError 404 for a data node."""
    node = load_node(pk)
    if not isinstance(node, ProcessNode):
        raise ApiError(404, f"node {pk} is a {type(node).__name__}, not a process", "pk")
    return node


def load_process_class(name: str) -> type:
    """The process class named by an entry point (``arithmetic.add``) or ``module:QualName``.

    The module is imported (as ``plait submit`` or a daemon worker would): no
    text is ever evaluated.

    Raises:
        ApiError: 422 naming ``body.process`` when nothing of that name is a process class.
    """
    from plait.engine.process import Process
    from plait.engine.process_function import ProcessFunction
    from plait.orm.registry import import_object

    obj: Any = None
    if ":" in name:
        try:
            obj = import_object(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ApiError(422, f"cannot import '{name}': {exc}", "body.process") from None
    else:
        for group in ENTRY_POINT_GROUPS:
            found = entry_points(group=group, name=name)
            if found:
                try:
                    obj = next(iter(found)).load()
                except Exception as exc:
                    raise ApiError(
                        422, f"entry point '{name}' does not load: {exc}", "body.process"
                    ) from None
                break
        else:
            groups = ", ".join(ENTRY_POINT_GROUPS)
            raise ApiError(
                422,
                f"no entry point '{name}' in {groups}; name a class as 'package.module:ClassName'",
                "body.process",
            )
    if isinstance(obj, ProcessFunction):
        return obj.process_class
    if isinstance(obj, type) and issubclass(obj, Process):
        return obj
    raise ApiError(422, f"'{name}' is a {type(obj).__name__}, not a process class", "body.process")


def resolve_inputs(values: Any, where: str = "body.inputs") -> Any:
    """JSON inputs with each ``{"$node": pk or uuid}`` replaced by that stored node.

    Plain values are left for the ports to wrap (``1`` becomes an ``Int``).

    Raises:
        ApiError: 422 naming the field whose node does not exist.
    """
    if isinstance(values, dict):
        if set(values) == {NODE_REFERENCE}:
            identifier = values[NODE_REFERENCE]
            if isinstance(identifier, bool) or not isinstance(identifier, int | str):
                raise ApiError(422, f"{where}: {NODE_REFERENCE} takes a pk or a uuid", where)
            try:
                return load_node(identifier)
            except LookupError as exc:
                raise ApiError(422, f"{where}: {exc}", where) from None
        return {key: resolve_inputs(value, f"{where}.{key}") for key, value in values.items()}
    if isinstance(values, list):
        return [resolve_inputs(value, f"{where}.{i}") for i, value in enumerate(values)]
    return values
