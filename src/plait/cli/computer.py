"""``plait computer``: set up, configure, test, list and show computers.

A computer is set up once per profile (``setup``: its host, transport,
scheduler, work folder and options) and configured once per user
(``configure``: how *you* log in: user name, key, port, jump host...).
``test`` then walks through everything a calculation job will do there
(connect, make a folder, upload, run a command, ask the scheduler, clean up)
and says which step fails and why, so a wrong setting shows up at once
rather than as a paused calculation hours later.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from plait.cli._common import CliError, CliState, console, format_time, kv_table, pass_state, table

if TYPE_CHECKING:
    from plait.engine.computer_check import CheckResult
    from plait.orm import Computer

__all__ = ["computer", "mask_secrets", "parse_assignments"]

#: shown instead of the value of a configuration parameter whose name contains "password".
MASK = "********"


@click.group()
def computer() -> None:
    """Set up, configure, test, list and show the computers calculations run on."""


# -- helpers -------------------------------------------------------------------------------------------


def parse_assignments(values: Sequence[str], option: str) -> dict[str, Any]:
    """``["port=22", "user=x"]`` -> ``{"port": 22, "user": "x"}``: JSON values when they parse, else text."""
    result: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=f"'{option}'")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        result[key] = value
    return result


def mask_secrets(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with the value of every key that mentions a password hidden."""
    return {key: (MASK if "password" in key.lower() and value else value) for key, value in params.items()}


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def _user_email() -> str:
    from plait.storage import get_profile

    return get_profile().user_email


def _has_config_row(found: Computer) -> bool:
    """Has the current user configured ``found`` (even with no parameters at all)?"""
    from plait.storage import get_backend

    if found.transport_type == "local":
        return True
    if found.pk is None:  # an unstored computer has no configuration rows
        return False
    return get_backend().get_computer_config(found.pk, _user_email()) is not None


def _load(state: CliState, label: str) -> Computer:
    from plait.orm import Computer

    state.backend()
    return Computer.get(label)


def _known_transports() -> list[str]:
    from plait.transports import transport_plugin_names

    return transport_plugin_names()


def _known_schedulers() -> list[str]:
    from plait.schedulers import available_schedulers

    return available_schedulers()


# -- setup ----------------------------------------------------------------------------------------------

#: option name -> (ComputerOptions key, click type, help)
_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "mpiprocs_per_machine": (
        "default_mpiprocs_per_machine",
        click.IntRange(min=1),
        "MPI processes per machine when a job does not say.",
    ),
    "memory_per_machine": (
        "default_memory_per_machine_kb",
        click.IntRange(min=1),
        "Memory per machine in kB when a job does not say.",
    ),
    "safe_interval": (
        "safe_interval",
        click.FloatRange(min=0),
        "Seconds between two new connections (login nodes ban clients that connect too often); "
        "default: the transport's own (5 s for SSH).",
    ),
    "poll_interval": (
        "minimum_poll_interval",
        click.FloatRange(min=0),
        "Seconds between two scheduler queries  [default: 10]",
    ),
    "max_queued_jobs": (
        "max_queued_jobs",
        click.IntRange(min=1),
        "At most this many jobs of this profile queued or running here at once  [default: no limit]",
    ),
    "retry_interval": (
        "retry_initial_interval",
        click.FloatRange(min=0),
        "Seconds before the first retry of a failed upload/submit/update/retrieve, doubled each time  "
        "[default: 2]",
    ),
    "retry_attempts": (
        "retry_max_attempts",
        click.IntRange(min=1),
        "Attempts before a calculation is paused on a transport failure  [default: 5]",
    ),
    "max_concurrent_operations": (
        "max_concurrent_operations",
        click.IntRange(min=1),
        "Transport operations run at once over one connection  [default: 8]",
    ),
}


def _computer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for name, (_, kind, help_text) in reversed(_OPTIONS.items()):
        func = click.option(f"--{name.replace('_', '-')}", name, type=kind, help=help_text)(func)
    return func


def _check_label(label: str) -> str:
    """The label, if it is valid and free; else click.BadParameter (re-asked by a prompt)."""
    from plait.orm import Computer

    label = label.strip()
    if not label or "@" in label or any(c.isspace() for c in label):
        raise click.BadParameter(f"invalid computer label '{label}': no spaces, no '@'")
    try:
        Computer.get(label)
    except LookupError:
        return label
    raise click.BadParameter(f"a computer labelled '{label}' exists already")


def _check_choice(kind: str, value: str, known: list[str]) -> str:
    if value not in known:
        raise CliError(f"unknown {kind} '{value}' (known: {', '.join(known) or 'none'})")
    return value


