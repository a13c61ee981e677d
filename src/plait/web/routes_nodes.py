"""``/api/nodes``: one node's attributes, extras, links and files, a file's download, its provenance graph."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from plait.orm import Node
from plait.web.errors import ApiError
from plait.web.lookup import get_node
from plait.web.serialize import json_value, node_summary

__all__ = ["router"]

router = APIRouter(prefix="/api/nodes", tags=["nodes"])

Pk = Annotated[int, Path(ge=1, le=2**63 - 1, description="the node's pk")]


def _links(node: Node, incoming: bool) -> list[dict[str, Any]]:
    found = node.get_incoming() if incoming else node.get_outgoing()
    return [
        {"label": label.replace("__", "."), "link_type": kind.value, "node": node_summary(other)}
        for label, kind, other in found
    ]


@router.get("/{pk}", summary="One node: attributes, extras, files, incoming and outgoing links")
def show_node(pk: Pk) -> dict[str, Any]:
    node = get_node(pk)
    return {
        **node_summary(node),
        "description": node.description,
        "mtime": json_value(node.mtime),
        "attributes": json_value(node.attributes),
        "extras": json_value(node.extras),
        "files": node.list_file_paths(),
        "incoming": _links(node, incoming=True),
        "outgoing": _links(node, incoming=False),
    }


@router.get(
    "/{pk}/files/{path:path}",
    summary="Download one file of a node",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_file(pk: Pk, path: str) -> Response:
    node = get_node(pk)
    try:
        data = node.get_object_content(path, mode="rb")
    except FileNotFoundError as exc:
        raise ApiError(404, str(exc), "path") from None
    except ValueError as exc:  # an unsafe path: absolute, '..', NUL
        raise ApiError(422, str(exc), "path") from None
    name = path.rsplit("/", 1)[-1].replace('"', "")
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=kind, headers=headers)


Depth = Annotated[int, Query(ge=0, le=10, description="links to follow that way")]


def _graph(pk: int, ancestors: int, descendants: int) -> Any:
    from plait.orm.provenance_graph import collect_graph
    from plait.storage import get_backend

    node = get_node(pk)
    assert node.pk is not None
    return collect_graph(get_backend(), node.pk, ancestors=ancestors, descendants=descendants)


@router.get("/{pk}/graph", summary="The provenance graph around a node, as JSON (nodes and links)")
def node_graph(pk: Pk, ancestors: Depth = 1, descendants: Depth = 1) -> dict[str, Any]:
    graph = _graph(pk, ancestors, descendants)
    nodes = []
    for node_pk in sorted(graph.nodes):
        row = graph.nodes[node_pk]
        entry = {
            key: json_value(row.get(key)) for key in ("id", "uuid", "node_type", "process_type", "label")
        }
        entry["pk"] = entry.pop("id")
        if node_pk in graph.processes:
            entry["process"] = json_value(graph.processes[node_pk])
        nodes.append(entry)
    links = [
        {
            "source": link["input_id"],
            "target": link["output_id"],
            "label": link["label"].replace("__", "."),
            "link_type": link["link_type"],
        }
        for link in graph.links
    ]
    return {"center": graph.center, "nodes": nodes, "links": links}


@router.get(
    "/{pk}/graph.svg",
    summary="The provenance graph around a node, drawn by Graphviz as SVG (as plait node graph draws it)",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}},
        503: {"description": "Graphviz's dot is not installed on the server, or it failed"},
    },
)
def node_graph_svg(
    pk: Pk,
    ancestors: Depth = 1,
    descendants: Depth = 1,
    highlight_class: Annotated[
        str | None, Query(max_length=200, description="fill the nodes of this class (e.g. Int)")
    ] = None,
) -> Response:
    from plait.orm.provenance_dot import GraphvizError, render_with_graphviz, to_dot

    graph = _graph(pk, ancestors, descendants)
    text, _ = to_dot(graph, highlight_class)
    try:
        svg = render_with_graphviz(text, "svg", timeout=60)
    except GraphvizError as exc:
        raise ApiError(503, str(exc)) from None
    # an SVG opened on its own is a document: it may run nothing
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    }
    return Response(svg, media_type="image/svg+xml", headers=headers)
