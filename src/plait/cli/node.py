"""``plait node``: show a node, draw the provenance graph around it, annotate it (label, extras, comments)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from plait.orm import Node

__all__ = ["node"]

MISSING_DOT = (
    "the 'dot' program of Graphviz is not installed: "
    "install graphviz (apt install graphviz) or use --format dot"
)


@click.group()
def node() -> None:
    """Show nodes, draw their provenance, annotate them."""


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


# -- annotations: label, description, extras, comments ---------------------------------------------------

#: the longest node label the database holds
_MAX_LABEL = 255


def _annotated_node(state: CliState, identifier: str) -> Node:
    from plait.orm import load_node

    state.load_profile()
    return load_node(identifier)


@node.command("label")
@click.argument("identifier", metavar="PK_OR_UUID")
@click.argument("text", metavar="[TEXT]", required=False)
@pass_state
def label(state: CliState, identifier: str, text: str | None) -> None:
    """Print the label of a node, or set it to TEXT ('' clears it)."""
    found = _annotated_node(state, identifier)
    if text is None:
        if found.label:
            click.echo(found.label)
        else:
            click.echo(f"(node {found.pk} has no label)", err=True)
        return
    if len(text) > _MAX_LABEL:
        raise click.BadParameter(
            f"{len(text)} characters, at most {_MAX_LABEL} fit in a label", param_hint="TEXT"
        )
    found.label = text
    console().print(
        Text(f"Label of node {found.pk} set to '{text}'." if text else f"Label of node {found.pk} cleared.")
    )


@node.command("description")
@click.argument("identifier", metavar="PK_OR_UUID")
@click.argument("text", metavar="[TEXT]", required=False)
@pass_state
def description(state: CliState, identifier: str, text: str | None) -> None:
    """Print the description of a node, or set it to TEXT ('' clears it)."""
    found = _annotated_node(state, identifier)
    if text is None:
        if found.description:
            click.echo(found.description)
        else:
            click.echo(f"(node {found.pk} has no description)", err=True)
        return
    found.description = text
    console().print(Text(f"Description of node {found.pk} {'set' if text else 'cleared'}."))


def _parse_extra(assignment: str) -> tuple[str, object]:
    """``KEY=JSON`` as (key, value), or a usage error that names the key and says what is wrong."""
    from plait.orm.errors import StoringNotAllowed
    from plait.orm.node import check_json

    key, equals, raw = assignment.partition("=")
    key = key.strip()
    if not equals or not key:
        raise click.BadParameter(
            f"'{assignment}' is not KEY=JSON (for example n=3 or tag='\"best\"')", param_hint="--set"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"the value of extra '{key}', {raw!r}, is not JSON ({exc.msg}); "
            f"a string needs JSON quotes: {key}='\"{raw}\"'",
            param_hint="--set",
        ) from None
    try:
        check_json(value, f"extra '{key}'")
    except StoringNotAllowed as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None
    return key, value


@node.command("extras")
@click.argument("identifier", metavar="PK_OR_UUID")
@click.option("--set", "assignments", metavar="KEY=JSON", multiple=True, help="Set an extra to a JSON value.")
@click.option("--delete", "deletions", metavar="KEY", multiple=True, help="Remove an extra.")
@pass_state
def extras(
    state: CliState, identifier: str, assignments: tuple[str, ...], deletions: tuple[str, ...]
) -> None:
    """Print the extras of a node as JSON, after setting and removing the ones given.

    All changes are checked first, then written in one transaction: a bad
    value or an unknown key changes nothing.
    """
    changes = dict(_parse_extra(a) for a in assignments)
    both = sorted(set(changes) & set(deletions))
    if both:
        raise click.UsageError(
            f"extra '{both[0]}' is both set and deleted: give one of --set, --delete for it"
        )
    found = _annotated_node(state, identifier)
    absent = [key for key in deletions if key not in found.extras]
    if absent:
        known = ", ".join(sorted(found.extras)) or "none"
        raise click.BadParameter(
            f"node {found.pk} has no extra '{absent[0]}' (its extras: {known})", param_hint="--delete"
        )
    if changes or deletions:
        with state.backend().transaction():
            for key, value in changes.items():
                found.set_extra(key, value)
            for key in deletions:
                found.delete_extra(key)
    click.echo(json.dumps(found.extras, indent=2, sort_keys=True, ensure_ascii=False))


@node.group("comment")
def comment() -> None:
    """Notes on nodes: add, show, update, remove."""


def _comment_text(text: str) -> str:
    if not text.strip():
        raise click.BadParameter("a comment needs some text: it is empty", param_hint="TEXT")
    return text


@comment.command("add")
@click.argument("identifier", metavar="PK_OR_UUID")
@click.argument("text")
@pass_state
def comment_add(state: CliState, identifier: str, text: str) -> None:
    """Add the comment TEXT to a node (as the profile's user)."""
    found = _annotated_node(state, identifier)
    made = found.add_comment(_comment_text(text))
    console().print(Text(f"Added comment {made.pk} to node {found.pk}."))


@comment.command("show")
@click.argument("identifier", metavar="PK_OR_UUID")
@pass_state
def comment_show(state: CliState, identifier: str) -> None:
    """Show the comments on a node, oldest first."""
    found = _annotated_node(state, identifier)
    notes = found.get_comments()
    out = console()
    if not notes:
        out.print(Text(f"Node {found.pk} has no comments: plait node comment add {found.pk} TEXT"))
        return
    for note in notes:
        edited = f", edited {format_time(note.mtime)}" if note.mtime != note.ctime else ""
        out.print(
            Text(f"Comment {note.pk} by {note.user_email}, {format_time(note.ctime)}{edited}", style="bold")
        )
        for line in note.content.splitlines() or [""]:
            out.print(Text("  " + line))


@comment.command("update")
@click.argument("comment_id", metavar="COMMENT_ID", type=click.IntRange(min=1))
@click.argument("text")
@pass_state
def comment_update(state: CliState, comment_id: int, text: str) -> None:
    """Replace the text of a comment."""
    from plait.orm import Comment

    state.load_profile()
    note = Comment.get(comment_id)
    note.set_content(_comment_text(text))
    console().print(Text(f"Comment {comment_id} on node {note.node_pk} updated."))


@comment.command("remove")
@click.argument("comment_id", metavar="COMMENT_ID", type=click.IntRange(min=1))
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def comment_remove(state: CliState, comment_id: int, force: bool) -> None:
    """Remove a comment (its pk is shown by `plait node comment show`)."""
    from plait.orm import Comment

    state.load_profile()
    note = Comment.get(comment_id)
    first = (note.content.splitlines() or [""])[0]
    first = first if len(first) <= 50 else first[:47] + "..."
    question = f"Remove comment {comment_id} on node {note.node_pk} by {note.user_email} ('{first}')"
    if not force and not click.confirm(question + "?", default=False, err=True):
        raise CliError(f"cancelled: comment {comment_id} was not removed")
    note.delete()
    console().print(Text(f"Removed comment {comment_id} from node {note.node_pk}."))
