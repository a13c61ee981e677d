"""``plait daemon``: start, stop and watch the daemon that runs submitted processes.

The daemon is plait's own supervisor (one per profile) and its worker
processes; :mod:`plait.daemon.client` talks to the supervisor through its
UNIX socket.  Everything here is blocking and quick, except ``logs -f`` and
``start --foreground``, which run until interrupted.

Exit codes: 0 success, 1 an error (one ``Error: ...`` line), and for
``plait daemon status`` 3 when the daemon is not running (as LSB init
scripts and ``systemctl status`` do).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from plait.cli._common import CliError, CliState, console, format_time, kv_table, pass_state, table

if TYPE_CHECKING:
    from plait.storage import Profile

__all__ = ["daemon"]

#: exit code of ``plait daemon status`` when the daemon is not running (LSB: "program is not running")
NOT_RUNNING = 3
#: how long ``start``, ``incr`` and ``restart`` wait for new workers to get a pid
SPAWN_WAIT = 10.0
#: process states that hold a lease while they run
ACTIVE = ("created", "running", "waiting")


@click.group()
def daemon() -> None:
    """Start, stop and watch the daemon that runs submitted processes.

    The daemon is a supervisor with N worker processes; each worker claims the
    processes the database says are runnable, runs them and renews a lease on
    them.  See docs/daemon.md.
    """


# -- helpers -------------------------------------------------------------------------------------------


def _client() -> Any:
    from plait.daemon import client

    return client


def _daemon_error(exc: BaseException) -> CliError:
    return CliError(" ".join(str(exc).split()))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    """``"42s"``, ``"3m 12s"``, ``"5h 03m"``, ``"2d 04h"``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _memory(kib: int | None) -> str:
    if kib is None:
        return "-"
    if kib >= 1024 * 1024:
        return f"{kib / (1024 * 1024):.1f} GiB"
    return f"{kib / 1024:.1f} MiB"


def _pids(status: dict[str, Any]) -> str:
    pids = [str(worker["pid"]) for worker in status.get("workers", []) if worker.get("pid")]
    return ", ".join(pids) or "-"


def _wait_for_pids(profile: Profile, status: dict[str, Any], wait: float = SPAWN_WAIT) -> dict[str, Any]:
    """The supervisor spawns workers asynchronously: wait (a little) until each has a pid."""
    deadline = time.monotonic() + wait
    while any(not worker.get("pid") for worker in status.get("workers", [])):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
        with contextlib.suppress(Exception):
            status = _client().status(profile)
    return status


def _describe_workers(status: dict[str, Any]) -> str:
    workers = status.get("workers", [])
    return f"{_plural(len(workers), 'worker')} (pid{'s' if len(workers) != 1 else ''} {_pids(status)})"


def _check_can_run(profile: Profile) -> None:
    """Refuse to start workers that could only die: the database and the broker must be reachable."""
    from plait.cli.status import check_broker
    from plait.storage import get_backend

    try:
        get_backend().count_nodes()
    except Exception as exc:
        from plait.cli._common import storage_failure

        raise CliError(
            f"cannot start the daemon: the database of profile '{profile.name}' is not usable: "
            f"{storage_failure(exc)}"
        ) from None
    broker = check_broker(profile, storage_ok=True)
    if broker.ok is False:
        raise CliError(
            f"cannot start the daemon: the broker of profile '{profile.name}' is not reachable: {broker.text}"
        )


def _daemon_options(profile: Profile) -> dict[str, Any]:
    """The profile's ``[options.daemon]``, checked: a bad value fails here, before any supervisor exists."""
    from plait.daemon.options import DaemonOptionsError, daemon_options_of

    try:
        return daemon_options_of(profile)
    except DaemonOptionsError as exc:
        raise CliError(
            f"cannot start the daemon of profile '{profile.name}': {exc} (in {profile.path / 'profile.toml'})"
        ) from None


def _default_workers(profile: Profile) -> int:
    """The profile's ``[options.daemon] workers`` (in profile.toml), else 1; checked with the others."""
    workers: int = _daemon_options(profile).get("workers", 1)
    return workers


def _start(profile: Profile, workers: int) -> dict[str, Any]:
    client = _client()
    try:
        status = client.start(profile, workers=workers)
    except client.DaemonError as exc:
        raise _daemon_error(exc) from None
    return _wait_for_pids(profile, status)


def _stop(profile: Profile, *, wait: bool, timeout: float) -> None:
    """Ask the supervisor to stop; with ``wait``, until it has exited (killed after ``timeout`` s)."""
    client = _client()
    try:
        client.stop(profile, wait=wait, timeout=timeout)
    except client.DaemonError as exc:
        raise _daemon_error(exc) from None


