"""``plait run FILE.py [ARGS...]``: run a script with a profile loaded, as ``python FILE.py ARGS`` would.

The script runs as ``__main__`` in this interpreter, with ``sys.argv`` set to
the file and its arguments and its folder first on ``sys.path``.  The
profile chosen with ``--profile`` is loaded, and ``$PLAIT_PROFILE`` is set for
the script, so a ``plait.load_profile()`` in it (or a subprocess it starts)
uses the same profile.

An exception raised by the script is the user's own: its traceback is
shown, starting at the script (plait's own frames above it are left out),
and the exit code is 1.  ``sys.exit(n)`` in the script exits with ``n``.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path
from types import TracebackType

import click

from plait.cli._common import CliState, pass_state

__all__ = ["run"]


def _from_script(tb: TracebackType | None, script: str) -> TracebackType | None:
    """The traceback from the first frame in ``script`` on (all of it if the script is not in it)."""
    current = tb
    while current is not None:
        if os.path.abspath(current.tb_frame.f_code.co_filename) == script:
            return current
        current = current.tb_next
    return tb


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_state
def run(state: CliState, script: Path, args: tuple[str, ...]) -> None:
    """Run the Python file SCRIPT (with ARGS) on the selected profile.

    Options after SCRIPT are passed to it, not to plait:
    `plait -P work run relax.py --steps 3`.
    """
    profile = state.load_profile()
    path = str(script.resolve())
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_env = os.environ.get("PLAIT_PROFILE")
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.resolve().parent))
    os.environ["PLAIT_PROFILE"] = profile.name
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            click.echo(str(exc.code), err=True)
            code = 1
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        sys.stdout.flush()
        traceback.print_exception(exc.with_traceback(_from_script(exc.__traceback__, path)), file=sys.stderr)
        sys.stderr.flush()
        code = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_env is None:
            os.environ.pop("PLAIT_PROFILE", None)
        else:
            os.environ["PLAIT_PROFILE"] = saved_env
    if code:
        raise click.exceptions.Exit(code)
