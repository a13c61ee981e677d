"""What every command shares: the profile selected on the command line, the console, errors, formatting.

Commands import the heavy parts of plait (SQLAlchemy, the engine) inside
their functions, so ``plait --help`` and ``plait profile list`` stay fast.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from plait.orm import Node, ProcessNode
    from plait.storage import Profile
    from plait.storage.backend import StorageBackend

__all__ = [
    "CliError",
    "CliState",
    "console",
    "describe_exception",
    "escape",
    "format_time",
    "hide_password",
    "kv_table",
    "load_process",
    "node_summary",
    "pass_state",
    "relative_time",
    "state_style",
    "state_text",
    "storage_failure",
    "table",
]

#: width used when stdout is not a terminal (a log file, a pipe) and $COLUMNS is not set,
#: so that tables are not squeezed into 80 columns.
_PIPE_WIDTH = 160


class CliError(click.ClickException):
    """An error the command reports as one line on stderr (``Error: ...``) with exit code 1."""


@dataclass
class CliState:
    """What the top-level options chose; commands reach it with :func:`pass_state`."""

    profile_name: str | None = None

    def load_profile(self) -> Profile:
        """Make the chosen profile (``--profile``, ``$PLAIT_PROFILE`` or the default) current."""
        from plait.storage import load_profile

        return load_profile(self.profile_name)

    def backend(self) -> StorageBackend:
        """The storage of the chosen profile, opened (raises if the database cannot be reached)."""
        from plait.storage import get_backend

        self.load_profile()
        return get_backend()


pass_state = click.make_pass_decorator(CliState, ensure=True)


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): colours only on a terminal, never with ``NO_COLOR``."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):
        is_tty = False
    if not is_tty and not os.environ.get("COLUMNS"):
        width = _PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=True, emoji=False)


def table(*columns: str, title: str | None = None, **kwargs: Any) -> Table:
    """A table with a header line and no frame, readable in a log file."""
    from rich import box

    result = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False, **kwargs
    )
    for name in columns:
        result.add_column(name, overflow="fold")
    return result


def kv_table() -> Table:
    """A two-column ``key  value`` grid for ``show`` commands."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


# -- errors --------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    from plait.orm.node_text import one_line

    return one_line(text)


def describe_exception(exc: BaseException) -> str | None:
    """One line explaining an error plait knows how to explain, or None for an unexpected one."""
    from plait.orm.errors import ModificationNotAllowed, NotExistentError, StoringNotAllowed
    from plait.storage import ProfileError

    if isinstance(exc, (ProfileError, NotExistentError, StoringNotAllowed, ModificationNotAllowed)):
        return _one_line(str(exc))
    if type(exc) is LookupError:  # load_node with an ambiguous uuid prefix
        return _one_line(str(exc))
    database = sys.modules.get("plait.storage.database")
    if database is not None and isinstance(exc, database.SchemaVersionError):
        return _one_line(str(exc))
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        return "database error: " + database_reason(exc)
    ports = sys.modules.get("plait.engine.ports")
    if ports is not None and isinstance(exc, (ports.InputValidationError, ports.OutputValidationError)):
        return _one_line(str(exc))
    return None


def storage_failure(exc: BaseException) -> str:
    """Why opening a profile's storage failed, on one line (the driver's reason for database errors)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        return database_reason(exc)
    return describe_exception(exc) or f"{type(exc).__name__}: {_one_line(str(exc))}"


def database_reason(exc: BaseException) -> str:
    """The driver's own reason for a database error, on one line, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc).split("\n(Background on this error", 1)[0]
    return _one_line(text) or type(exc).__name__


# -- formatting ------------------------------------------------------------------------------------------


def hide_password(url: str) -> str:
    """``scheme://user:***@host/...``: a URL safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.password:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def format_time(value: _dt.datetime | None) -> str:
    """Local time, to the second."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def relative_time(value: _dt.datetime | None, now: _dt.datetime | None = None) -> str:
    """``"12s ago"``, ``"3m ago"``, ``"5h ago"``, ``"2D ago"``."""
    if value is None:
        return "-"
    now = now or _dt.datetime.now(_dt.UTC)
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return "in the future"
    for size, unit in ((86400, "D"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def state_text(
    state: str, exit_status: int | None = None, paused: bool = False, status: str | None = None
) -> str:
    """``"finished [0]"``, ``"waiting, paused: waiting for 2 processes: 5, 6"`` (see plait.orm.node_text)."""
    from plait.orm.node_text import state_text as text_of_state

    return text_of_state(state, exit_status, paused, status)


def state_style(state: str, exit_status: int | None = None) -> str:
    if state == "finished":
        return "green" if not exit_status else "red"
    if state in ("excepted", "killed"):
        return "red"
    if state in ("running", "waiting"):
        return "yellow"
    return "blue"


def process_state_text(node: ProcessNode) -> Text:
    """The state of a process node as coloured text (``finished [0]``)."""
    state = node.process_state.value
    return Text(state_text(state, node.exit_status, node.paused), style=state_style(state, node.exit_status))


def type_name(node: Node) -> str:
    """The class name of a node (``Int``, ``WorkChainNode``)."""
    return type(node).__name__


def node_summary(node: Node, limit: int = 60) -> str:
    """A short description of a node's content: its value, keys, files or process state."""
    from plait.orm.node_text import node_summary as summary_of_node

    return summary_of_node(node, limit)


def link_label(label: str) -> str:
    """A stored link label as the user writes it: nested namespaces with dots."""
    return label.replace("__", ".")


def load_process(identifier: str) -> ProcessNode:
    """Load the process node ``identifier`` (pk or uuid), or fail with one line."""
    from plait.orm import ProcessNode, load_node

    node = load_node(identifier)
    if not isinstance(node, ProcessNode):
        raise CliError(
            f"node {node.pk} is a {type_name(node)}, not a process: use `plait node show {node.pk}`"
        )
    return node