def _held_by_worker() -> dict[str, int]:
    """``{worker id: processes it holds a live lease on}``, from the database (it is the truth)."""
    from plait.orm import ProcessNode, QueryBuilder

    now = time.time()
    held: dict[str, int] = {}
    query = QueryBuilder().append(
        ProcessNode,
        filters={"process_state": {"in": list(ACTIVE)}, "lease_owner": {"!==": None}},
        project=["lease_owner", "lease_expires"],
    )
    for owner, expires in query.all():
        if owner and (expires is None or expires >= now):
            held[owner] = held.get(owner, 0) + 1
    return held


# -- commands -----------------------------------------------------------------------------------------


@daemon.command()
@click.argument("workers", type=click.IntRange(min=1), required=False, metavar="[N]")
@click.option(
    "--foreground",
    is_flag=True,
    help="Run the supervisor in this terminal (Ctrl-C or SIGTERM stops it) instead of in the background.",
)
@pass_state
def start(state: CliState, workers: int | None, foreground: bool) -> None:
    """Start the daemon with N workers and print their pids.

    N defaults to the profile's `daemon.workers` option, else 1.
    """
    profile = state.load_profile()
    default = _default_workers(profile)  # checks all of [options.daemon], even with N given
    workers = workers or default
    _check_can_run(profile)
    if foreground:
        _run_in_foreground(profile, workers)
        return
    status = _start(profile, workers)
    out = console()
    out.print(
        Text(
            f"Started the daemon of profile '{profile.name}': supervisor pid {status['pid']}, "
            f"{_describe_workers(status)}."
        )
    )
    out.print(Text(f"Logs: {profile.daemon_path / 'log'}  (plait daemon logs -f)"))


