"""``plait status``: is everything this profile needs there and reachable?

It reports the profile, its storage (is the database reachable, is its
schema the one this plait needs, how many nodes), its broker and its daemon.
The exit code is 1 when the database cannot be used, so scripts can run
``plait status || ...``.

The daemon and broker checks are hooks (:func:`_daemon_status`,
:func:`_broker_status`) for the daemon and broker layers to fill in.
"""

from __future__ import annotations

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


# -- hooks -------------------------------------------------------------------------------------------
# HOOK: the daemon engineer replaces the body of _daemon_status (and, for RabbitMQ, _broker_status).
# Both must be quick (a second at most) and must not raise: return ServiceStatus(False, "why") instead.
# Neither changes the exit code of `plait status`, which only fails when the database is unusable.


def _daemon_status(profile: Profile) -> ServiceStatus:
    """HOOK (daemon layer): is the daemon of ``profile`` running, with how many workers?

    For now plait has no daemon, so the answer is always "not running".
    """
    del profile
    return ServiceStatus(None, "not running (the daemon is not available in this version)")


def _broker_status(profile: Profile, storage: ServiceStatus) -> ServiceStatus:
    """HOOK (broker layer): can the broker of ``profile`` be reached?

    The database broker lives in the storage database, so it is exactly as
    reachable as the storage.  A RabbitMQ broker is not checked yet.
    """
    if profile.broker_url == "database":
        if storage.ok:
            return ServiceStatus(True, "database (embedded in the storage database)")
        return ServiceStatus(False, "database (embedded in the storage database, which is unreachable)")
    return ServiceStatus(None, f"{hide_password(profile.broker_url)} (reachability not checked yet)")


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
    """Show the profile, its database, broker and daemon, and whether they work."""
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
