"""``plait storage``: upgrade a profile's database schema, and see what the storage holds.

Both commands open the database directly (not through
:func:`plait.storage.get_backend`), because the backend refuses a database
whose schema is older than this plait, and that is exactly the database
``migrate`` is for.  Neither creates the schema of an empty database
behind the user's back: ``info`` says it is empty, ``migrate`` creates it.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from plait.cli._common import CliError, CliState, console, database_reason, kv_table, pass_state

if TYPE_CHECKING:
    from plait.storage import Profile
    from plait.storage.database import Database

__all__ = ["storage"]


@click.group()
def storage() -> None:
    """Upgrade the database schema of a profile, and see what its storage holds."""


@contextmanager
def _database(profile: Profile) -> Iterator[Database]:
    """The profile's database, checked reachable, disposed of at the end."""
    from sqlalchemy.exc import SQLAlchemyError

    import plait.storage
    from plait.storage.database import Database

    plait.storage.reset()  # nothing of this profile may stay open while its schema changes
    database = Database(profile.storage_url)
    try:
        try:
            with database.engine.connect():
                pass
        except SQLAlchemyError as exc:
            raise CliError(
                f"cannot reach the database {database.display_url} of profile '{profile.name}': "
                f"{database_reason(exc)}"
            ) from None
        yield database
    finally:
        database.dispose()


def _known_revisions() -> list[str]:
    """Every revision of plait's migrations, oldest first."""
    from alembic.script import ScriptDirectory

    from plait.storage.migrations import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def _sqlite_path(database: Database) -> Path | None:
    if not database.is_sqlite:
        return None
    name = database.engine.url.database
    return Path(name) if name and name != ":memory:" else None


def _backup_sqlite(source: Path, revision: str) -> Path:
    """A consistent copy of the SQLite file (WAL included) beside it; its path."""
    import sqlite3
    from contextlib import closing

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = source.with_name(f"{source.name}.backup-{revision}-{stamp}")
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target


@storage.command("migrate")
@click.option(
    "--no-backup",
    is_flag=True,
    help="SQLite: do not copy the database file before migrating it (by default a copy is made beside it).",
)
@pass_state
def migrate(state: CliState, no_backup: bool) -> None:
    """Upgrade the profile's database to the schema this version of plait needs.

    An SQLite database is first copied beside itself (database.sqlite.backup-<revision>-<time>);
    back up a PostgreSQL database yourself (pg_dump) before migrating it. Stop the daemon first.
    """
    from plait.storage.database import SCHEMA_REVISION

    profile = state.load_profile()
    out = console()
    with _database(profile) as database:
        current = database.current_revision()
        url = database.display_url
        if current == SCHEMA_REVISION:
            out.print(Text(f"The database {url} is already up to date (schema revision {current})."))
            return
        known = _known_revisions()
        if current is not None and current not in known:
            raise CliError(
                f"the database {url} has schema revision {current}, which this plait does not know "
                f"(it knows {', '.join(known)}): it was made by a newer plait; upgrade plait instead"
            )
        if current is not None and known.index(current) > known.index(SCHEMA_REVISION):
            raise CliError(
                f"the database {url} has schema revision {current}, newer than the {SCHEMA_REVISION} "
                "this plait needs: upgrade plait instead"
            )
        path = _sqlite_path(database)
        if current is not None and path is not None and not no_backup:
            try:
                backup = _backup_sqlite(path, current)
            except Exception as exc:
                raise CliError(
                    f"cannot back up {path} before migrating it: {exc} (use --no-backup to skip)"
                ) from None
            out.print(Text(f"Backed up the database to {backup}"))
        start = "none (empty database)" if current is None else current
        out.print(Text(f"Migrating {url} from schema revision {start} to {SCHEMA_REVISION} ..."))
        database.migrate(SCHEMA_REVISION)
        now = database.current_revision()
    if now != SCHEMA_REVISION:  # pragma: no cover - the migrations and SCHEMA_REVISION disagree
        raise CliError(f"the migrations stopped at schema revision {now}, not {SCHEMA_REVISION}")
    out.print(Text(f"Done: schema revision {start} -> {now}.", style="green"))


def _count(database: Database, sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import text

    with database.read() as conn:
        return [tuple(row) for row in conn.execute(text(sql)).all()]


def _size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size}"  # pragma: no cover


def _repository_usage(root: Path) -> tuple[int, int]:
    """``(objects, bytes)`` of the file repository (a folder per 2-hex prefix under ``objects``)."""
    objects = root / "objects"
    count = total = 0
    if not objects.is_dir():
        return 0, 0
    with os.scandir(objects) as prefixes:
        for prefix in prefixes:
            if not (prefix.is_dir(follow_symlinks=False) and len(prefix.name) == 2):
                continue
            with os.scandir(prefix.path) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        count += 1
                        total += entry.stat(follow_symlinks=False).st_size
    return count, total


