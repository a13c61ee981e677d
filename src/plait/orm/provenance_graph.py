"""The provenance graph around a node: the nodes within some links of it, their process rows, the links.

``plait node graph`` draws it (DOT, through Graphviz) and the web API serves
it as JSON; both build it here, below the CLI and the web layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = ["ProvenanceGraph", "collect_graph"]


@dataclass
class ProvenanceGraph:
    """The nodes (rows by pk), their process rows and the links between them."""

    center: int
    nodes: dict[int, dict[str, Any]] = field(default_factory=dict)
    processes: dict[int, dict[str, Any]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)


def _walk(backend: StorageBackend, start: int, depth: int, upstream: bool, seen: set[int]) -> None:
    """Add to ``seen`` the nodes up to ``depth`` links before (upstream) or after ``start``."""
    frontier = {start}
    for _ in range(depth):
        if not frontier:
            return
        found = set()
        for link in backend.all_links(frontier):
            if upstream and link["output_id"] in frontier:
                found.add(link["input_id"])
            elif not upstream and link["input_id"] in frontier:
                found.add(link["output_id"])
        frontier = found - seen
        seen |= frontier


def collect_graph(
    backend: StorageBackend, pk: int, ancestors: int = 1, descendants: int = 1
) -> ProvenanceGraph:
    """The nodes within ``ancestors`` links upstream and ``descendants`` downstream of ``pk``.

    Every link between two collected nodes is kept, even one the walk did not follow.
    """
    seen = {pk}
    _walk(backend, pk, ancestors, True, seen)
    _walk(backend, pk, descendants, False, seen)
    graph = ProvenanceGraph(center=pk)
    graph.nodes = backend.get_nodes(sorted(seen))
    # a restarted process is drawn with the process it restarted from (an attribute, not a link)
    restarted = {(row.get("attributes") or {}).get("restarted_from") for row in graph.nodes.values()}
    extra = {old for old in restarted if isinstance(old, int)} - seen
    if extra:
        seen |= extra
        graph.nodes.update(backend.get_nodes(sorted(extra)))
    process_pks = [p for p, row in graph.nodes.items() if row["node_type"].startswith("process.")]
    if process_pks:
        from plait.orm import ProcessNode, QueryBuilder

        fields = ("id", "process_label", "process_state", "exit_status", "paused")
        query = QueryBuilder(backend).append(
            ProcessNode, filters={"id": {"in": process_pks}}, project=list(fields)
        )
        graph.processes = {
            pk: {"process_label": label, "state": state, "exit_status": exit_status, "paused": paused}
            for pk, label, state, exit_status, paused in query.all()
        }
    graph.links = sorted(
        (link for link in backend.all_links(seen) if link["input_id"] in seen and link["output_id"] in seen),
        key=lambda link: link["id"],
    )
    return graph
