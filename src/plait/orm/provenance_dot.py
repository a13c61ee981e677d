"""The provenance graph around a node as Graphviz DOT text (no library needed), drawn by ``dot``.

``plait node graph`` and the web API's ``/api/nodes/{pk}/graph.svg`` both draw with it.

Nodes are drawn by kind: data as ellipses, calculations as rectangles,
workflows as octagons in another colour.  Edges carry the link label and
the link type; their style tells the type apart (inputs solid, created data
green, returned data dashed, calls dotted).
"""

from __future__ import annotations

from typing import Any

from plait.orm.provenance_graph import ProvenanceGraph, collect_graph

__all__ = ["GraphvizError", "ProvenanceGraph", "collect_graph", "render_with_graphviz", "to_dot"]

#: fill colour of the nodes matched by ``--highlight-class``
HIGHLIGHT_FILL = "#ffd54f"

_EDGE_STYLE = {
    "input_calc": 'style=solid, color="#37474f"',
    "input_work": 'style=solid, color="#37474f"',
    "create": 'style=solid, color="#2e7d32"',
    "return": 'style=dashed, color="#2e7d32"',
    "call_calc": 'style=dotted, color="#6d6d6d"',
    "call_work": 'style=dotted, color="#6d6d6d"',
}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _class_names(node_type: str) -> list[str]:
    from plait.orm.registry import node_class_for

    return [cls.__name__ for cls in node_class_for(node_type).__mro__ if cls is not object]


def _matches(row: dict[str, Any], process: dict[str, Any] | None, wanted: str) -> bool:
    wanted = wanted.lower()
    names = [row["node_type"], *_class_names(row["node_type"])]
    if process is not None:
        names.append(process.get("process_label") or "")
    return any(name.lower() == wanted for name in names)


def _node_statement(
    row: dict[str, Any], process: dict[str, Any] | None, center: bool, highlight: bool
) -> str:
    from plait.orm import ProcessNode
    from plait.orm.node import node_from_row
    from plait.orm.node_text import node_summary, state_text

    pk = row["id"]
    node_type = row["node_type"]
    attrs: dict[str, str] = {}
    fill = "#ffffff"
    if process is not None:
        title = f"{process['process_label']} ({pk})"
        detail = state_text(process["state"], process.get("exit_status"), bool(process.get("paused")))
        source = (row.get("attributes") or {}).get(ProcessNode.CACHED_FROM_KEY)
        if source:
            detail += f"\ncached from {source[:8]}"
        restarted = (row.get("attributes") or {}).get("restarted_from")
        if restarted is not None:  # a restart (plait.engine.restart_from): from which process and step
            step = (row.get("attributes") or {}).get("restarted_from_step")
            detail += f"\nrestarted from {restarted} " + (f"at {step}" if step else "(replayed)")
        is_workflow = node_type.startswith(("process.workflow", "process.workchain", "process.workfunction"))
        attrs["shape"] = "octagon" if is_workflow else "box"
        fill = "#e1d5f5" if is_workflow else "#d6e6f7"
        if process["state"] in ("excepted", "killed") or (
            process["state"] == "finished" and process.get("exit_status")
        ):
            attrs["color"] = '"#c62828"'
    else:
        node = node_from_row(row)
        title = f"{type(node).__name__} ({pk})"
        detail = node_summary(node, 40)
        attrs["shape"] = "ellipse"
    label = title + (f"\n{detail}" if detail else "")
    if row.get("label"):
        label += f"\n{row['label']}"
    attrs["label"] = _quote(label)
    attrs["style"] = '"filled"'
    attrs["fillcolor"] = _quote(HIGHLIGHT_FILL if highlight else fill)
    if center:
        attrs["penwidth"] = "3"
    body = ", ".join(f"{key}={value}" for key, value in attrs.items())
    return f"  n{pk} [{body}];"


def to_dot(graph: ProvenanceGraph, highlight_class: str | None = None) -> tuple[str, int]:
    """The DOT text of ``graph`` and the number of nodes that matched ``highlight_class``."""
    lines = [
        f"digraph {_quote(f'provenance of node {graph.center}')} {{",
        '  graph [rankdir=TB, fontname="Helvetica"];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    matched = 0
    for pk in sorted(graph.nodes):
        row = graph.nodes[pk]
        process = graph.processes.get(pk)
        highlight = bool(highlight_class) and _matches(row, process, highlight_class or "")
        matched += highlight
        lines.append(_node_statement(row, process, pk == graph.center, highlight))
    for link in graph.links:
        label = f"{link['label'].replace('__', '.')}\n({link['link_type']})"
        style = _EDGE_STYLE.get(link["link_type"], "style=solid")
        lines.append(f"  n{link['input_id']} -> n{link['output_id']} [label={_quote(label)}, {style}];")
    for pk, row in sorted(graph.nodes.items()):
        old = (row.get("attributes") or {}).get("restarted_from")
        if old in graph.nodes:  # not a link: the restart is an attribute of the new process
            lines.append(f'  n{old} -> n{pk} [label="restarted", style=bold, color="#ef6c00"];')
    lines.append("}")
    return "\n".join(lines) + "\n", matched


class GraphvizError(RuntimeError):
    """Graphviz's ``dot`` is missing or failed; the message says which (and its first error line)."""


def render_with_graphviz(text: str, fmt: str, timeout: float = 300) -> bytes:
    """``text`` (DOT) drawn by Graphviz's ``dot`` as ``fmt`` (svg, png, pdf).

    Raises:
        GraphvizError: ``dot`` is not installed, or it failed (its exit code and first error line).
    """
    import shutil
    import subprocess

    program = shutil.which("dot")
    if program is None:
        raise GraphvizError("Graphviz's 'dot' program is not installed (e.g. apt-get install graphviz)")
    result = subprocess.run(
        [program, f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise GraphvizError(f"Graphviz 'dot' failed (exit code {result.returncode}): {reason[0]}")
    return result.stdout
