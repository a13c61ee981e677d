"""``plait calcjob``: the files of a calculation job — sent, retrieved, parsed and left on the computer.

The commands mirror aiida-core's ``verdi calcjob``.  What they read lives in
:mod:`plait.orm.calcjob_files`; the remote commands (``remotels``,
``remotecat``, ``cleanworkdir``) reach the computer through its transport
with one ``asyncio.run`` per command (the CLI has no event loop of its own).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.text import Text

from plait.cli._common import CliError, CliState, console, format_time, load_process, pass_state, type_name

if TYPE_CHECKING:
    from plait.orm import CalcJobNode
    from plait.orm.calcjob_files import FolderEntry, RemoteWorkdir

__all__ = ["calcjob"]

T = TypeVar("T")
#: bytes looked at to decide whether a file is binary (as git and grep do: a NUL byte means binary)
_SNIFF = 8000


@click.group()
def calcjob() -> None:
    """Inspect the files of calculation jobs: sent, retrieved, parsed, and left on the computer."""


def load_calcjob(identifier: str) -> CalcJobNode:
    """The calculation job ``identifier`` (pk or uuid), or one line saying what it is instead."""
    from plait.orm import CalcJobNode

    node = load_process(identifier)
    if not isinstance(node, CalcJobNode):
        raise CliError(
            f"process {node.pk} is a {type_name(node)} ({node.process_label}), not a calculation job: "
            f"see `plait process show {node.pk}`"
        )
    return node


def _files_error(action: Callable[[], T]) -> T:
    """Run ``action``; a CalcJobFileError becomes one line on stderr."""
    from plait.orm.calcjob_files import CalcJobFileError

    try:
        return action()
    except CalcJobFileError as exc:
        raise CliError(str(exc)) from None


def _print_entries(entries: list[FolderEntry]) -> None:
    for entry in entries:
        click.echo(entry.name + ("/" if entry.is_dir else ""))


def _write_content(data: bytes, path: str) -> None:
    """Write a file's bytes to stdout as they are; refuse a binary file on a terminal (it would garble it)."""
    stream = click.get_binary_stream("stdout")
    sample = data[:_SNIFF]
    if b"\0" in sample and _is_terminal(sys.stdout):
        raise CliError(
            f"'{path}' is a binary file ({len(data)} bytes): redirect the output to a file (> FILE)"
        )
    stream.write(data)
    stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _path_or_default(node: CalcJobNode, path: str | None, which: str) -> str:
    from plait.orm.calcjob_files import default_filename

    if path:
        return path
    default = default_filename(node, which)
    if default is None:
        raise CliError(
            f"calculation job {node.pk} ({node.process_label}) declares no {which}_filename option: "
            "give the PATH of the file"
        )
    return default


# -- the files that were sent --------------------------------------------------------------------------


@calcjob.command("inputls")
@click.argument("identifier", metavar="PK")
@click.argument("path", required=False, default="")
@pass_state
def inputls(state: CliState, identifier: str, path: str) -> None:
    """List the files that were sent to calculation job PK (in its folder PATH, if given).

    These are the files the calculation wrote and the job script; files of input nodes are the
    inputs themselves (`plait process show PK`).
    """
    from plait.orm.calcjob_files import list_sent

    state.load_profile()
    node = load_calcjob(identifier)
    _print_entries(_files_error(lambda: list_sent(node, path)))


@calcjob.command("inputcat")
@click.argument("identifier", metavar="PK")
@click.argument("path", required=False)
@pass_state
def inputcat(state: CliState, identifier: str, path: str | None) -> None:
    """Print the file PATH that was sent to calculation job PK.

    Without PATH: the job's input file (its `input_filename` option), if the calculation has one.
    """
    from plait.orm.calcjob_files import read_sent

    state.load_profile()
    node = load_calcjob(identifier)
    path = _path_or_default(node, path, "input")
    _write_content(_files_error(lambda: read_sent(node, path)), path)


# -- the files that were retrieved ---------------------------------------------------------------------


@calcjob.command("outputls")
@click.argument("identifier", metavar="PK")
@click.argument("path", required=False, default="")
@pass_state
def outputls(state: CliState, identifier: str, path: str) -> None:
    """List the files retrieved from calculation job PK (in their folder PATH, if given)."""
    from plait.orm.calcjob_files import list_retrieved

    state.load_profile()
    node = load_calcjob(identifier)
    _print_entries(_files_error(lambda: list_retrieved(node, path)))