@storage.command("info")
@pass_state
def info(state: CliState) -> None:
    """What the profile's storage holds: schema revision, nodes, processes, links, files."""
    from plait.storage.database import SCHEMA_REVISION

    profile = state.load_profile()
    out = console()
    grid = kv_table()
    grid.add_row("profile", Text(profile.name))
    with _database(profile) as database:
        grid.add_row("database", Text(f"{profile.storage_backend}  {database.display_url}"))
        path = _sqlite_path(database)
        if path is not None and path.is_file():
            size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.is_file())
            grid.add_row("database size", _size(size))
        current = database.current_revision()
        if current is None:
            grid.add_row(
                "schema",
                Text("none: an empty database (created on first use, or by `plait storage migrate`)"),
            )
        elif current == SCHEMA_REVISION:
            grid.add_row("schema", Text(f"revision {current} (up to date)", style="green"))
        else:
            grid.add_row(
                "schema",
                Text(
                    f"revision {current}, this plait needs {SCHEMA_REVISION}: run `plait storage migrate`",
                    style="red",
                ),
            )
        if current is not None:
            kinds: dict[str, int] = dict(
                _count(
                    database,
                    "SELECT CASE WHEN node_type LIKE 'process.%' THEN 'process' ELSE 'data' END AS kind, "
                    "COUNT(*) FROM nodes GROUP BY kind",
                )
            )
            data, processes = int(kinds.get("data", 0)), int(kinds.get("process", 0))
            grid.add_row("nodes", f"{data + processes} ({data} data, {processes} processes)")
            states = _count(database, "SELECT state, COUNT(*) FROM processes GROUP BY state ORDER BY state")
            total = sum(int(n) for _, n in states)
            detail = ", ".join(f"{state} {n}" for state, n in states)
            grid.add_row("processes", f"{total}" + (f" ({detail})" if detail else ""))
            grid.add_row("links", str(_count(database, "SELECT COUNT(*) FROM links")[0][0]))
            grid.add_row("computers", str(_count(database, "SELECT COUNT(*) FROM computers")[0][0]))
    objects, size = _repository_usage(profile.repository_path)
    grid.add_row("repository", Text(str(profile.repository_path)))
    grid.add_row("files", f"{objects} objects, {_size(size)}")
    out.print(grid)


@storage.command("maintain")
@click.option("--dry-run", "-n", is_flag=True, help="Report what would be freed; remove and vacuum nothing.")
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep files no node refers to yet if they were written this recently (a node being stored "
    "writes its files before its row commits); 0 when nothing is storing nodes.",
)
@pass_state
def maintain(state: CliState, dry_run: bool, grace_period: float) -> None:
    """Remove repository files that no node refers to any more, then vacuum the database.

    Deleting nodes (`plait node delete`) leaves their files in the repository, since other nodes may
    share them; this removes the ones nothing refers to, and gives the database's free space back
    (SQLite VACUUM then ANALYZE, PostgreSQL VACUUM ANALYZE; ANALYZE refreshes the statistics that
    queries are planned from). Files written less than --grace-period seconds ago, or since the
    oldest process that is still running started, are kept: their node may not be committed yet.
    SQLite's VACUUM holds the write lock while it rewrites the file: on a big database, stop the
    daemon first.
    """
    from plait.cli._common import format_time

    backend = state.backend()
    report = backend.maintain_storage(dry_run=dry_run, grace_seconds=grace_period)
    files = report["repository"]
    out = console()
    grid = kv_table()
    grid.add_row("repository", Text(str(backend.repository.root)))
    grid.add_row("objects", f"{files.objects} scanned")
    verb = "would be removed" if dry_run else "removed"
    grid.add_row("unreferenced", f"{files.removed} objects, {_size(files.removed_bytes)} {verb}")
    if files.kept_recent:
        cutoff = _dt.datetime.fromtimestamp(report["cutoff"], _dt.UTC)
        why = f"{grace_period:g} s grace period"
        if report["oldest_active"] is not None:
            pk, started = report["oldest_active"]
            why += f" before process {pk} started ({format_time(started)}; it has not terminated)"
        else:
            why += "; --grace-period 0 removes them when nothing is storing nodes"
        grid.add_row(
            "kept",
            Text(
                f"{files.kept_recent} unreferenced objects, {_size(files.kept_recent_bytes)}, written after "
                f"{format_time(cutoff)} ({why})"
            ),
        )
    if files.leftovers:
        grid.add_row("leftovers", f"{files.leftovers} half-written files of interrupted writes {verb}")
    before, after, free = report["database_before"], report["database_after"], report["database_free"]
    engine = "SQLite" if backend.database.is_sqlite else "PostgreSQL"
    if dry_run:
        text = f"{_size(before)}" if before is not None else "size unknown"
        if free is not None:
            text += f", of which {_size(free)} are free pages that VACUUM would give back"
        grid.add_row("database", Text(f"{engine}: {text}; not vacuumed (dry run)"))
    elif before is not None and after is not None:
        text = f"{engine}: vacuumed, {_size(before)} -> {_size(after)}"
        if before > after:
            text += f" ({_size(before - after)} freed)"
        if not backend.database.is_sqlite:
            text += " (VACUUM ANALYZE: the space of deleted rows is reused; the files keep their size)"
        grid.add_row("database", Text(text))
    else:
        grid.add_row("database", Text(f"{engine}: vacuumed"))
    out.print(grid)
    if dry_run:
        out.print(Text("Dry run: nothing was removed."))
