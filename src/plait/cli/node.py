"""``plait node``: show a node, draw the provenance graph around it, annotate it (label, extras, comments)."""

from __future__ import annotations

import json
import shutil
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
    relative_time,
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


def data_class(name: str) -> type[Node]:
    """The data class that ``name`` means: a class name (``Int``), a node type (``data.core.int``)
    or the entry point name of a data plugin (``core.int``); case does not matter for class names.

    Raises:
        click.BadParameter: no data class of that name, or a process class (naming ``--type``).
    """
    from plait.orm import Data, ProcessNode
    from plait.orm.registry import BUILTIN_NODE_TYPES, import_object, node_class_for
    from plait.plugins.entry_points import plugin_entry_points

    builtin = {node_type: import_object(path) for node_type, path in BUILTIN_NODE_TYPES.items()}
    plugins = plugin_entry_points("data")
    found: object = None
    if name in builtin or ":" in name:
        found = node_class_for(name)
    elif name.startswith("data.") and name[len("data.") :] in plugins:
        found = plugins[name[len("data.") :]].load()
    elif name in plugins:
        found = plugins[name].load()
    else:  # a class name, among the node classes imported now (every built-in one is)
        by_name: dict[str, type] = {cls.__name__.lower(): cls for cls in (Data, ProcessNode)}
        stack: list[type] = [Data, ProcessNode]
        while stack:
            subclasses: list[type] = stack.pop().__subclasses__()
            for sub in subclasses:
                by_name.setdefault(sub.__name__.lower(), sub)
                stack.append(sub)
        found = by_name.get(name.lower())
    if isinstance(found, type) and issubclass(found, ProcessNode):
        raise click.BadParameter(
            f"{name} is a kind of process, not of data: list processes with `plait process list`",
            param_hint="'--type'",
        )
    if not (isinstance(found, type) and issubclass(found, Data)):
        names = sorted(
            cls.__name__ for cls in builtin.values() if isinstance(cls, type) and issubclass(cls, Data)
        )
        raise click.BadParameter(
            f"no data type '{name}': give a class name ({', '.join(names)}...), a node type or a plugin name",
            param_hint="'--type'",
        )
    return found


@node.command("list")
@click.option(
    "-t",
    "--type",
    "types",
    multiple=True,
    metavar="TYPE",
    help="Only data of this type: Int, Dict, data.core.int, core.int... (repeatable: any of them).",
)
@click.option(
    "-f",
    "--filter",
    "expressions",
    multiple=True,
    metavar="EXPR",
    help="Only nodes that pass EXPR: 'attributes.value>3', 'label=foo', 'label like relax%' "
    "(repeatable: all of them).",
)
@click.option(
    "-p",
    "--past-days",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="Only nodes created in the last DAYS days.",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the N most recent nodes.")
@pass_state
def list_(
    state: CliState,
    types: tuple[str, ...],
    expressions: tuple[str, ...],
    past_days: int | None,
    limit: int | None,
) -> None:
    """List data nodes, oldest first: pk, creation time, type, label and value.

    A filter EXPR is FIELD OPERATOR VALUE.  FIELD is a column (id, uuid, label, description,
    ctime, mtime, node_type) or a path into the attributes or extras (attributes.value,
    extras.tag); OPERATOR one of = == != > < >= <= (no spaces needed) or, between spaces, like,
    ilike, in, contains, has_key, of_length, longer, shorter, of_type (a '!' in front negates
    it); VALUE is read as the field's type (JSON for attributes and extras: 3, 2.5, true, "3";
    comma-separated lists for in and contains).
    """
    import datetime as _dt

    from plait.orm import Data, InvalidQueryError, QueryBuilder
    from plait.orm.query_filters import DATA_FIELDS, parse_filter_expression

    classes = tuple(dict.fromkeys(data_class(name) for name in types)) or (Data,)
    conditions = []
    for expression in expressions:
        try:
            conditions.append(parse_filter_expression(expression, DATA_FIELDS))
        except InvalidQueryError as exc:
            raise click.BadParameter(str(exc), param_hint="'--filter'") from None
    if past_days:
        conditions.append({"ctime": {">=": _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=past_days)}})
    state.backend()
    query = QueryBuilder().append(classes, tag="node", filters={"and": conditions}, project="*")
    if limit is not None:  # the most recent ones, shown oldest first
        found = query.order_by({"node": {"id": "desc"}}).limit(limit).all(flat=True)[::-1]
    else:
        found = query.order_by({"node": "id"}).all(flat=True)

    out = console()
    now = _dt.datetime.now(_dt.UTC)
    listing = table("PK", "Created", "Type", "Label", "Value")
    for item in found:
        listing.add_row(
            str(item.pk),
            relative_time(item.ctime, now),
            type_name(item),
            Text(item.label),
            Text(node_summary(item)),
        )
    if found:
        out.print(listing)
    what = "data node" if classes == (Data,) else " or ".join(cls.__name__ for cls in classes) + " node"
    total = f"Total: {len(found)} {what}{'s' if len(found) != 1 else ''}"
    out.print(Text(total + (f", the {limit} most recent" if limit else "")))


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
    from plait.orm import load_node
    from plait.orm.provenance_dot import GraphvizError, collect_graph, render_with_graphviz, to_dot

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
        try:
            data = render_with_graphviz(text, fmt)
        except GraphvizError as exc:
            raise CliError(str(exc)) from None
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


