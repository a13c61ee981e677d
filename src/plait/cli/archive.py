"""``plait archive``: create, import and inspect archives (``verdi archive`` for plait).

Commands import ``plait.archive`` inside their functions, so ``plait --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from plait.cli._common import CliError, CliState, console, kv_table, pass_state, table

__all__ = ["archive"]

#: the switchable export rules, their defaults and what they add (as ``verdi archive create``)
_RULE_OPTIONS = (
    ("input_calc_forward", False, "the calculations that used exported data"),
    ("input_work_forward", False, "the workflows that used exported data"),
    ("create_backward", True, "the calculations that created exported data"),
    ("return_backward", False, "the workflows that returned exported data"),
    ("call_calc_backward", True, "the workflows that called exported calculations"),
    ("call_work_backward", True, "the workflows that called exported workflows"),
)


def _rule_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for name, default, what in reversed(_RULE_OPTIONS):
        flag = name.replace("_", "-")
        command = click.option(
            f"--{flag}/--no-{flag}",
            name,
            default=default,
            show_default=True,
            help=f"Also export {what}.",
        )(command)
    return command


def _archive_error(exc: Exception) -> CliError:
    return CliError(str(exc))


@click.group("archive")
def archive() -> None:
    """Create, import and inspect archives of the provenance graph (docs/archive.md)."""


@archive.command("create")
@click.argument("output_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-N", "--nodes", "node_pks", type=int, multiple=True, metavar="PK", help="Export this node (repeat)."
)
@click.option(
    "-G",
    "--groups",
    "group_names",
    multiple=True,
    metavar="GROUP",
    help="Export this group (label or pk; repeat).",
)
@click.option("-a", "--all", "all_entries", is_flag=True, help="Export every node, group and computer.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT_FILE if it exists.")
@_rule_options
@click.option(
    "--include-logs/--exclude-logs", default=True, show_default=True, help="Export the nodes' logs."
)
@click.option(
    "--include-comments/--exclude-comments",
    default=True,
    show_default=True,
    help="Export the nodes' comments.",
)
@click.option(
    "--compress",
    default=None,
    type=click.IntRange(0, 9),
    help="Zip compression level, 0-9 [default: plait.archive.format.DEFAULT_COMPRESSION, 1: fast; "
    "aiida's 6 writes an archive about 4 % smaller, slower].",
)
@click.option(
    "-b", "--batch-size", default=2000, show_default=True, type=click.IntRange(min=1), help="Rows per batch."
)
@click.option("-n", "--dry-run", is_flag=True, help="Count what would be exported; write nothing.")
@click.option(
    "-F",
    "--format",
    "archive_format",
    type=click.Choice(["plait", "aiida"]),
    default="plait",
    show_default=True,
    help="plait's archive format, or aiida-core 2.x's (read by `verdi archive import`).",
)
@pass_state
def create(
    state: CliState,
    output_file: Path,
    node_pks: tuple[int, ...],
    group_names: tuple[str, ...],
    all_entries: bool,
    force: bool,
    include_logs: bool,
    include_comments: bool,
    compress: int,
    batch_size: int,
    dry_run: bool,
    archive_format: str,
    **rules: bool,
) -> None:
    """Write OUTPUT_FILE with the nodes and groups given and everything provenance ties to them.

    The inputs of every exported process, the data it created or returned and the processes it
    called always come along; the switches below add or leave out creators, callers and users
    (AiiDA's export rules). Only terminated processes are exported.
    """
    from plait.archive import ArchiveError, create_archive
    from plait.archive.format import DEFAULT_COMPRESSION

    if not (node_pks or group_names or all_entries):
        raise click.UsageError("nothing to export: give -N PK, -G GROUP or --all")
    if all_entries and (node_pks or group_names):
        raise click.UsageError("--all exports everything: give no -N or -G with it")
    state.backend()
    try:
        result = create_archive(
            output_file,
            nodes=list(node_pks),
            groups=list(group_names),
            all=all_entries,
            overwrite=force,
            include_comments=include_comments,
            include_logs=include_logs,
            compression=DEFAULT_COMPRESSION if compress is None else compress,
            batch_size=batch_size,
            dry_run=dry_run,
            format=archive_format,
            **rules,  # type: ignore[arg-type]
        )
    except ArchiveError as exc:
        raise _archive_error(exc) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = console()
    shown = table("entity", "count")
    for name, count in result.counts.items():
        shown.add_row("files" if name == "objects" else name, str(count))
    out.print(shown)
    if dry_run:
        out.print("Dry run: nothing was written.")
    else:
        out.print(f"Wrote {output_file}")


@archive.command("import")
@click.argument("archive_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-G", "--group", "group_label", metavar="LABEL", help="Add every imported node to this group.")
@click.option(
    "-b", "--batch-size", default=2000, show_default=True, type=click.IntRange(min=1), help="Rows per batch."
)
@pass_state
def import_(state: CliState, archive_file: Path, group_label: str | None, batch_size: int) -> None:
    """Import ARCHIVE_FILE into the profile, all or nothing; importing it again adds nothing."""
    from plait.archive import ArchiveError, import_archive

    state.backend()
    try:
        result = import_archive(archive_file, group=group_label, batch_size=batch_size, pk_map=False)
    except ArchiveError as exc:
        raise _archive_error(exc) from None
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--group") from None
    out = console()
    shown = table("entity", "added", "already there")
    for name, count in result.added.items():
        shown.add_row(name, str(count), str(result.existing.get(name, 0)))
    out.print(shown)
    for kind, old, new in result.relabelled:
        out.print(f"{kind} '{old}' exists already here (another one): imported as '{new}'")
    if result.import_group is not None:
        out.print(f"Every node of the archive is in group '{group_label}' (pk {result.import_group})")
    out.print(f"Imported {archive_file}")


@archive.command("inspect")
@click.argument("archive_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def inspect(archive_file: Path) -> None:
    """Show the format, version and contents of ARCHIVE_FILE (nothing is imported)."""
    from plait.archive import ArchiveError, inspect_archive

    try:
        info = inspect_archive(archive_file)
    except ArchiveError as exc:
        raise _archive_error(exc) from None
    grid = kv_table()
    grid.add_row("format", f"{info.format} version {info.version}")
    grid.add_row("created", f"{info.created} by plait {info.plait_version}")
    grid.add_row("size", f"{info.size} bytes")
    for name, count in info.counts.items():
        grid.add_row("files" if name == "objects" else name, str(count))
    rules = info.parameters.get("traversal_rules") or {}
    if rules:
        grid.add_row("rules", ", ".join(f"{k}={v}" for k, v in sorted(rules.items())))
    console().print(grid)
