"""``plait status``: is everything this profile needs there and reachable?

It reports the profile, its storage (is the database reachable, is its
schema the one this plait needs, how many nodes), its broker (connected to,
asked to describe itself, disconnected) and its daemon (running or not).
The exit code is 1 when the database cannot be used or the broker cannot be
reached, so scripts can run ``plait status || ...``; a daemon that is not
running is not a failure.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click
from rich.text import Text

from plait.cli._common import CliState, console, hide_password, kv_table, pass_state, storage_failure

if TYPE_CHECKING:
    from plait.storage import Profile

__all__ = ["ServiceStatus", "status"]


@dataclass(frozen=True)
class ServiceStatus:
    """The state of one service as ``plait status`` shows it.

    Attributes:
        ok: True when it is up and reachable, False when it is not (shown in
            red), None when unknown or not applicable (shown plain).
        text: one line for the user, e.g. ``"running, 2 workers (pids 123, 456)"``.
    """

    ok: bool | None
    text: str


# -- daemon and broker ---------------------------------------------------------------------------------
# Both checks are quick (a few seconds at most, for a broker that does not answer) and never raise.

#: seconds to connect to a broker before calling it unreachable
BROKER_TIMEOUT = 5.0


def _daemon_status(profile: Profile) -> ServiceStatus:
    """Is the daemon of ``profile`` running, with how many workers?  (It is fine for it not to run.)"""
    try:
        from plait.daemon import client

        reply = client.status(profile)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        if "not running" in reason:
            return ServiceStatus(None, "not running (start it with `plait daemon start`)")
        return ServiceStatus(False, reason)
    workers = reply.get("workers", [])
    dead = sum(1 for worker in workers if not worker.get("alive"))
    text = f"running (pid {reply.get('pid')}, {len(workers)} worker{'' if len(workers) == 1 else 's'}"
    text += f", {dead} restarting)" if dead else ")"
    return ServiceStatus(True if workers and not dead else None, text)


def _scrub(text: str, url: str) -> str:
    """``text`` without the password of ``url`` (driver errors may quote the URL they were given)."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    text = text.replace(url, hide_password(url))
    if password:
        text = text.replace(f":{password}@", ":***@")
    return " ".join(text.split())


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Silence these loggers and their children (whose level is inherited) for a while."""
    loggers = [logging.getLogger(name) for name in names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)


def check_broker(profile: Profile, storage_ok: bool | None, timeout: float = BROKER_TIMEOUT) -> ServiceStatus:
    """Can the broker of ``profile`` be reached?  Connects, asks it to describe itself, disconnects.

    The database broker lives in the storage database: when that is unreachable, so is the broker
    (and it is not tried again).
    """
    import asyncio

    url = profile.broker_url
    shown = hide_password(url)
    if url == "database" and not storage_ok:
        return ServiceStatus(False, "database (embedded in the storage database, which is unreachable)")

    async def probe() -> str:
        from plait.broker import create_broker

        broker = create_broker(profile)
        try:
            await asyncio.wait_for(broker.start(), timeout)
            return await asyncio.wait_for(broker.describe(), timeout)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.close(), timeout)

    try:
        with _quiet_loggers("aiormq", "aio_pika"):  # they log the failure themselves: one line is enough
            described = asyncio.run(probe())
    except TimeoutError:
        return ServiceStatus(False, f"{shown} unreachable: no answer within {timeout:g} s")
    except Exception as exc:
        reason = _scrub(str(exc) or type(exc).__name__, url)
        if shown not in reason:
            reason = f"{shown} unreachable: {reason}"
        return ServiceStatus(False, reason)
    described = _scrub(described, url)
    if url == "database":
        match = re.fullmatch(r"database \((.*)\)", described)
        detail = match.group(1) if match else described
        return ServiceStatus(True, f"database (embedded in the storage database): {detail}")
    return ServiceStatus(True, f"{described}, reachable")


def _broker_status(profile: Profile, storage: ServiceStatus) -> ServiceStatus:
    return check_broker(profile, storage.ok)


# -- the checks ----------------------------------------------------------------------------------------


def _storage_status(profile: Profile) -> tuple[ServiceStatus, str, int | None]:
    """``(status, URL to show, node count)``; the database is opened (schema created if empty)."""
    from plait.storage import get_backend

    url = hide_password(profile.storage_url)
    try:
        backend = get_backend()
        url = backend.database.display_url
        revision = backend.database.current_revision()
        count = backend.count_nodes()
    except Exception as exc:
        reason = storage_failure(exc)
        return ServiceStatus(False, f"unreachable: {reason}"), url, None
    return ServiceStatus(True, f"reachable, schema revision {revision} (up to date)"), url, count


def _styled(service: ServiceStatus) -> Text:
    style = {True: "green", False: "red", None: ""}[service.ok]
    mark = {True: "ok", False: "FAILED", None: "-"}[service.ok]
    return Text.assemble((mark, style), "  ", service.text)


@click.command()
@pass_state
def status(state: CliState) -> None:
    """Show the profile, its database, broker and daemon, and whether they work.

    Exits with 1 when the database is not usable or the broker not reachable.
    """
    from plait.storage.profile import default_profile_name

    profile = state.load_profile()
    storage, url, count = _storage_status(profile)
    broker = _broker_status(profile, storage)
    daemon = _daemon_status(profile)

    out = console()
    grid = kv_table()
    default = " (default)" if profile.name == default_profile_name() else ""
    grid.add_row("profile", Text(f"{profile.name}{default}"))
    grid.add_row("path", Text(str(profile.path)))
    grid.add_row("storage", Text(f"{profile.storage_backend}  {url}"))
    grid.add_row("database", _styled(storage))
    grid.add_row("nodes", Text(str(count) if count is not None else "-"))
    grid.add_row("broker", _styled(broker))
    grid.add_row("daemon", _styled(daemon))
    out.print(grid)
    if not storage.ok:
        raise click.ClickException(f"the database of profile '{profile.name}' is not usable: {storage.text}")
    if broker.ok is False:
        raise click.ClickException(f"the broker of profile '{profile.name}' is not reachable: {broker.text}")