def _interactive(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@computer.command("setup")
@click.option("--label", "-L", help="A short unique name (no spaces, no '@'), e.g. 'daint'.")
@click.option(
    "--hostname", "-H", help="Host name, address or ~/.ssh/config alias; default for local: localhost."
)
@click.option("--description", "-D", default="", help="A sentence about the computer.")
@click.option("--transport", "-T", "transport_type", help="How to reach it: local, ssh, ssh-blocking...")
@click.option("--scheduler", "-S", "scheduler_type", help="How jobs are run: direct, slurm, pbs...")
@click.option(
    "--work-dir",
    "-w",
    help="Where jobs run, on the computer; {username} is replaced by the remote user name. "
    "On a cluster: a scratch folder the compute nodes see, e.g. /scratch/{username}/plait.",
)
@click.option(
    "--mpirun-command",
    help="The MPI launcher, as a shell command line  [default: 'mpirun -np {tot_num_mpiprocs}']",
)
@_computer_options
@click.option("--prepend-text", default=None, help="Shell lines put before the code in every job script.")
@click.option("--append-text", default=None, help="Shell lines put after the code in every job script.")
@click.option(
    "--scheduler-option",
    "scheduler_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the scheduler plugin (repeatable), e.g. command_timeout=60.",
)
@click.option(
    "--interactive/--non-interactive",
    " /-n",
    default=None,
    help="Ask for the required values that are missing (default: when stdin is a terminal); "
    "-n never asks and fails instead.",
)
@pass_state
def setup(
    state: CliState,
    label: str | None,
    hostname: str | None,
    description: str,
    transport_type: str | None,
    scheduler_type: str | None,
    work_dir: str | None,
    mpirun_command: str | None,
    prepend_text: str | None,
    append_text: str | None,
    scheduler_options: tuple[str, ...],
    interactive: bool | None,
    **options: Any,
) -> None:
    """Set up a new computer: where it is, how to reach it and how it runs jobs.

    Required: --label, --hostname (not for the local transport), --transport, --scheduler and
    --work-dir. Missing ones are asked for on a terminal (or with --interactive).
    """
    from plait.orm import Computer
    from plait.orm.computer import ensure_localhost
    from plait.schedulers import get_scheduler_class

    state.backend()
    ensure_localhost()  # the built-in computer comes first, whatever the user creates
    transports, schedulers = _known_transports(), _known_schedulers()
    if label is not None:
        try:
            label = _check_label(label)
        except click.BadParameter as exc:
            raise CliError(exc.message) from None
    if transport_type is not None:
        _check_choice("transport", transport_type, transports)
    if scheduler_type is not None:
        _check_choice("scheduler", scheduler_type, schedulers)

    if _interactive(interactive):
        if label is None:
            label = click.prompt("Label", value_proc=_check_label)
        if transport_type is None:
            transport_type = click.prompt(
                "Transport", type=click.Choice(transports), default="ssh" if "ssh" in transports else None
            )
        if hostname is None:
            hostname = click.prompt("Host name", default="localhost" if transport_type == "local" else None)
        if scheduler_type is None:
            scheduler_type = click.prompt(
                "Scheduler",
                type=click.Choice(schedulers),
                default="direct" if "direct" in schedulers else None,
            )
        if work_dir is None:
            work_dir = click.prompt(
                "Work folder ({username} is the remote user name)",
                default="/tmp/plait-{username}" if transport_type == "local" else None,
            )
    if hostname is None and transport_type == "local":
        hostname = "localhost"
    required = {
        "--label": label,
        "--hostname": hostname,
        "--transport": transport_type,
        "--scheduler": scheduler_type,
        "--work-dir": work_dir,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        many = len(missing) > 1
        raise CliError(
            f"missing option{'s' if many else ''} {', '.join(missing)} "
            f"(give {'them' if many else 'it'}, or run with --interactive to be asked)"
        )
    assert label and hostname and transport_type and scheduler_type and work_dir

    chosen = {_OPTIONS[name][0]: value for name, value in options.items() if value is not None}
    if mpirun_command is not None:
        try:
            chosen["mpirun_command"] = shlex.split(mpirun_command)
        except ValueError as exc:
            raise CliError(f"--mpirun-command {mpirun_command!r}: {exc}") from None
        if not chosen["mpirun_command"]:
            raise CliError("--mpirun-command must not be empty")
    if prepend_text is not None:
        chosen["prepend_text"] = prepend_text
    if append_text is not None:
        chosen["append_text"] = append_text
    if scheduler_options:
        chosen["scheduler_options"] = parse_assignments(scheduler_options, "--scheduler-option")
        try:
            get_scheduler_class(scheduler_type)(**chosen["scheduler_options"])
        except (ValueError, TypeError) as exc:
            raise CliError(f"--scheduler-option: {exc}") from None

    try:
        created = Computer(
            label,
            hostname=hostname,
            transport_type=transport_type,
            scheduler_type=scheduler_type,
            work_dir=work_dir,
            description=description,
            **chosen,
        ).store()
    except ValueError as exc:
        raise CliError(str(exc)) from None

    out = console()
    out.print(
        Text(
            f"Created computer '{created.label}' (pk {created.pk}): {created.transport_type} to "
            f"{created.hostname}, {created.scheduler_type} scheduler, jobs in {created.work_dir}"
        )
    )
    if created.transport_type == "local":
        out.print(Text(f"Check it with `plait computer test {created.label}`."))
    else:
        out.print(
            Text(
                "Next: tell plait how you log in, "
                f"`plait computer configure {created.label} --username NAME ...`, "
                f"then `plait computer test {created.label}`."
            )
        )


# -- configure ------------------------------------------------------------------------------------------


def _print_config(out: Console, found: Computer) -> None:
    if found.transport_type == "local":
        out.print(Text(f"'{found.label}' uses the local transport: there is nothing to configure."))
        return
    if not _has_config_row(found):
        out.print(
            Text(
                f"'{found.label}' is not configured for {_user_email()} yet: "
                f"`plait computer configure {found.label} --username NAME ...`"
            )
        )
        return
    params = mask_secrets(found.get_config())
    out.print(
        Text(f"Configuration of '{found.label}' for {_user_email()} ({found.transport_type} transport):")
    )
    if not params:
        out.print(Text("  (no parameters: the transport's defaults and ~/.ssh/config apply)"))
        return
    grid = kv_table()
    for key in sorted(params):
        grid.add_row(f"  {key}", Text(_value_text(params[key])))
    out.print(grid)


def _check_params(found: Computer, params: dict[str, Any]) -> None:
    """Refuse parameters the transport plugin does not take, or whose values it rejects."""
    import inspect

    cls = found.transport_class()
    accepted = sorted(
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "hostname")
        and parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise CliError(
            f"the {found.transport_type} transport of '{found.label}' does not take {', '.join(unknown)} "
            f"(it takes: {', '.join(accepted) or 'nothing'})"
        )
    try:
        cls(hostname=found.hostname, **params)  # the plugin checks the values; nothing is opened
    except (ValueError, TypeError) as exc:
        raise CliError(f"computer '{found.label}': {' '.join(str(exc).split())}") from None


@computer.command("configure")
@click.argument("label")
@click.option("--username", "-u", help="The user name on the computer.")
@click.option("--port", "-p", type=click.IntRange(1, 65535), help="The SSH port.")
@click.option(
    "--key-filename",
    "-k",
    "key_filenames",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    help="A private key file to offer (repeatable).",
)
@click.option("--proxy-jump", "-J", metavar="[USER@]HOST[:PORT][,...]", help="Jump host(s), as ssh -J.")
@click.option(
    "--allow-unknown-host-key/--refuse-unknown-host-key",
    default=None,
    help="Accept a host key that is not in known_hosts (never a changed one).",
)
@click.option(
    "--known-hosts-file", type=click.Path(dir_okay=False, resolve_path=True), help="A known_hosts file."
)
@click.option("--config-file", type=click.Path(dir_okay=False, resolve_path=True), help="An ssh config file.")
@click.option("--use-agent/--no-use-agent", default=None, help="Offer the keys of the ssh agent.")
@click.option(
    "--connect-timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait to connect."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any parameter of the transport plugin (repeatable); VALUE is JSON when it parses "
    '(22, true, null, ["a"]), text otherwise.',
)
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove a parameter (repeatable).")
@click.option("--reset", is_flag=True, help="Start from an empty configuration instead of the current one.")
@click.option("--show", is_flag=True, help="Print the current configuration and change nothing.")
@pass_state
def configure(
    state: CliState,
    label: str,
    params: tuple[str, ...],
    unset: tuple[str, ...],
    reset: bool,
    show: bool,
    **named: Any,
) -> None:
    """Record how you log in to the computer LABEL (user name, key, port, jump host...).

    Given options are merged into your current configuration (--reset starts afresh); the result is
    checked by the transport plugin before it is stored. Then run `plait computer test LABEL`.
    """
    found = _load(state, label)
    out = console()
    changes = {key: value for key, value in named.items() if value not in (None, ())}
    if "key_filenames" in changes:
        changes["key_filenames"] = list(changes["key_filenames"])
    changes.update(parse_assignments(params, "--param"))
    if show:
        if changes or unset or reset:
            raise click.UsageError("--show cannot be combined with options that change the configuration")
        _print_config(out, found)
        return
    if found.transport_type == "local" and not (changes or unset):
        _print_config(out, found)
        return

    merged = {} if reset else found.get_config()
    merged.update(changes)
    for key in unset:
        merged.pop(key, None)
    _check_params(found, merged)
    try:
        found.configure(**merged)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _print_config(out, found)
    out.print(Text(f"Check it with `plait computer test {found.label}`."))


# -- list and show --------------------------------------------------------------------------------------


@computer.command("list")
@pass_state
def list_(state: CliState) -> None:
    """List the computers of the profile, and whether you configured each."""
    from plait.orm import Computer

    state.backend()
    found = Computer.list()
    rows = table("PK", "Label", "Hostname", "Transport", "Scheduler", "Configured")
    unconfigured = []
    for item in found:
        configured = _has_config_row(item)
        if not configured:
            unconfigured.append(item.label)
        rows.add_row(
            str(item.pk),
            Text(item.label),
            Text(item.hostname),
            item.transport_type,
            item.scheduler_type,
            Text("yes", style="green") if configured else Text("no", style="yellow"),
        )
    out = console()
    out.print(rows)
    if unconfigured:
        out.print(Text(f"Configure the others with `plait computer configure {unconfigured[0]} ...`."))


@computer.command("show")
@click.argument("label")
@pass_state
def show(state: CliState, label: str) -> None:
    """Show the computer LABEL: its settings, options and your configuration (passwords masked)."""
    from plait.orm import Computer
    from plait.storage import get_backend

    found = _load(state, label)
    row = get_backend().get_computer(pk=found.pk) or {}
    out = console()
    grid = kv_table()
    grid.add_row("label", Text(found.label))
    grid.add_row("pk", str(found.pk))
    grid.add_row("uuid", found.uuid)
    grid.add_row("hostname", Text(found.hostname))
    grid.add_row("description", Text(found.description or "-"))
    grid.add_row("transport", found.transport_type)
    grid.add_row("scheduler", found.scheduler_type)
    grid.add_row("work dir", Text(found.work_dir))
    grid.add_row("created", format_time(row.get("ctime")))
    out.print(grid)

    defaults = Computer(
        "defaults",
        hostname=found.hostname,
        transport_type=found.transport_type,
        scheduler_type=found.scheduler_type,
    ).options  # what a new computer of this kind gets; never stored
    options = table("Option", "Value", title="Options")
    for key in sorted(found.options):
        value = found.options[key]
        text = Text(_value_text(value))
        if key == "safe_interval" and value is None:
            text.append(
                f"  (default: {found.safe_interval():g} s, the {found.transport_type} transport's)",
                style="dim",
            )
        elif key in defaults and value == defaults[key]:
            text.append("  (default)", style="dim")
        options.add_row(key, text)
    out.print(options)
    _print_config(out, found)


# -- test ------------------------------------------------------------------------------------------------
# The checks themselves are plait.engine.computer_check; this prints their results.


def _print_check(out: Console, result: CheckResult) -> None:
    """One line of the checklist (mark, title, time, detail), then the reason and hint of a failure."""
    mark, style = {"ok": ("✓", "green"), "failed": ("✗", "bold red"), "skipped": ("-", "dim")}[result.status]
    seconds = f"{result.seconds:.2f} s" if result.seconds is not None else "skipped"
    line = Text.assemble((mark, style), " ", f"{result.title:<34}", f"{seconds:>9}")
    if result.detail:
        line.append(f"  {result.detail}")
    out.print(line)
    if result.reason:
        out.print(Text.assemble("    ", ("reason: ", "bold"), result.reason))
    if result.hint:
        out.print(Text.assemble("    ", ("hint: ", "bold"), result.hint))


@computer.command("test")
@click.argument("label")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds each check may take.",
)
@pass_state
def test(state: CliState, label: str, timeout: float) -> None:
    """Check that calculations can run on the computer LABEL, step by step.

    Opens a connection, asks who you are there, creates the work folder and a test folder in it,
    uploads a file and reads it back, runs a command, asks the scheduler about a job that cannot
    exist (so nothing is submitted), removes the test folder and closes the connection. Stops at
    the first failure (still cleaning up) and says why. Exit code 0 when every check passed.
    """
    import asyncio

    from plait.engine.computer_check import check_computer

    found = _load(state, label)
    found.get_config()  # read it now, not from inside the event loop
    out = console()
    out.print(
        Text(
            f"Testing computer '{found.label}': {found.transport_type} to {found.hostname}, "
            f"{found.scheduler_type} scheduler, work dir {found.work_dir}"
        )
    )
    start = time.perf_counter()
    checks = asyncio.run(
        check_computer(found, step_timeout=timeout, on_result=lambda result: _print_check(out, result))
    )
    failed = checks.failed
    if failed is not None:
        raise CliError(f"computer '{found.label}' failed the check '{failed.title}': {failed.reason}")
    out.print(Text(f"All checks passed in {time.perf_counter() - start:.2f} s.", style="green"))