# -- plait node delete ------------------------------------------------------------------------------

#: rows of the listing that ``plait node delete`` prints before it asks (the counts cover them all)
DELETE_LISTING_LIMIT = 1000


def _deletion_pks(state: CliState, identifiers: tuple[str, ...]) -> list[int]:
    """The pks meant by PK_OR_UUID arguments; a uuid (prefix) that matches no node is an error."""
    from plait.orm.errors import NotExistentError

    backend = None
    pks: list[int] = []
    for identifier in identifiers:
        if identifier.isdigit():
            pks.append(int(identifier))
            continue
        backend = backend or state.backend()
        row = backend.get_node(uuid=identifier)
        if row is None:
            raise NotExistentError(f"no node with uuid '{identifier}': nothing was deleted")
        pks.append(int(row["id"]))
    return pks


def _print_deletion(pks: set[int]) -> None:
    """Counts by type, then the nodes (pk, type, label, process state), of a set about to be deleted."""
    from collections import Counter

    from plait.cli._common import state_style, state_text
    from plait.orm import Node, ProcessNode, QueryBuilder
    from plait.orm.registry import node_class_for

    ordered = sorted(pks)
    rows = (
        QueryBuilder()
        .append(Node, filters={"id": {"in": ordered}}, project=["id", "node_type", "label"])
        .all()
    )
    states = {
        pk: (label, process_state, exit_status)
        for pk, label, process_state, exit_status in QueryBuilder()
        .append(
            ProcessNode,
            filters={"id": {"in": ordered}},
            project=["id", "process_label", "process_state", "exit_status"],
        )
        .all()
    }
    kinds = {node_type: node_class_for(node_type).__name__ for node_type in {row[1] for row in rows}}
    counts = Counter(kinds[row[1]] for row in rows)
    out = console()
    processes = len(states)
    out.print(
        Text(
            f"{len(rows)} node{'s' if len(rows) != 1 else ''} will be deleted "
            f"({len(rows) - processes} data, {processes} process{'es' if processes != 1 else ''}): "
            + ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
        )
    )
    listing = table("PK", "Type", "Label", "State")
    for pk, node_type, node_label in sorted(rows)[:DELETE_LISTING_LIMIT]:
        if pk in states:
            process_label, process_state, exit_status = states[pk]
            shown = Text(
                state_text(process_state, exit_status), style=state_style(process_state, exit_status)
            )
            listing.add_row(str(pk), kinds[node_type], Text(process_label or node_label or "-"), shown)
        else:
            listing.add_row(str(pk), kinds[node_type], Text(node_label or "-"), "")
    out.print(listing)
    if len(rows) > DELETE_LISTING_LIMIT:
        out.print(Text(f"... and {len(rows) - DELETE_LISTING_LIMIT} more, not listed (counted above)"))


