"""``plait group``: create, list, show, fill, empty, relabel, copy and delete groups of nodes.

A group is named by its label, its pk or (a unique prefix of) its uuid,
resolved by :func:`plait.orm.load_group` (an exact label first).  Nodes are
named by pk or uuid.  Every change is checked before anything is written:
unknown nodes are listed in one error and nothing is added or removed.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

import click
from rich.text import Text

from plait.cli._common import (
    CliError,
    CliState,
    console,
    format_time,
    kv_table,
    node_summary,
    pass_state,
    table,
    type_name,
)

if TYPE_CHECKING:
    from plait.orm import Group, Node

__all__ = ["group"]


@click.group()
def group() -> None:
    """Collect nodes in named groups: create, list, show, add, remove, relabel, copy, delete."""


def _load_group(state: CliState, identifier: str) -> Group:
    from plait.orm import load_group

    state.load_profile()
    return load_group(identifier)


def _new_group(label: str, description: str = "", hint: str = "LABEL") -> Group:
    """An unstored group, a bad label reported as a usage error naming it (as argument ``hint``)."""
    from plait.orm import Group

    try:
        return Group(label, description=description)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _load_nodes(state: CliState, identifiers: tuple[str, ...], refusal: str) -> list[Node]:
    """The nodes named by pks (read in bulk) or uuids; every unknown one listed in one error.

    Raises:
        CliError: some identifiers name no node (``refusal`` says what was not done).
    """
    from plait.orm import load_node
    from plait.orm.errors import NotExistentError
    from plait.orm.node import node_from_row

    backend = state.backend()
    pks = sorted({int(i) for i in identifiers if i.isdigit()})
    rows: dict[int, dict[str, object]] = {}
    for start in range(0, len(pks), backend.ID_BATCH):
        rows.update(backend.get_nodes(pks[start : start + backend.ID_BATCH]))
    missing = [str(pk) for pk in pks if pk not in rows]
    found = [node_from_row(rows[pk]) for pk in pks if pk in rows]
    for identifier in identifiers:
        if identifier.isdigit():
            continue
        try:
            found.append(load_node(identifier))
        except NotExistentError:
            missing.append(identifier)
    if missing:
        raise CliError(
            f"no node with pk or uuid {', '.join(missing)} in profile '{state.load_profile().name}': "
            + refusal
        )
    return found


@group.command("create")
@click.argument("label")
@click.option("-d", "--description", default="", help="What the group is for.")
@pass_state
def create(state: CliState, label: str, description: str) -> None:
    """Create an empty group called LABEL (labels are unique)."""
    new = _new_group(label, description)
    state.load_profile()
    new.store()
    console().print(Text(f"Created group '{new.label}' (pk {new.pk})."))


@group.command("list")
@click.option("-a", "--all-types", is_flag=True, help="Also list groups that tools made (any type string).")
@click.option(
    "-T",
    "--type-string",
    metavar="TYPE",
    help="Only groups of this type string (default: core, the groups people make).",
)
@click.option(
    "-N", "--node", "node_identifier", metavar="PK_OR_UUID", help="Only the groups holding this node."
)
@pass_state
def list_groups(
    state: CliState, all_types: bool, type_string: str | None, node_identifier: str | None
) -> None:
    """The groups, with their number of nodes."""
    from plait.orm import Group, load_node

    if all_types and type_string:
        raise click.UsageError("give --all-types or --type-string, not both")
    backend = state.backend()
    node_pk = load_node(node_identifier).pk if node_identifier else None
    rows = backend.list_groups(node_id=node_pk)
    wanted = None if all_types else (type_string or Group.DEFAULT_TYPE_STRING)
    shown = [row for row in rows if wanted is None or row["type_string"] == wanted]
    out = console()
    if not shown:
        where = f" holding node {node_pk}" if node_pk is not None else ""
        kind = f" of type '{wanted}'" if wanted is not None and rows else ""
        out.print(
            Text(
                f"No groups{kind}{where}."
                + ("" if rows or node_pk else " Make one: plait group create LABEL")
            )
        )
    else:
        columns = [
            "PK",
            "Label",
            *(["Type"] if wanted is None else []),
            "Nodes",
            "User",
            "Created",
            "Description",
        ]
        listing = table(*columns)
        for row in shown:
            listing.add_row(
                str(row["id"]),
                Text(row["label"]),
                *([Text(row["type_string"])] if wanted is None else []),
                str(row["count"]),
                Text(row["user_email"]),
                format_time(row["ctime"]),
                Text(row["description"] or ""),
            )
        out.print(listing)
    hidden = len(rows) - len(shown)
    if hidden and wanted is not None:
        out.print(Text(f"({_plural(hidden, 'group')} of other types: --all-types lists them)"))


@group.command("show")
@click.argument("identifier", metavar="LABEL")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="List at most this many nodes (0: all of them).",
)
@click.option("--raw", is_flag=True, help="Print only the pks of the nodes, one a line (all of them).")
@pass_state
def show(state: CliState, identifier: str, limit: int, raw: bool) -> None:
    """Show a group (LABEL, pk or uuid) and its nodes as a table."""
    found = _load_group(state, identifier)
    if raw:
        for pk in found.nodes.pks():
            click.echo(pk)
        return
    out = console()
    total = found.count()
    grid = kv_table()
    grid.add_row("label", Text(found.label))
    grid.add_row("pk", str(found.pk))
    grid.add_row("uuid", found.uuid)
    grid.add_row("type", Text(found.type_string))
    grid.add_row("description", Text(found.description or "-"))
    grid.add_row("user", Text(found.user_email))
    grid.add_row("created", format_time(found.ctime))
    grid.add_row("nodes", str(total))
    if found.extras:
        import json

        grid.add_row("extras", Text(json.dumps(found.extras, sort_keys=True, ensure_ascii=False)))
    out.print(grid)
    if not total:
        out.print(Text(f"The group is empty: plait group add {found.label} PK..."))
        return
    listing = table("PK", "Type", "Label", "Value", "Created", title="Nodes")
    for member in islice(found.nodes, limit or None):
        listing.add_row(
            str(member.pk),
            type_name(member),
            Text(member.label),
            Text(node_summary(member)),
            format_time(member.ctime),
        )
    out.print(listing)
    if limit and total > limit:
        out.print(Text(f"(the first {limit} of {total} nodes: --limit 0 lists all, --raw prints every pk)"))


@group.command("add")
@click.argument("identifier", metavar="LABEL")
@click.argument("nodes", metavar="PK...", nargs=-1, required=True)
@pass_state
def add(state: CliState, identifier: str, nodes: tuple[str, ...]) -> None:
    """Add nodes (pks or uuids) to a group; nodes already in it stay as they are."""
    found = _load_group(state, identifier)
    members = _load_nodes(state, nodes, f"nothing was added to group '{found.label}'")
    before = found.count()
    found.add_nodes(members)
    total = found.count()
    added = total - before
    already = len({m.pk for m in members}) - added
    note = f" ({already} already in it)" if already > 0 else ""
    console().print(Text(f"Added {_plural(added, 'node')} to group '{found.label}'{note}; it holds {total}."))


@group.command("remove")
@click.argument("identifier", metavar="LABEL")
@click.argument("nodes", metavar="PK...", nargs=-1, required=True)
@pass_state
def remove(state: CliState, identifier: str, nodes: tuple[str, ...]) -> None:
    """Remove nodes (pks or uuids) from a group; the nodes themselves stay."""
    found = _load_group(state, identifier)
    members = _load_nodes(state, nodes, f"nothing was removed from group '{found.label}'")
    before = found.count()
    found.remove_nodes(members)
    total = found.count()
    removed = before - total
    absent = len({m.pk for m in members}) - removed
    note = f" ({absent} were not in it)" if absent > 0 else ""
    console().print(
        Text(f"Removed {_plural(removed, 'node')} from group '{found.label}'{note}; it holds {total}.")
    )


@group.command("relabel")
@click.argument("identifier", metavar="LABEL")
@click.argument("new_label", metavar="NEW")
@pass_state
def relabel(state: CliState, identifier: str, new_label: str) -> None:
    """Change the label of a group."""
    found = _load_group(state, identifier)
    old = found.label
    _new_group(new_label, hint="NEW")  # the same checks as at creation, as a usage error
    found.label = new_label
    console().print(Text(f"Relabelled group '{old}' to '{found.label}'."))


@group.command("copy")
@click.argument("source", metavar="SOURCE")
@click.argument("destination", metavar="DEST")
@click.option(
    "-f", "--force", is_flag=True, help="Do not ask before adding to a group that has nodes already."
)
@pass_state
def copy(state: CliState, source: str, destination: str, force: bool) -> None:
    """Add every node of group SOURCE to group DEST, made (with SOURCE's description) if it does not exist."""
    from plait.orm import Group

    found = _load_group(state, source)
    _new_group(destination, hint="DEST")  # the same checks as at creation, as a usage error
    target = Group.get_or_create(destination, description=found.description)[0]
    if target == found:
        raise click.BadParameter(f"'{destination}' is the source group itself", param_hint="DEST")
    existing = target.count()
    if existing and not force:
        question = (
            f"Group '{target.label}' holds {_plural(existing, 'node')} already: "
            f"add the nodes of '{found.label}' to them"
        )
        if not click.confirm(question + "?", default=False, err=True):
            raise CliError(f"cancelled: nothing was copied to group '{target.label}'")
    added = target.add_nodes_from(found)
    console().print(
        Text(
            f"Copied {_plural(added, 'node')} from group '{found.label}' to '{target.label}'; "
            f"it holds {target.count()}."
        )
    )


@group.command("delete")
@click.argument("identifier", metavar="LABEL")
@click.option(
    "--delete-nodes",
    is_flag=True,
    help="Also delete the group's nodes, and what the provenance rules delete with them "
    "(as plait node delete).",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, identifier: str, delete_nodes: bool, force: bool) -> None:
    """Delete a group; its nodes stay unless --delete-nodes is given.

    With --delete-nodes the nodes go through the same rules as `plait node
    delete`: what provenance ties to them goes too (you are shown how many
    before you confirm), and nothing is deleted, the group included, if a
    process among them has not terminated.
    """
    found = _load_group(state, identifier)
    count = found.count()
    out = console()
    pks = list(found.nodes.pks()) if delete_nodes else []
    if not pks:
        kept = "; the nodes stay" if count else ""
        question = f"Delete group '{found.label}' (pk {found.pk}, {_plural(count, 'node')}{kept})"
        if not force and not click.confirm(question + "?", default=False, err=True):
            raise CliError(f"cancelled: group '{found.label}' was not deleted")
        found.delete()
        out.print(
            Text(
                f"Deleted group '{found.label}'" + (f"; its {_plural(count, 'node')} stay." if count else ".")
            )
        )
        return

    from plait.orm.deletion import delete_nodes as delete_node_set

    def stop(doomed: set[int]) -> bool:
        """Ask; True stops (nothing deleted)."""
        extra = len(doomed - set(pks))
        question = f"Delete group '{found.label}' (pk {found.pk}) and its {_plural(len(pks), 'node')}"
        if extra:
            question += f", with {_plural(extra, 'more node')} that provenance ties to them"
        return not click.confirm(question + "? This cannot be undone", default=False, err=True)

    deleted, done = delete_node_set(pks, dry_run=False if force else stop)
    if not done:
        raise CliError(f"cancelled: group '{found.label}' and its nodes were not deleted")
    found.delete()
    out.print(Text(f"Deleted group '{found.label}' and {_plural(len(deleted), 'node')}."))
