"""``plait profile``: create, list, show profiles and choose the default one.

A profile is a folder under ``$PLAIT_HOME/profiles`` naming a database and a
broker.  ``setup`` opens the new profile's database once, and connects to
its RabbitMQ broker once (a few seconds at most), so a wrong URL or an
unreachable server is reported at once (and the half-made profile is
removed) rather than at the first ``plait run``.  A PostgreSQL URL must name
its database; a relative ``sqlite:///path`` is made absolute from the current
folder (and said so).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from plait.cli._common import (
    CliError,
    CliState,
    console,
    hide_password,
    kv_table,
    pass_state,
    storage_failure,
    table,
)

__all__ = ["profile"]


@click.group()
def profile() -> None:
    """Create, list and show profiles, and choose the default one."""


def _undo_setup(folder: Path, folder_existed: bool, config: Path, config_before: bytes | None) -> None:
    """Remove what a failed ``setup`` made: the profile folder and its mark in config.toml."""
    if folder_existed:
        (folder / "profile.toml").unlink(missing_ok=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    if config_before is None:
        config.unlink(missing_ok=True)
    else:
        config.write_bytes(config_before)


#: how long ``setup`` waits for the broker to accept a connection
BROKER_TRY_TIMEOUT = 5.0


def _try_broker(created: Any) -> None:
    """Connect to the profile's RabbitMQ broker once and close (the database broker needs no server).

    Raises:
        BrokerError: it cannot be reached or refuses the user (the message hides the password).
    """
    if created.broker_url == "database":
        return
    import asyncio

    from plait.broker.rabbitmq import RabbitMQBroker

    async def attempt() -> None:
        broker = RabbitMQBroker(created, connect_timeout=BROKER_TRY_TIMEOUT)
        await broker.start()
        await broker.close()

    asyncio.run(attempt())


@profile.command("setup")
@click.argument("name")
@click.option(
    "--db",
    "storage_url",
    metavar="URL",
    help="PostgreSQL URL (postgresql://user:password@host:5432/dbname); default: an SQLite file.",
)
@click.option(
    "--broker",
    "broker_url",
    default="database",
    show_default=True,
    metavar="database|rabbitmq://...",
    help="'database' (no server needed) or rabbitmq://user:password@host:5672/vhost (amqp:// too).",
)
@click.option("--set-default", is_flag=True, help="Make it the default profile.")
@click.option("--email", "user_email", default="user@localhost", show_default=True, help="Who you are.")
def setup(name: str, storage_url: str | None, broker_url: str, set_default: bool, user_email: str) -> None:
    """Create the profile NAME and its database schema."""
    import plait.storage as storage
    from plait.storage import create_profile, get_plait_home

    folder = get_plait_home() / "profiles" / name
    folder_existed = folder.exists()
    config = get_plait_home() / "config.toml"
    config_before = config.read_bytes() if config.is_file() else None

    created = create_profile(
        name,
        storage_url=storage_url,
        broker_url=broker_url,
        user_email=user_email,
        make_default=True if set_default else None,
    )
    try:
        storage.load_profile(name)
        backend = storage.get_backend()
        revision = backend.database.current_revision()
        url = backend.database.display_url
    except BaseException as exc:
        storage.reset()
        _undo_setup(folder, folder_existed, config, config_before)
        if isinstance(exc, Exception):
            reason = storage_failure(exc)
            raise CliError(
                f"cannot use the database {hide_password(created.storage_url)}: {reason} "
                f"(profile '{name}' was not created)"
            ) from exc
        raise
    storage.reset()
    try:
        _try_broker(created)
    except BaseException as exc:
        _undo_setup(folder, folder_existed, config, config_before)
        if isinstance(exc, Exception):
            from plait.broker import BrokerError

            reason = " ".join(str(exc).split()) if isinstance(exc, BrokerError) else storage_failure(exc)
            if isinstance(exc, BrokerError):
                reason = reason.replace(f"cannot reach RabbitMQ at {hide_password(created.broker_url)}: ", "")
            raise CliError(
                f"cannot use the broker {hide_password(created.broker_url)}: {reason or type(exc).__name__} "
                f"(profile '{name}' was not created)"
            ) from exc
        raise

    from plait.storage.profile import default_profile_name

    out = console()
    out.print(Text(f"Created profile '{name}' in {created.path}"))
    out.print(Text(f"  storage  {url} (schema revision {revision})"))
    if storage_url and storage_url.startswith("sqlite:///") and storage_url != created.storage_url:
        out.print(Text(f"  (the relative path in {storage_url} was made absolute: {created.storage_url})"))
    out.print(Text(f"  broker   {hide_password(created.broker_url)}"))
    if default_profile_name() == name:
        out.print(Text(f"'{name}' is the default profile."))
    else:
        out.print(
            Text(
                f"Use it with `plait -P {name} ...`, "
                f"or make it the default: `plait profile set-default {name}`"
            )
        )


@profile.command("list")
def list_() -> None:
    """List the profiles; the default one is marked with '*'."""
    from plait.storage import ProfileError, list_profiles, load_profile_config
    from plait.storage.profile import default_profile_name

    names = list_profiles()
    out = console()
    if not names:
        out.print("No profiles yet: the profile 'default' (SQLite, no server) is created on first use,")
        out.print("or create one with `plait profile setup NAME [--db postgresql://...]`.")
        return
    default = default_profile_name()
    rows = table("", "name", "storage", "database URL", "broker")
    for name in names:
        mark = "*" if name == default else ""
        try:
            found = load_profile_config(name, create_default=False)
        except ProfileError as exc:
            rows.add_row(mark, Text(name), Text("broken", style="red"), Text(str(exc)), "")
            continue
        rows.add_row(
            mark,
            Text(name, style="bold" if mark else ""),
            found.storage_backend,
            Text(hide_password(found.storage_url)),
            Text(hide_password(found.broker_url)),
        )
    out.print(rows)
    if default not in names:
        out.print(Text(f"The default profile '{default}' does not exist yet."))


@profile.command("show")
@click.argument("name", required=False)
@pass_state
def show(state: CliState, name: str | None) -> None:
    """Show the profile NAME (default: the one selected with --profile, or the default profile)."""
    import json

    from plait.storage import load_profile_config
    from plait.storage.profile import default_profile_name

    wanted = name or state.profile_name
    found = load_profile_config(wanted, create_default=wanted is None)
    grid = kv_table()
    grid.add_row("name", Text(found.name + (" (default)" if found.name == default_profile_name() else "")))
    grid.add_row("path", Text(str(found.path)))
    grid.add_row("storage", found.storage_backend)
    grid.add_row("database URL", Text(hide_password(found.storage_url)))
    grid.add_row("repository", Text(str(found.repository_path)))
    grid.add_row("broker", Text(hide_password(found.broker_url)))
    grid.add_row("user email", Text(found.user_email))
    grid.add_row("options", Text(json.dumps(found.options, sort_keys=True) if found.options else "-"))
    console().print(grid)


@profile.command("set-default")
@click.argument("name")
def set_default(name: str) -> None:
    """Make NAME the default profile."""
    import os

    from plait.storage import set_default_profile

    set_default_profile(name)
    out = console()
    out.print(Text(f"'{name}' is now the default profile."))
    env = os.environ.get("PLAIT_PROFILE")
    if env and env != name:
        out.print(Text(f"Note: $PLAIT_PROFILE={env} still selects '{env}' in this shell."))


#: the options ``plait profile configure`` sets: name -> (takes a list, help)
CONFIGURABLE_OPTIONS = {
    "caching.default_enabled": (False, "true/false: cache every calculation unless a pattern says otherwise"),
    "caching.enabled_for": (True, "identifiers (entry point names or module:Class, '*' globs) to cache"),
    "caching.disabled_for": (True, "identifiers never to cache (the most specific pattern wins)"),
}


def _option_value(option: str, values: tuple[str, ...]) -> Any:
    """The TOML value of ``option`` from the words typed, checked; raises click.BadParameter."""
    is_list, _ = CONFIGURABLE_OPTIONS[option]
    if is_list:
        if not all(v.strip() for v in values):
            raise click.BadParameter(f"{option}: an identifier cannot be empty", param_hint="VALUE")
        return list(values)
    if len(values) != 1 or values[0].lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise click.BadParameter(
            f"{option} takes one value, true or false, not {' '.join(values)!r}", param_hint="VALUE"
        )
    return values[0].lower() in ("true", "yes", "1", "on")


@profile.command("configure")
@click.argument("option", type=click.Choice(sorted(CONFIGURABLE_OPTIONS)), metavar="OPTION")
@click.argument("values", nargs=-1, metavar="[VALUE]...")
@click.option("--unset", is_flag=True, help="remove the option (back to its default)")
@pass_state
def configure(state: CliState, option: str, values: tuple[str, ...], unset: bool) -> None:
    """Set OPTION of the profile (the one of --profile, or the default) to VALUE(s).

    \b
    Options:
      caching.default_enabled true|false
      caching.enabled_for IDENTIFIER...   (entry point names or module:Class, '*' globs)
      caching.disabled_for IDENTIFIER...
    """
    from plait.engine.caching import CachingConfig
    from plait.storage import load_profile_config
    from plait.storage.profile import ProfileError, set_profile_option

    if unset and values:
        raise click.UsageError("give either VALUE(s) or --unset, not both")
    if not unset and not values:
        raise click.UsageError(f"{option} needs a value (or --unset to remove it)")
    value = None if unset else _option_value(option, values)
    try:
        found = load_profile_config(state.profile_name, create_default=state.profile_name is None)
        options = dict(found.options)
        section = dict(options.get("caching") or {})
        key = option.split(".", 1)[1]
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
        options["caching"] = section
        CachingConfig.from_options(options)  # refuse what caching would refuse later
        updated = set_profile_option(found.name, option, value)
    except (ProfileError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    shown = (updated.options.get("caching") or {}).get(key)
    console().print(
        Text(f"{option} of profile '{updated.name}' " + ("removed" if unset else f"set to {shown!r}"))
    )