@contextlib.contextmanager
def _supervisor_logging(profile: Profile) -> Iterator[None]:
    """What the background supervisor writes to its log file: also on stderr, in the foreground."""
    from plait.daemon.supervisor import daemon_paths

    paths = daemon_paths(profile)
    paths.logs.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("plait.supervisor")
    formatter = logging.Formatter("%(asctime)s %(levelname)s supervisor [%(process)d]: %(message)s")
    handlers: list[logging.Handler] = [
        logging.FileHandler(paths.supervisor_log),
        logging.StreamHandler(sys.stderr),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate


def _run_in_foreground(profile: Profile, workers: int) -> None:
    import asyncio

    from plait.daemon.supervisor import Supervisor

    supervisor = Supervisor(profile, workers)
    try:
        supervisor.acquire_lock()
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    click.echo(
        f"Running the daemon of profile '{profile.name}' in the foreground (pid {os.getpid()}) with "
        f"{_plural(workers, 'worker')}; Ctrl-C or SIGTERM stops it.",
        err=True,
    )
    with _supervisor_logging(profile):
        asyncio.run(supervisor.run())
    click.echo(f"The daemon of profile '{profile.name}' stopped.", err=True)


@daemon.command()
@click.option("--no-wait", is_flag=True, help="Ask it to stop and return at once.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    metavar="S",
    help="Seconds to wait for the workers to stop gracefully before the daemon is killed.",
)
@pass_state
def stop(state: CliState, no_wait: bool, timeout: float) -> None:
    """Stop the daemon: each worker lets go of its processes at a safe point, then leaves.

    Nothing is lost: the processes stay in the database, as last
    checkpointed, and continue when a daemon runs again.  Stopping a daemon
    that is not running is not an error.
    """
    profile = state.load_profile()
    client = _client()
    out = console()
    if not client.is_running(profile):
        out.print(Text(f"The daemon of profile '{profile.name}' is not running."))
        return
    try:
        pid = client.status(profile)["pid"]
    except client.DaemonError as exc:
        raise _daemon_error(exc) from None
    _stop(profile, wait=not no_wait, timeout=timeout)
    if no_wait:
        out.print(Text(f"Asked the daemon of profile '{profile.name}' (pid {pid}) to stop."))
    else:
        out.print(Text(f"Stopped the daemon of profile '{profile.name}' (pid {pid})."))


@daemon.command()
@click.option(
    "--reset",
    is_flag=True,
    help="Start again with the default number of workers (profile option daemon.workers, else 1) "
    "instead of as many as are running now.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    metavar="S",
    help="Seconds to wait for the workers to stop gracefully.",
)
@pass_state
def restart(state: CliState, reset: bool, timeout: float) -> None:
    """Stop the daemon and start it again with the same number of workers.

    Use it after installing new code for your workflows: the new workers
    import it.  A daemon that is not running is simply started.
    """
    profile = state.load_profile()
    client = _client()
    out = console()
    workers = _default_workers(profile)
    if client.is_running(profile):
        try:
            status = client.status(profile)
            if not reset:
                workers = max(1, len(status.get("workers", [])))
        except client.DaemonError as exc:
            raise _daemon_error(exc) from None
        _stop(profile, wait=True, timeout=timeout)
        out.print(Text(f"Stopped the daemon of profile '{profile.name}' (pid {status['pid']})."))
    else:
        out.print(Text(f"The daemon of profile '{profile.name}' was not running."))
    _check_can_run(profile)
    status = _start(profile, workers)
    out.print(
        Text(
            f"Started the daemon of profile '{profile.name}': supervisor pid {status['pid']}, "
            f"{_describe_workers(status)}."
        )
    )


@daemon.command("status")
@pass_state
def status_(state: CliState) -> int:
    """Show the supervisor and each worker: pid, restarts, memory, processes held, last heartbeat.

    Exits with 3 when the daemon is not running.
    """
    profile = state.load_profile()
    client = _client()
    out = console()
    try:
        status = client.status(profile)
    except client.DaemonError as exc:
        if "not running" in str(exc):
            out.print(Text(f"the daemon of profile '{profile.name}' is not running"))
            return NOT_RUNNING
        raise _daemon_error(exc) from None
    try:
        held = _held_by_worker()
    except Exception:  # the database may be unreachable: show what the supervisor knows
        held = None

    now = time.time()
    workers = status.get("workers", [])
    grid = kv_table()
    grid.add_row("profile", Text(profile.name))
    grid.add_row("daemon", Text("running", style="green"))
    started = status.get("started")
    if started:
        import datetime as _dt

        since = format_time(_dt.datetime.fromtimestamp(started, _dt.UTC))
        grid.add_row(
            "supervisor", Text(f"pid {status['pid']}, up {_duration(now - started)} (since {since})")
        )
    else:
        grid.add_row("supervisor", Text(f"pid {status['pid']}"))
    alive = sum(1 for worker in workers if worker.get("alive"))
    grid.add_row("workers", Text(f"{len(workers)}" + (f" ({alive} alive)" if alive != len(workers) else "")))
    grid.add_row("logs", Text(str(profile.daemon_path / "log")))
    out.print(grid)
    if not workers:
        out.print(Text("The daemon has no workers: nothing runs until `plait daemon incr`.", style="yellow"))
        return 0

    listing = table("Worker", "PID", "Alive", "Restarts", "Memory", "Held", "Heartbeat", "Worker id")
    for worker in workers:
        worker_id = worker.get("worker_id")
        if held is not None and worker_id:
            count = str(held.get(worker_id, 0))
        elif worker.get("held") is not None:
            count = str(worker["held"])
        else:
            count = "-"
        heartbeat = worker.get("heartbeat")
        listing.add_row(
            str(worker.get("index", "-")),
            str(worker.get("pid") or "-"),
            Text("yes", style="green") if worker.get("alive") else Text("no", style="red"),
            Text(str(worker.get("restarts", 0)), style="yellow" if worker.get("restarts") else ""),
            _memory(worker.get("rss_kib")),
            count,
            f"{_duration(now - heartbeat)} ago" if heartbeat else "-",
            Text(worker_id or "-"),
        )
    out.print(listing)
    return 0


@daemon.command()
@click.argument("n", type=click.IntRange(min=1), default=1, metavar="[N]")
@pass_state
def incr(state: CliState, n: int) -> None:
    """Add N workers (default 1) to the running daemon."""
    profile = state.load_profile()
    client = _client()
    try:
        status = _wait_for_pids(profile, client.incr(profile, n))
    except client.DaemonError as exc:
        raise _daemon_error(exc) from None
    console().print(
        Text(
            f"Added {_plural(n, 'worker')}: the daemon of profile '{profile.name}' "
            f"has {_describe_workers(status)}."
        )
    )


@daemon.command()
@click.argument("n", type=click.IntRange(min=1), default=1, metavar="[N]")
@pass_state
def decr(state: CliState, n: int) -> None:
    """Remove N workers (default 1); each lets go of its processes gracefully, other workers take them."""
    profile = state.load_profile()
    client = _client()
    try:
        current = len(client.status(profile).get("workers", []))
        if n >= current:
            raise CliError(
                f"the daemon of profile '{profile.name}' has {_plural(current, 'worker')}: at least one must "
                "remain (use `plait daemon stop` to stop it)"
            )
        status = client.decr(profile, n)
    except client.DaemonError as exc:
        raise _daemon_error(exc) from None
    console().print(
        Text(
            f"Removed {_plural(n, 'worker')}: the daemon of profile '{profile.name}' "
            f"has {_describe_workers(status)}."
        )
    )


@daemon.command()
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new lines as they are written (Ctrl-C stops)."
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    metavar="LINES",
    help="How many of the last lines of each log to print first.",
)
@pass_state
def logs(state: CliState, follow: bool, lines: int) -> None:
    """Print the daemon's logs (supervisor and workers), each line prefixed with its log's name."""
    profile = state.load_profile()
    client = _client()
    try:
        for line in client.follow_logs(profile, follow=follow, lines=lines):
            click.echo(line)
    except client.DaemonError as exc:
        raise _daemon_error(exc) from None
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C is how one stops following: not an error
