"""The provenance of a process as a rich tree: its inputs, the processes it called, its outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from rich.tree import Tree

from plait.cli._common import link_label, node_summary, process_state_text, type_name

if TYPE_CHECKING:
    from plait.orm import Node, ProcessNode

__all__ = ["provenance_tree"]


def _data_line(label: str, node: Node) -> Text:
    return Text.assemble(
        (link_label(label), "bold"),
        f": {type_name(node)} (pk {node.pk})",
        ("  " + node_summary(node), "cyan"),
    )


def _process_line(label: str | None, node: ProcessNode) -> Text:
    head = f"{link_label(label)}: " if label and label != "CALL" else ""
    return Text.assemble(
        (head, "bold"), (node.process_label, "bold"), f" (pk {node.pk})  ", process_state_text(node)
    )


def _inline(pairs: list[tuple[str, Node]]) -> Text:
    if not pairs:
        return Text("-")
    text = Text()
    for index, (label, node) in enumerate(pairs):
        if index:
            text.append(", ")
        text.append(link_label(label), "bold")
        text.append(f" = {type_name(node)} (pk {node.pk}) ")
        text.append(node_summary(node, 30), "cyan")
    return text


def _links(
    node: ProcessNode,
) -> tuple[list[tuple[str, Node]], list[tuple[str, ProcessNode]], list[tuple[str, Node]]]:
    from plait.orm import LinkType

    inputs = [(label, n) for label, _, n in node.get_incoming((LinkType.INPUT_CALC, LinkType.INPUT_WORK))]
    # CALL links join process nodes only, so their far end loads as a ProcessNode
    called = [
        (label, cast("ProcessNode", n))
        for label, _, n in node.get_outgoing((LinkType.CALL_CALC, LinkType.CALL_WORK))
    ]
    outputs = [(label, n) for label, _, n in node.get_outgoing((LinkType.CREATE, LinkType.RETURN))]
    return inputs, called, outputs


def _fill(branch: Tree, node: ProcessNode, depth: int, max_depth: int) -> None:
    from plait.orm import WorkflowNode

    inputs, called, outputs = _links(node)
    if not isinstance(node, WorkflowNode) and depth > 0:
        branch.add(Text.assemble(("inputs  ", "dim"), _inline(inputs)))
        branch.add(Text.assemble(("outputs ", "dim"), _inline(outputs)))
        return
    ins = branch.add(Text("inputs", style="dim"))
    for label, value in inputs:
        ins.add(_data_line(label, value))
    if called:
        calls = branch.add(Text(f"called ({len(called)})", style="dim"))
        for label, child in called:
            sub = calls.add(_process_line(label, child))
            if depth + 1 <= max_depth:
                _fill(sub, child, depth + 1, max_depth)
    outs = branch.add(Text("outputs", style="dim"))
    for label, value in outputs:
        outs.add(_data_line(label, value))
    if not outputs:
        outs.add(Text("-"))


def provenance_tree(node: ProcessNode, max_depth: int = 5) -> Tree:
    """The tree of ``node``: inputs, called processes (recursively, up to ``max_depth``), outputs."""
    tree = Tree(_process_line(None, node), guide_style="dim")
    _fill(tree, node, 0, max_depth)
    return tree
