"""``plait process dump``: a process's files on disk, in a folder tree that mirrors its calls.

The dump itself is :func:`plait.orm.process_dump.dump_process`; this module
is only the command (registered in :mod:`plait.cli.process`).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from plait.cli._common import CliError, CliState, console, load_process, pass_state

__all__ = ["dump"]


@click.command("dump")
@click.argument("identifier", metavar="PK")
@click.option(
    "-p",
    "--path",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Where to write the dump  [default: dump-<label>-<pk> in the current folder]",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace DIR if it is a previous dump (a folder that is not one is never replaced).",
)
@click.option(
    "--flat",
    is_flag=True,
    help="Put the folder of every called process directly in DIR instead of nesting them by caller.",
)
@pass_state
def dump(state: CliState, identifier: str, path: Path | None, overwrite: bool, flat: bool) -> None:
    """Write the files of process PK and of every process it called into a folder tree.

    Each process folder holds plait_node_metadata.json (class, state, exit status, times, pk,
    uuid), inputs/ and outputs/ (files as files, values as JSON), and for calculation jobs
    raw_input/ (the files that were sent) and retrieved/ (the files retrieved). Called processes
    are in sub-folders 01-<call label>, 02-..., in call order.

    An existing dump is replaced only with --overwrite; nothing is changed otherwise.
    """
    from plait.orm.process_dump import DumpError, dump_process

    state.load_profile()
    node = load_process(identifier)
    try:
        written = dump_process(node, path, overwrite=overwrite, flat=flat)
    except DumpError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write the dump: {exc.strerror or exc} ({exc.filename or path})") from None
    console().print(Text(f"Dumped process {node.pk} ({node.process_label}) into {written}"))
