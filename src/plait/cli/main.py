"""The ``plait`` command: the top-level group, its global options and its error handling.

Every error a command meets is reported as ONE line on stderr, ``Error:
...``, with a non-zero exit code; a traceback is shown only for the user's
own script (``plait run``) or when ``PLAIT_DEBUG=1`` is set.  The handling
lives in :meth:`PlaitGroup.main`, so it is the same for the console script
and for click's test runner.

Exit codes: 0 success, 1 an error (or a failed demo / unreachable database),
2 a usage error (unknown option, bad value), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

import plait
from plait.cli._common import CliState, describe_exception

__all__ = ["PlaitGroup", "cli", "main"]


def _print_error(message: str) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)


class PlaitGroup(click.Group):
    """A click group that turns every failure into one line on stderr."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _print_error(exc.format_message() + hint)
            code = exc.exit_code
        except click.ClickException as exc:
            _print_error(exc.format_message())
            code = exc.exit_code
        except (click.exceptions.Abort, KeyboardInterrupt):
            _print_error("interrupted")
            code = 130
        except BrokenPipeError:  # `plait process list | head`
            code = 0
        except Exception as exc:
            message = describe_exception(exc)
            if message is None or os.environ.get("PLAIT_DEBUG"):
                if os.environ.get("PLAIT_DEBUG"):
                    traceback.print_exception(exc, file=sys.stderr)
                message = message or (
                    f"unexpected {type(exc).__name__}: {exc} (set PLAIT_DEBUG=1 to see the traceback, "
                    "and please report it)"
                )
            _print_error(message)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(name="plait", cls=PlaitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(plait.__version__, "--version", "-V", prog_name="plait", message="%(prog)s %(version)s")
@click.option(
    "--profile",
    "-P",
    "profile_name",
    metavar="NAME",
    help="Use this profile instead of the default one (also: $PLAIT_PROFILE).",
)
@click.pass_context
def cli(ctx: click.Context, profile_name: str | None) -> None:
    """plait: workflows for computational science, with full provenance.

    Start with `plait demo`, then `plait process list -a` and `plait status`.
    """
    ctx.obj = CliState(profile_name=profile_name or None)


def _register() -> None:
    from plait.cli.archive import archive
    from plait.cli.calcjob import calcjob
    from plait.cli.code import code
    from plait.cli.computer import computer
    from plait.cli.daemon import daemon
    from plait.cli.demo import demo
    from plait.cli.group import group
    from plait.cli.node import node
    from plait.cli.plugin import plugin
    from plait.cli.process import process
    from plait.cli.profile import profile
    from plait.cli.run import run
    from plait.cli.status import status
    from plait.cli.storage import storage
    from plait.cli.web import web

    for command in (status, profile, process, node, run, demo):
        cli.add_command(command)
    for command in (computer, code, storage, plugin):
        cli.add_command(command)
    cli.add_command(calcjob)
    cli.add_command(daemon)
    cli.add_command(group)
    cli.add_command(web)
    cli.add_command(archive)


_register()


def main() -> None:
    """The console script ``plait``."""
    cli.main(prog_name="plait")


if __name__ == "__main__":  # pragma: no cover
    main()