@calcjob.command("outputcat")
@click.argument("identifier", metavar="PK")
@click.argument("path", required=False)
@pass_state
def outputcat(state: CliState, identifier: str, path: str | None) -> None:
    """Print the retrieved file PATH of calculation job PK.

    Without PATH: the job's output file (its `output_filename` option), if the calculation has one.
    A binary file is written as it is (redirect it to a file).
    """
    from plait.orm.calcjob_files import read_retrieved

    state.load_profile()
    node = load_calcjob(identifier)
    path = _path_or_default(node, path, "output")
    _write_content(_files_error(lambda: read_retrieved(node, path)), path)


@calcjob.command("res")
@click.argument("identifier", metavar="PK")
@click.option("-k", "--keys", "keys", multiple=True, metavar="KEY", help="Only this key (repeatable).")
@pass_state
def res(state: CliState, identifier: str, keys: tuple[str, ...]) -> None:
    """Print the parsed results of calculation job PK as JSON.

    The content of its `output_parameters` output when it has one; otherwise its outputs that
    hold values (Int, Float, Str, Bool, Dict, List), by output label.
    """
    from plait.orm.calcjob_files import parsed_results

    state.load_profile()
    node = load_calcjob(identifier)
    results = _files_error(lambda: parsed_results(node))
    if keys:
        missing = [key for key in keys if key not in results]
        if missing:
            raise CliError(
                f"the results of calculation job {node.pk} have no key {', '.join(map(repr, missing))} "
                f"(keys: {', '.join(sorted(results))})"
            )
        results = {key: results[key] for key in keys}
    click.echo(json.dumps(results, indent=2, ensure_ascii=False))


# -- the folder on the computer ------------------------------------------------------------------------


def _workdir(identifier: str) -> RemoteWorkdir:
    from plait.orm.calcjob_files import RemoteWorkdir

    node = load_calcjob(identifier)
    return _files_error(lambda: RemoteWorkdir.of(node))


def _remote(workdir: RemoteWorkdir, operation: Callable[[], Awaitable[T]]) -> T:
    """Open the connection, run ``operation``, close; transport and file errors become one line."""
    from plait.orm.calcjob_files import CalcJobFileError
    from plait.transports import TransportError

    async def run() -> T:
        async with workdir:
            return await operation()

    try:
        return asyncio.run(run())
    except (CalcJobFileError, TransportError) as exc:
        raise _remote_error(workdir, exc) from None


def _remote_error(workdir: RemoteWorkdir, exc: Exception) -> CliError:
    from plait.transports import TransportError

    if not isinstance(exc, TransportError):
        return CliError(str(exc))
    return CliError(
        f"cannot reach the work folder of calculation job {workdir.node.pk} ({workdir.where}): "
        f"{type(exc).__name__}: {exc} "
        f"(check the computer with `plait computer test {workdir.computer.label}`)"
    )


def _long_line(name: str, attributes: Any) -> str:
    when = _dt.datetime.fromtimestamp(attributes.mtime).strftime("%Y-%m-%d %H:%M")
    suffix = "/" if attributes.is_dir else ""
    return f"{stat.filemode(attributes.mode)} {attributes.size:>10} {when}  {name}{suffix}"


@calcjob.command("remotels")
@click.argument("identifier", metavar="PK")
@click.argument("path", required=False, default="")
@click.option("-l", "--long", "long_", is_flag=True, help="Show permissions, size and modification time.")
@pass_state
def remotels(state: CliState, identifier: str, path: str, long_: bool) -> None:
    """List the work folder of calculation job PK on its computer (or its folder PATH).

    Reads the computer through its transport, so the job's folder is shown as it is now.
    """
    state.load_profile()
    workdir = _workdir(identifier)
    entries = _remote(workdir, lambda: workdir.listdir(path))
    for name, attributes in entries:
        if long_:
            click.echo(_long_line(name, attributes))
        else:
            click.echo(name + ("/" if attributes.is_dir else ""))


@calcjob.command("remotecat")
@click.argument("identifier", metavar="PK")
@click.argument("path", required=False)
@pass_state
def remotecat(state: CliState, identifier: str, path: str | None) -> None:
    """Print the file PATH of the work folder of calculation job PK, read from its computer.

    Without PATH: the job's output file (its `output_filename` option), if the calculation has one.
    """
    state.load_profile()
    workdir = _workdir(identifier)
    path = _path_or_default(workdir.node, path, "output")
    _write_content(_remote(workdir, lambda: workdir.read(path)), path)


