"""``plait node``: show one node, draw the provenance graph around it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
from rich.text import Text

from plait.cli._common import (
    CliError,
    CliState,
    console,
    format_time,
    kv_table,
    link_label,
    node_summary,
    pass_state,
    process_state_text,
    table,
    type_name,
)

__all__ = ["node"]

MISSING_DOT = (
    "the 'dot' program of Graphviz is not installed: "
    "install graphviz (apt install graphviz) or use --format dot"
)


@click.group()
def node() -> None:
    """Show nodes and draw their provenance."""


def _json_block(value: object) -> Text:
    return Text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) if value else "-")


def _size(size: int) -> str:
    scaled: float = size
    for unit in ("B", "kB", "MB", "GB"):
        if scaled < 1000 or unit == "GB":
            return f"{scaled} {unit}" if unit == "B" else f"{scaled:.1f} {unit}"
        scaled /= 1000
    return str(scaled)


@node.command("show")
@click.argument("identifier", metavar="PK_OR_UUID")
@pass_state
def show(state: CliState, identifier: str) -> None:
    """Show a node: identity, attributes, extras, files and links.

    PK_OR_UUID is a pk, a full uuid or a unique uuid prefix (4 characters or more).
    """
    from plait.orm import ProcessNode, load_node

    backend = state.backend()
    found = load_node(identifier)
    out = console()

    grid = kv_table()
    grid.add_row("type", Text(f"{type_name(found)} ({found.node_type})"))
    grid.add_row("pk", str(found.pk))
    grid.add_row("uuid", found.uuid)
    grid.add_row("label", Text(found.label or "-"))
    grid.add_row("description", Text(found.description or "-"))
    grid.add_row("created", format_time(found.ctime))
    grid.add_row("modified", format_time(found.mtime))
    grid.add_row("hash", found.node_hash or "-")
    if isinstance(found, ProcessNode):
        grid.add_row("process", Text(f"{found.process_label}  ").append_text(process_state_text(found)))
    else:
        summary = node_summary(found)
        if summary:
            grid.add_row("value", Text(summary))
    out.print(grid)
    if isinstance(found, ProcessNode):
        out.print(Text(f"(a process: `plait process show {found.pk}` tells more)"))

    out.print(Text("Attributes:", style="bold"))
    out.print(_json_block(found.attributes))
    out.print(Text("Extras:", style="bold"))
    out.print(_json_block(found.extras))

    row = backend.get_node(pk=found.pk) or {}
    files = row.get("files") or {}
    if files:
        listing = table("File", "Size", "sha256", title="Files")
        for path in sorted(files):
            digest, size = files[path][0], files[path][1]
            listing.add_row(Text(path), _size(int(size)), str(digest)[:16])
        out.print(listing)
    else:
        out.print(Text("Files: none"))

    for title, links in (("Incoming links", found.get_incoming()), ("Outgoing links", found.get_outgoing())):
        if not links:
            out.print(Text(f"{title}: none"))
            continue
        listing = table("Label", "Link type", "PK", "Type", "Value", title=title)
        for label, kind, other in links:
            listing.add_row(
                Text(link_label(label)),
                kind.value,
                str(other.pk),
                type_name(other),
                Text(node_summary(other)),
            )
        out.print(listing)


@node.command("graph")
@click.argument("identifier", metavar="PK_OR_UUID")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["dot", "svg", "png", "pdf"]),
    default="dot",
    show_default=True,
    help="dot is written directly; the others need the Graphviz 'dot' program.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: <pk>.<format>; '-' for stdout).",
)
@click.option(
    "--highlight-class",
    metavar="CLASS",
    help="Fill the nodes of this class (Int, CalcFunctionNode...), node type or process label.",
)
@click.option(
    "--ancestors",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Follow links this many steps upstream.",
)
@click.option(
    "--descendants",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Follow links this many steps downstream.",
)
@pass_state
def graph(
    state: CliState,
    identifier: str,
    fmt: str,
    output: Path | None,
    highlight_class: str | None,
    ancestors: int,
    descendants: int,
) -> None:
    """Draw the provenance graph around a node (inputs, creators, callers, outputs, called processes)."""
    from plait.cli._graph import collect_graph, to_dot
    from plait.orm import load_node

    backend = state.backend()
    center = load_node(identifier)
    dot_program = None
    if fmt != "dot":
        dot_program = shutil.which("dot")
        if dot_program is None:
            raise CliError(MISSING_DOT)

    assert center.pk is not None  # load_node only finds stored nodes
    found = collect_graph(backend, center.pk, ancestors=ancestors, descendants=descendants)
    text, matched = to_dot(found, highlight_class)

    to_stdout = output is not None and str(output) == "-"
    target = None if to_stdout else (output or Path(f"{center.pk}.{fmt}"))
    if dot_program is None:
        data = text.encode()
    else:
        result = subprocess.run(
            [dot_program, f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=300, check=False
        )
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
            raise CliError(f"Graphviz 'dot' failed (exit code {result.returncode}): {reason[0]}")
        data = result.stdout
    if target is None:
        sys.stdout.buffer.write(data) if hasattr(sys.stdout, "buffer") else sys.stdout.write(data.decode())
        sys.stdout.flush()
    else:
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc

    err = console(stderr=to_stdout)
    if highlight_class and not matched:
        click.echo(
            f"Warning: no node of class '{highlight_class}' in the graph, nothing highlighted.", err=True
        )
    if target is not None:
        err.print(
            Text(
                f"Wrote the provenance graph of node {center.pk} ({len(found.nodes)} nodes, "
                f"{len(found.links)} links) to {target.resolve()}"
            )
        )
