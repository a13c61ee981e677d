"""From a stored ``node_type`` string back to the Python class of the node.

Built-in types are listed here by import path, so loading a node never
scans entry points for them.  Plugin data types register under the
``plait.data`` entry point group; their node type is ``data.<entry point
name>``.  A subclass that is neither built in nor registered is recorded as
``module:QualName`` and imported from there when loaded.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from plait.orm.node import Node

__all__ = ["BUILTIN_NODE_TYPES", "import_object", "node_class_for"]

BUILTIN_NODE_TYPES: dict[str, str] = {
    "data.core.int": "plait.orm.data.base:Int",
    "data.core.float": "plait.orm.data.base:Float",
    "data.core.str": "plait.orm.data.base:Str",
    "data.core.bool": "plait.orm.data.base:Bool",
    "data.core.dict": "plait.orm.data.collections:Dict",
    "data.core.list": "plait.orm.data.collections:List",
    "data.core.singlefile": "plait.orm.data.files:SinglefileData",
    "data.core.folder": "plait.orm.data.files:FolderData",
    "data.core.remote": "plait.orm.data.remote:RemoteData",
    "data.core.code.installed": "plait.orm.code:InstalledCode",
    "data.core.code.portable": "plait.orm.code:PortableCode",
    "data.core.data": "plait.orm.node:Data",
    "process.calcfunction": "plait.orm.process_nodes:CalcFunctionNode",
    "process.workfunction": "plait.orm.process_nodes:WorkFunctionNode",
    "process.workchain": "plait.orm.process_nodes:WorkChainNode",
    "process.calcjob": "plait.orm.process_nodes:CalcJobNode",
    "process.workflow": "plait.orm.process_nodes:WorkflowNode",
    "process.calculation": "plait.orm.process_nodes:CalculationNode",
}


def import_object(path: str) -> object:
    """Import ``"package.module:Qual.Name"`` and return the object.

    Raises:
        ImportError: the module or the name cannot be found (message names both).
    """
    module_name, _, qualname = path.partition(":")
    if not qualname:
        raise ImportError(f"'{path}' is not of the form 'module:QualName'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module '{module_name}' for '{path}': {exc}") from exc
    for part in qualname.split("."):
        if part == "<locals>":
            raise ImportError(f"'{path}' was defined inside a function and cannot be imported again")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module '{module_name}' has no attribute '{qualname}'") from None
    return obj


@cache
def _entry_point_data_types() -> dict[str, str]:
    from plait.plugins.entry_points import plugin_entry_points

    return {f"data.{name}": ep.value for name, ep in plugin_entry_points("data").items()}


@cache
def node_class_for(node_type: str) -> type[Node]:
    """The class for ``node_type``; the closest base class if the type cannot be imported."""
    path = BUILTIN_NODE_TYPES.get(node_type)
    if path is None and ":" in node_type:
        path = node_type
    if path is None:
        path = _entry_point_data_types().get(node_type)
    if path is not None:
        try:
            # the path was recorded from a Node subclass, or registered as one
            return cast("type[Node]", import_object(path))
        except ImportError:
            pass
    from plait.orm.node import Data, Node
    from plait.orm.process_nodes import ProcessNode

    if node_type.startswith("process."):
        return ProcessNode
    if node_type.startswith("data."):
        return Data
    return Node