@calcjob.command("gotocomputer")
@click.argument("identifier", metavar="PK")
@click.option("--open", "open_", is_flag=True, help="Open the shell there instead of printing the command.")
@pass_state
def gotocomputer(state: CliState, identifier: str, open_: bool) -> None:
    """Print the command that goes to the work folder of calculation job PK (ssh and cd, or cd).

    With --open, run it: a shell opens in the folder (on the computer, over ssh, for a remote one).
    """
    state.load_profile()
    workdir = _workdir(identifier)
    if not open_:
        click.echo(_files_error(workdir.goto_command))
        return
    command = _files_error(workdir.shell_command)
    click.echo(f"Opening a shell in {workdir.where} ...", err=True)
    try:
        code = subprocess.call(command)
    except OSError as exc:
        raise CliError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    if code:
        click.get_current_context().exit(code)


def _age_days(node: CalcJobNode, now: _dt.datetime) -> float:
    assert node.mtime is not None
    return (now - node.mtime).total_seconds() / 86400


@calcjob.command("cleanworkdir")
@click.argument("identifiers", metavar="PK...", nargs=-1, required=True)
@click.option(
    "-o",
    "--older-than",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Only jobs last modified more than DAYS days ago (the others are skipped).",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def cleanworkdir(
    state: CliState, identifiers: tuple[str, ...], older_than: float | None, force: bool
) -> None:
    """Remove the work folders of calculation jobs PK... from their computers.

    Each job must have terminated. Its retrieved files stay in plait; its remote_folder node
    stays too and is marked cleaned (`remotels` and `remotecat` then say so). Jobs whose folder
    was cleaned before, or that never had one, are skipped.
    """
    from plait.orm.calcjob_files import CalcJobFileError, RemoteWorkdir

    state.load_profile()
    nodes = [load_calcjob(identifier) for identifier in dict.fromkeys(identifiers)]
    running = [node for node in nodes if not node.is_terminated]
    if running:
        listed = ", ".join(f"{node.pk} ({node.process_state.value})" for node in running)
        raise CliError(
            f"not terminated: {listed}; a running job still uses its folder "
            "(wait for it, or kill it with `plait process kill PK`): nothing was removed"
        )
    out = console()
    now = _dt.datetime.now(_dt.UTC)
    chosen: list[RemoteWorkdir] = []
    for node in nodes:
        if older_than is not None and _age_days(node, now) <= older_than:
            out.print(
                Text(f"Skipped {node.pk}: modified {format_time(node.mtime)}, not {older_than:g} days ago")
            )
            continue
        try:
            chosen.append(RemoteWorkdir.of(node))
        except CalcJobFileError as exc:
            out.print(Text(f"Skipped {node.pk}: {exc}"))
    if not chosen:
        out.print(Text("No work folder to remove."))
        return
    if not force:
        for workdir in chosen:
            click.echo(f"  {workdir.node.pk}: {workdir.where}", err=True)
        question = (
            f"Remove the work folders of {len(chosen)} calculation job{'s' if len(chosen) != 1 else ''}?"
        )
        if not click.confirm(question, default=False, err=True):
            raise CliError("cancelled: no work folder was removed")
    failed = 0
    by_computer: dict[str, list[RemoteWorkdir]] = {}
    for workdir in chosen:
        by_computer.setdefault(workdir.computer.label, []).append(workdir)
    for workdirs in by_computer.values():
        for workdir, outcome in _clean_on_one_computer(workdirs):
            if isinstance(outcome, CliError):
                click.echo(f"Error: {outcome.format_message()}", err=True)
                failed += 1
            else:
                what = "Removed" if outcome else "Already gone from the computer, marked cleaned:"
                out.print(Text(f"{what} {workdir.where} (calculation job {workdir.node.pk})"))
    if failed:
        raise CliError(f"{failed} of {len(chosen)} work folders could not be removed (see above)")


def _clean_on_one_computer(workdirs: list[RemoteWorkdir]) -> list[tuple[RemoteWorkdir, bool | CliError]]:
    """Remove the folders of one computer through one connection; each folder's outcome or error."""
    from plait.orm.calcjob_files import CalcJobFileError
    from plait.transports import TransportError

    outcomes: list[tuple[RemoteWorkdir, bool | CliError]] = []

    async def run() -> None:
        transport = workdirs[0].open_transport()
        await transport.open()
        try:
            for workdir in workdirs:
                try:
                    async with workdir.connection(transport):
                        outcomes.append((workdir, await workdir.clean()))
                except (CalcJobFileError, TransportError) as exc:
                    outcomes.append((workdir, _remote_error(workdir, exc)))
        finally:
            await transport.close()

    try:
        asyncio.run(run())
    except (CalcJobFileError, TransportError) as exc:  # no connection: every folder not done yet failed
        done = {id(workdir) for workdir, _ in outcomes}
        outcomes += [(w, _remote_error(w, exc)) for w in workdirs if id(w) not in done]
    return outcomes
