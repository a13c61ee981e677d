"""How AiiDA's entity types and names map to plait's, in both directions.

AiiDA names a node type by the module path of its class with the class name and a trailing
dot (``data.core.int.Int.``, ``process.calculation.calcfunction.CalcFunctionNode.``); plait names
it without the class (``data.core.int``, ``process.calcfunction``).  :func:`plait_node_type`
maps one to the other:

* the process nodes of aiida-core map to plait's five process node types;
* any data type maps to ``data.<module path>``: the core types plait has (Int, Float, Str, Bool,
  Dict, List, SinglefileData, FolderData, RemoteData, ArrayData, the installed and portable
  codes) load as plait's classes; any other (``data.core.structure``, a plugin's type) loads as
  generic :class:`~plait.orm.Data` with every attribute and file, queryable by its node type.

Computers' transport and scheduler plugins map ``core.local``/``core.ssh``/``core.direct``/
``core.slurm``/``core.pbspro`` to plait's names; any other is kept as AiiDA named it (the
computer is then recorded but cannot run jobs until it is configured with a plait plugin).
"""

from __future__ import annotations

__all__ = [
    "AIIDA_PROCESS_ATTRIBUTES",
    "aiida_node_type",
    "plait_node_type",
    "plait_scheduler",
    "plait_transport",
]

#: aiida process node type -> plait process node type
_PROCESS_TYPES = {
    "process.calculation.calcfunction.CalcFunctionNode.": "process.calcfunction",
    "process.calculation.calcjob.CalcJobNode.": "process.calcjob",
    "process.workflow.workfunction.WorkFunctionNode.": "process.workfunction",
    "process.workflow.workchain.WorkChainNode.": "process.workchain",
    "process.workflow.WorkflowNode.": "process.workflow",
    "process.calculation.CalculationNode.": "process.calculation",
    "process.ProcessNode.": "process.workflow",
}

#: plait node type -> aiida node type, for the export (the class names aiida-core expects)
_AIIDA_TYPES = {
    "data.core.int": "data.core.int.Int.",
    "data.core.float": "data.core.float.Float.",
    "data.core.str": "data.core.str.Str.",
    "data.core.bool": "data.core.bool.Bool.",
    "data.core.dict": "data.core.dict.Dict.",
    "data.core.list": "data.core.list.List.",
    "data.core.singlefile": "data.core.singlefile.SinglefileData.",
    "data.core.folder": "data.core.folder.FolderData.",
    "data.core.remote": "data.core.remote.RemoteData.",
    "data.core.array": "data.core.array.ArrayData.",
    "data.core.code.installed": "data.core.code.installed.InstalledCode.",
    "data.core.code.portable": "data.core.code.portable.PortableCode.",
    "data.core.data": "data.Data.",
    **{plait: aiida for aiida, plait in _PROCESS_TYPES.items() if aiida != "process.ProcessNode."},
}

#: the attributes of an aiida process node that plait keeps in the process row, not in attributes
AIIDA_PROCESS_ATTRIBUTES = frozenset(
    {
        "process_state",
        "process_status",
        "process_label",
        "exit_status",
        "exit_message",
        "exception",
        "sealed",
        "paused",
    }
)

_TRANSPORTS = {"core.local": "local", "core.ssh": "ssh", "core.ssh_async": "ssh", "core.ssh_auto": "ssh"}
_SCHEDULERS = {"core.direct": "direct", "core.slurm": "slurm", "core.pbspro": "pbs", "core.torque": "pbs"}


def plait_node_type(aiida_type: str) -> str:
    """plait's node type for an AiiDA ``node_type`` string.

    Raises:
        ValueError: the string is neither a data nor a process type (names it).
    """
    mapped = _PROCESS_TYPES.get(aiida_type)
    if mapped is not None:
        return mapped
    if aiida_type.startswith("process."):
        return "process.workflow" if ".workflow." in aiida_type else "process.calculation"
    if aiida_type == "data.Data.":
        return "data.core.data"
    parts = aiida_type.split(".")
    if parts[0] != "data" or len(parts) < 4 or parts[-1] != "" or not all(parts[:-1]):
        raise ValueError(f"AiiDA node type {aiida_type!r} is not of the form 'data.<module>.<Class>.'")
    return ".".join(parts[:-2])


def aiida_node_type(plait_type: str, original: str | None = None) -> str:
    """AiiDA's node type for a plait node type (``original``: the AiiDA type the node was imported as)."""
    if original:
        return original
    known = _AIIDA_TYPES.get(plait_type)
    if known is not None:
        return known
    if plait_type.startswith("process."):
        return "process.workflow.WorkflowNode."
    if plait_type.startswith("data.") and ":" not in plait_type:
        return f"{plait_type}.Data."
    return "data.Data."


def plait_transport(aiida_name: str) -> str:
    """plait's transport plugin name for an AiiDA transport entry point (unknown ones kept)."""
    return _TRANSPORTS.get(aiida_name, aiida_name)


def plait_scheduler(aiida_name: str) -> str:
    """plait's scheduler plugin name for an AiiDA scheduler entry point (unknown ones kept)."""
    return _SCHEDULERS.get(aiida_name, aiida_name)