@node.command("delete")
@click.argument("identifiers", nargs=-1, required=True, metavar="PK_OR_UUID...")
@click.option("--dry-run", "-n", is_flag=True, help="List what would be deleted, and delete nothing.")
@click.option("--force", "-f", is_flag=True, help="Delete without asking for confirmation.")
@click.option(
    "--create-forward/--no-create-forward",
    default=True,
    show_default=True,
    help="Delete the data that deleted calculations created.",
)
@click.option(
    "--call-calc-forward/--no-call-calc-forward",
    default=True,
    show_default=True,
    help="Delete the calculations that deleted workflows called.",
)
@click.option(
    "--call-work-forward/--no-call-work-forward",
    default=True,
    show_default=True,
    help="Delete the workflows that deleted workflows called.",
)
@pass_state
def delete(
    state: CliState,
    identifiers: tuple[str, ...],
    dry_run: bool,
    force: bool,
    create_forward: bool,
    call_calc_forward: bool,
    call_work_forward: bool,
) -> None:
    """Delete nodes, and every node that provenance ties to them.

    Deleting data deletes the processes that used it and what they made; deleting a process
    deletes the workflows that called it and the data it created (AiiDA's provenance rules, see
    docs/deletion.md). The whole set is listed first, and deleted only when you confirm
    (--force: without asking). A process that is not terminated is never deleted. The files of the
    deleted nodes stay in the repository until `plait storage maintain`.
    """
    from plait.orm import delete_nodes

    pks = _deletion_pks(state, identifiers)
    state.backend()

    def show_and_confirm(found: set[int]) -> bool:
        """True stops (dry run, or not confirmed); False deletes."""
        _print_deletion(found)
        if dry_run:
            return True
        if force:
            return False
        try:
            confirmed = click.confirm(f"Delete these {len(found)} nodes?", default=False)
        except click.exceptions.Abort:
            raise CliError(
                "no answer to the confirmation (is stdin a terminal?): nothing was deleted; "
                "use --force to delete without asking"
            ) from None
        return not confirmed

    found, deleted = delete_nodes(
        pks,
        dry_run=show_and_confirm,
        create_forward=create_forward,
        call_calc_forward=call_calc_forward,
        call_work_forward=call_work_forward,
    )
    out = console()
    if dry_run:
        out.print(Text("Dry run: nothing was deleted."))
    elif not deleted:
        raise CliError("not confirmed: nothing was deleted")
    else:
        out.print(
            Text(
                f"Deleted {len(found)} node{'s' if len(found) != 1 else ''}. Their files stay in the "
                "repository until `plait storage maintain` removes those no node refers to.",
                style="green",
            )
        )


@node.command("rehash")
@click.argument("identifiers", nargs=-1, metavar="[PK_OR_UUID]...")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Nodes per transaction."
)
@pass_state
def rehash(state: CliState, identifiers: tuple[str, ...], batch_size: int) -> None:
    """Recompute the hash of the nodes given (every node when none is given).

    Caching matches calculations by hash, and the hash of a calculation covers the version of
    the plugin that provides it: after upgrading a plugin (or plait), rehash so that old results
    stop serving where they should (see docs/caching.md).
    """
    from plait.engine.caching import rehash_nodes
    from plait.orm import load_node

    state.backend()
    pks = [load_node(identifier).pk for identifier in identifiers] or None
    report = rehash_nodes([pk for pk in pks if pk is not None] if pks else None, batch_size=batch_size)
    out = console()
    out.print(Text(f"Rehashed {report.changed + report.unchanged} nodes: {report.changed} hashes changed."))
    if report.skipped:
        shown = ", ".join(map(str, report.skipped[:20])) + (" ..." if len(report.skipped) > 20 else "")
        out.print(
            Text(
                f"Kept the old hash of {len(report.skipped)} process nodes whose class cannot be "
                f"imported: {shown}",
                style="yellow",
            )
        )
