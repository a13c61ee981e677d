"""``plait code``: create, list and show codes (the executables calculation jobs run).

An *installed* code is an executable already on a computer
(``/usr/bin/bash`` on ``localhost``); a *portable* code is a folder of files
stored in plait and uploaded with every job, so it runs on any computer.
Codes are data nodes: once created they never change, and every calculation
that used one links to it.  Calculations name them ``label@computer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from plait.cli._common import CliError, CliState, console, format_time, kv_table, pass_state, table

if TYPE_CHECKING:
    from plait.orm import Code

__all__ = ["code"]


@click.group()
def code() -> None:
    """Create, list and show codes: the executables calculations run."""


@code.group("create")
def create() -> None:
    """Create a code: `installed` (on a computer) or `portable` (files uploaded with every job)."""


def _calculation_plugins() -> list[str]:
    from plait.plugins.entry_points import plugin_names

    return plugin_names("calculations")


def _common_options(func: Any) -> Any:
    options = [
        click.option(
            "--label", "-L", required=True, help="The code's name; calculations use label@computer."
        ),
        click.option("--description", "-D", default="", help="A sentence about the code."),
        click.option(
            "--default-plugin",
            "default_plugin",
            metavar="NAME",
            help="The calculation plugin this code is usually run with (e.g. shell).",
        ),
        click.option("--prepend-text", default="", help="Shell lines put before the code's command line."),
        click.option("--append-text", default="", help="Shell lines put after the code's command line."),
        click.option(
            "--with-mpi/--without-mpi",
            default=None,
            help="The code must (not) run through the computer's mpirun command (default: as the job says).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _check_plugin(name: str | None) -> None:
    if name is None:
        return
    known = _calculation_plugins()
    if name not in known:
        raise CliError(f"unknown calculation plugin '{name}' (installed: {', '.join(known) or 'none'})")


def _created(found: Code) -> None:
    full = _full_label(found)
    console().print(
        Text(f"Created {_kind(found)} code '{full}' (pk {found.pk}): load_code('{full}') finds it.")
    )


def _kind(found: Code) -> str:
    return "portable" if found.node_type.endswith(".portable") else "installed"


def _full_label(found: Code) -> str:
    """``label@computer`` for an installed code, ``label`` for a portable one (it runs anywhere)."""
    return found.full_label if _kind(found) == "installed" else found.label


@create.command("installed")
@_common_options
@click.option("--computer", "-Y", "computer_label", required=True, help="The computer it is installed on.")
@click.option(
    "--filepath-executable",
    "-X",
    required=True,
    help="Absolute path of the executable on that computer, e.g. /usr/bin/bash.",
)
@pass_state
def create_installed(
    state: CliState,
    label: str,
    description: str,
    default_plugin: str | None,
    prepend_text: str,
    append_text: str,
    with_mpi: bool | None,
    computer_label: str,
    filepath_executable: str,
) -> None:
    """Create a code for an executable already installed on a computer."""
    from plait.orm import Computer, InstalledCode

    state.backend()
    _check_plugin(default_plugin)
    computer = Computer.get(computer_label)
    try:
        found = InstalledCode(
            computer=computer,
            filepath_executable=filepath_executable,
            label=label,
            description=description,
            default_calc_job_plugin=default_plugin,
            prepend_text=prepend_text,
            append_text=append_text,
            with_mpi=with_mpi,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    found.store()
    _created(found)


@create.command("portable")
@_common_options
@click.option(
    "--filepath-files",
    "-F",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A local folder (all its files are stored) or a single file.",
)
@click.option(
    "--filepath-executable",
    "-X",
    required=True,
    help="The executable's path relative to that folder, e.g. bin/run.sh.",
)
@pass_state
def create_portable(
    state: CliState,
    label: str,
    description: str,
    default_plugin: str | None,
    prepend_text: str,
    append_text: str,
    with_mpi: bool | None,
    filepath_files: Path,
    filepath_executable: str,
) -> None:
    """Create a code from local files, stored in plait and uploaded with every job."""
    from plait.orm import PortableCode

    state.backend()
    _check_plugin(default_plugin)
    if filepath_executable.startswith("/"):
        raise CliError(
            f"--filepath-executable '{filepath_executable}' must be relative to --filepath-files "
            f"({filepath_files})"
        )
    try:
        found = PortableCode(
            filepath_files=filepath_files,
            filepath_executable=filepath_executable,
            label=label,
            description=description,
            default_calc_job_plugin=default_plugin,
            prepend_text=prepend_text,
            append_text=append_text,
            with_mpi=with_mpi,
        )
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot read {filepath_files}: {exc}") from None
    found.store()
    _created(found)


@code.command("list")
@click.option("--computer", "-Y", "computer_label", help="Only the codes installed on this computer.")
@pass_state
def list_(state: CliState, computer_label: str | None) -> None:
    """List the codes: full label, type, computer and executable."""
    from plait.orm import Code, Computer, QueryBuilder

    state.backend()
    if computer_label is not None:
        Computer.get(computer_label)  # a one-line error for a computer that does not exist
    codes = QueryBuilder().append(Code, tag="code", project="*").order_by({"code": "id"}).all(flat=True)
    listing = table("PK", "Full label", "Type", "Computer", "Executable", "Default plugin")
    shown = 0
    for found in codes:
        kind = _kind(found)
        if computer_label is not None and (kind != "installed" or found.computer_label != computer_label):
            continue
        listing.add_row(
            str(found.pk),
            Text(_full_label(found), style="bold"),
            kind,
            Text(found.computer_label or "(any)"),
            Text(found.filepath_executable),
            Text(found.default_calc_job_plugin or "-"),
        )
        shown += 1
    out = console()
    if not shown:
        where = f" on '{computer_label}'" if computer_label else ""
        out.print(
            Text(
                f"No codes{where} yet: create one with "
                "`plait code create installed --label L --computer C --filepath-executable PATH`."
            )
        )
        return
    out.print(listing)


def _load_code(identifier: str) -> Code:
    """``load_code``, which also takes a uuid or a unique uuid prefix here."""
    import re

    from plait.orm import Code, NotExistentError, load_code, load_node

    try:
        return load_code(identifier)
    except NotExistentError:
        if not re.fullmatch(r"[0-9a-fA-F-]{4,36}", identifier) or identifier.isdigit():
            raise
        try:
            found = load_node(identifier)
        except NotExistentError:
            raise CliError(f"no code with label or uuid '{identifier}' (see `plait code list`)") from None
    if not isinstance(found, Code):
        raise CliError(f"node {found.pk} is a {type(found).__name__}, not a code")
    return found


@code.command("show")
@click.argument("identifier", metavar="LABEL@COMPUTER|PK")
@pass_state
def show(state: CliState, identifier: str) -> None:
    """Show a code: where it runs, its executable, its settings and how often it was used.

    Give label@computer, the label alone when it is unique, a pk or a uuid.
    """
    state.backend()
    found: Any = _load_code(identifier)
    kind = _kind(found)
    grid = kv_table()
    grid.add_row("full label", Text(_full_label(found)))
    grid.add_row("pk", str(found.pk))
    grid.add_row("uuid", found.uuid)
    grid.add_row("type", f"{kind} ({found.node_type})")
    grid.add_row("description", Text(found.description or "-"))
    if kind == "installed":
        grid.add_row("computer", Text(found.computer_label))
        grid.add_row("executable", Text(found.filepath_executable))
    else:
        grid.add_row("computer", "(any: its files are uploaded with every job)")
        grid.add_row("executable", Text(f"{found.filepath_executable} (run as {found.get_executable()})"))
    grid.add_row("default plugin", Text(found.default_calc_job_plugin or "-"))
    mpi = {True: "always", False: "never", None: "as the job says"}[found.with_mpi]
    grid.add_row("with MPI", mpi)
    grid.add_row("prepend text", Text(found.prepend_text or "-"))
    grid.add_row("append text", Text(found.append_text or "-"))
    grid.add_row("created", format_time(found.ctime))
    used = sum(1 for _label, _kind_of_link, _other in found.get_outgoing())
    grid.add_row("used by", f"{used} calculation{'s' if used != 1 else ''}")
    out = console()
    out.print(grid)
    if kind == "portable":
        files = found.list_file_paths()
        out.print(Text("Files:", style="bold"))
        for path in files:
            out.print(Text(f"  {path}"))
    extras = found.extras
    if extras:
        out.print(Text("Extras:", style="bold"))
        out.print(Text(json.dumps(extras, indent=2, sort_keys=True)))
