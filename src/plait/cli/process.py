"""``plait process``: list processes, show one, read its report, pause, play, kill and watch them.

The listing is one :class:`plait.orm.QueryBuilder` query (:func:`process_rows`) projecting only
the columns it shows, so listing thousands of processes is one SQL query.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from typing import TYPE_CHECKING, Any, cast

import click
from rich.text import Text

from plait.cli._common import (
    CliError,
    CliState,
    console,
    describe_exception,
    format_time,
    kv_table,
    link_label,
    load_process,
    node_summary,
    pass_state,
    process_state_text,
    relative_time,
    state_style,
    state_text,
    table,
    type_name,
)

if TYPE_CHECKING:
    from plait.orm import ProcessNode
    from plait.storage.backend import StorageBackend

__all__ = ["process"]

STATES = ("created", "running", "waiting", "finished", "excepted", "killed")
ACTIVE = ("created", "running", "waiting")
TERMINAL = ("finished", "excepted", "killed")
#: log levels from least to most severe; REPORT is what ``self.report`` writes.
LEVELS = ("DEBUG", "INFO", "REPORT", "WARNING", "ERROR", "CRITICAL")
#: how many report lines ``process show`` prints
SHOW_REPORT_LINES = 10


@click.group()
def process() -> None:
    """List processes, show one, read its report; pause, play, kill and watch them."""


def holder_text(owner: str | None, expires: float | None, now: float) -> Text:
    """Who holds a process, readably: ``worker 12345``, ``script 6789`` (this machine), else the owner id.

    Lease owners are ``host:pid:kind:id``; on this machine the pid says it all (and ``(dead)``
    marks an interpreter that no longer exists), elsewhere the whole id says where it runs.
    ``(expired)`` marks a lease that ran out: its holder stopped renewing it, another worker may
    take the process over.
    """
    import socket

    from plait.engine.leases import owner_is_dead

    if not owner:
        return Text("-")
    parts = owner.split(":")
    shown = owner
    if len(parts) >= 3 and parts[0] == socket.gethostname() and parts[1].isdigit():
        kind = {"run": "script", "worker": "worker"}.get(parts[2], parts[2])
        shown = f"{kind} {parts[1]}"
    if expires is not None and expires < now:
        return Text(f"{shown} (expired)", style="red")
    if owner_is_dead(owner):
        return Text(f"{shown} (dead)", style="red")
    return Text(shown)


def _holder(row: dict[str, Any], now: float) -> Text:
    return holder_text(row.get("lease_owner"), row.get("lease_expires"), now)


def _state_cell(row: dict[str, Any]) -> Text:
    """The state, with ``paused`` in bold magenta so that paused processes stand out.

    A terminated process is shown without the paused flag (it no longer means anything there).
    """
    terminated = row["state"] in TERMINAL
    paused = bool(row.get("paused")) and not terminated
    text = Text(
        state_text(row["state"], row.get("exit_status"), paused, row.get("status")),
        style=state_style(row["state"], row.get("exit_status")),
    )
    if paused:
        text.highlight_words([", paused"], style="bold magenta")
    return text


#: what a listed process row holds (the keys the listing reads) -> the QueryBuilder field it comes from
_ROW_FIELDS = {
    "id": "id",
    "ctime": "ctime",
    "label": "label",
    "process_label": "process_label",
    "state": "process_state",
    "exit_status": "exit_status",
    "paused": "paused",
    "status": "process_status",
    "lease_owner": "lease_owner",
    "lease_expires": "lease_expires",
    "caller_id": "caller_id",
}
#: the values of --order-by -> the QueryBuilder field
ORDER_FIELDS = {
    "id": "id",
    "ctime": "ctime",
    "process_label": "process_label",
    "state": "process_state",
    "exit_status": "exit_status",
}


def process_rows(
    *,
    states: list[str] | None = None,
    since: _dt.datetime | None = None,
    paused: bool | None = None,
    process_label: str | None = None,
    exit_status: int | None = None,
    failed: bool = False,
    group_pk: int | None = None,
    pks: list[int] | None = None,
    limit: int | None = None,
    order_by: str = "id",
    descending: bool = False,
) -> list[dict[str, Any]]:
    """The processes to list, as dicts with the keys of ``_ROW_FIELDS``, from one QueryBuilder query.

    ``states``: only these (None: every state); ``since``: created since then; ``process_label``:
    equal, or a ``like`` pattern when it holds ``%`` or ``_`` (as aiida-core's
    ``--process-label``); ``failed``: finished with a non-zero exit status; ``group_pk``: members
    of that group; ``limit``: the ``limit`` most recent (highest pk) of them.  The rows are in the
    order of ``order_by`` (a key of ``ORDER_FIELDS``), then by pk.
    """
    from plait.orm import Group, ProcessNode, QueryBuilder

    filters: dict[str, Any] = {}
    if states is not None:
        filters["process_state"] = {"in": list(states)}
    if since is not None:
        filters["ctime"] = {">=": since}
    if paused is not None:
        filters["paused"] = paused
    if process_label is not None:
        filters["process_label"] = (
            {"like": process_label} if "%" in process_label or "_" in process_label else process_label
        )
    if failed:
        filters["exit_status"] = {"or": [{">": 0}, {"<": 0}]}
    if exit_status is not None:
        filters["exit_status"] = exit_status
    if pks is not None:
        filters["id"] = {"in": list(pks)}
    query = QueryBuilder()
    if group_pk is not None:
        query.append(Group, tag="group", filters={"id": group_pk})
    query.append(
        ProcessNode,
        tag="process",
        filters=filters,
        project=list(_ROW_FIELDS.values()),
        with_group="group" if group_pk is not None else None,
    )
    field = ORDER_FIELDS[order_by]
    direction = "desc" if descending else "asc"
    if limit is not None:  # the most recent ones, then in the order asked for
        query.order_by({"process": {"id": "desc"}}).limit(limit)
    else:
        query.order_by({"process": [{field: direction}, {"id": direction}]})
    rows = [dict(zip(_ROW_FIELDS, values, strict=True)) for values in query.all()]
    if limit is not None:
        key = next(name for name, source in _ROW_FIELDS.items() if source == field)
        # as the database orders: None after every value ascending, before them descending
        rows.sort(key=lambda row: (row[key] is None, row[key] if row[key] is not None else 0, row["id"]))
        if descending:
            rows.reverse()
    return rows


@process.command("list")
@click.option("-a", "--all", "all_", is_flag=True, help="All processes, not only the active ones.")
@click.option(
    "-S",
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES, case_sensitive=False),
    help="Only processes in this state (repeatable).",
)
@click.option(
    "-p",
    "--past-days",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="Only processes created in the last DAYS days.",
)
@click.option(
    "-L",
    "--process-label",
    metavar="LABEL",
    help="Only processes of this process label (a pattern if it holds % or _: 'relax%').",
)
@click.option(
    "-E",
    "--exit-status",
    type=int,
    metavar="N",
    help="Only finished processes that exited with status N (implies finished).",
)
@click.option(
    "-X", "--failed", is_flag=True, help="Only failed processes: finished with a non-zero exit status."
)
@click.option("-G", "--group", "group_identifier", metavar="GROUP", help="Only the processes in this group.")
@click.option(
    "-O",
    "--order-by",
    type=click.Choice(sorted(ORDER_FIELDS)),
    default="id",
    show_default=True,
    help="Order the listing by this field (then by pk).",
)
@click.option(
    "-D",
    "--order-direction",
    type=click.Choice(["asc", "desc"]),
    default="asc",
    show_default=True,
    help="Ascending or descending order.",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the N most recent processes.")
@click.option("--paused", is_flag=True, help="Only paused processes (play them with `plait process play`).")
@pass_state
def list_(
    state: CliState,
    all_: bool,
    states: tuple[str, ...],
    past_days: int | None,
    process_label: str | None,
    exit_status: int | None,
    failed: bool,
    group_identifier: str | None,
    order_by: str,
    order_direction: str,
    limit: int | None,
    paused: bool,
) -> None:
    """List processes, oldest first or by --order-by (by default only the active ones: created,
    running, waiting).

    --exit-status and --failed list finished processes (whatever -a says); --limit keeps the N
    most recent, shown in the order of --order-by.  The holder is the daemon worker
    (`worker PID`) or script (`script PID`) that runs the process now; `-` when nobody does
    (not started yet, parked while it waits for its children, paused, or terminated).
    """
    chosen = sorted({s.lower() for s in states}, key=STATES.index) if states else None
    if failed and exit_status == 0:
        raise click.UsageError("--failed lists non-zero exit statuses: it cannot go with --exit-status 0")
    finished_only = failed or exit_status is not None
    flag = "--failed" if failed else "--exit-status"
    if finished_only and paused:
        raise click.UsageError(f"{flag} lists finished processes, --paused active ones: give one of them")
    if finished_only and chosen is not None and "finished" not in chosen:
        raise click.UsageError(
            f"{flag} lists finished processes, not {', '.join(chosen)} ones (drop --state)"
        )
    wanted = ["finished"] if finished_only else (chosen or (None if all_ else list(ACTIVE)))
    if paused:  # a terminated process may keep its flag; it is no longer paused in any useful sense
        wanted = [s for s in (wanted or STATES) if s not in TERMINAL]
    state.backend()
    group_pk = None
    if group_identifier is not None:
        group_pk = _group_pk(group_identifier)
    since = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=past_days) if past_days else None
    rows = process_rows(
        states=wanted,
        since=since,
        paused=True if paused else None,
        process_label=process_label,
        exit_status=exit_status,
        failed=failed,
        group_pk=group_pk,
        limit=limit,
        order_by=order_by,
        descending=order_direction == "desc",
    )

    out = console()
    now = time.time()
    utcnow = _dt.datetime.now(_dt.UTC)
    listing = table("PK", "Created", "Process label", "State", "Holder")
    counts: dict[str, int] = {}
    n_paused = 0
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        if row.get("paused") and row["state"] not in TERMINAL:
            n_paused += 1
        label = (row["process_label"] or "") + (f" ({row['label']})" if row.get("label") else "")
        listing.add_row(
            str(row["id"]),
            relative_time(row["ctime"], utcnow),
            Text(label),
            _state_cell(row),
            _holder(row, now),
        )
    if rows:
        out.print(listing)
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if s in counts)
    if n_paused and not paused:
        summary += f"; {n_paused} paused"
    defaults = wanted == list(ACTIVE) and not states and not paused
    what = "active process" if defaults else "process"
    if paused:
        what = "paused process"
    elif failed:
        what = "failed process"
    total = f"{len(rows)} {what}{'es' if len(rows) != 1 else ''}"
    if group_identifier is not None:
        total += f" in group '{group_identifier}'"
    out.print(
        Text(
            f"Total: {total}"
            + (f" ({summary})" if summary else "")
            + (f", the {limit} most recent" if limit else "")
        )
    )
    if defaults:
        out.print(
            Text("Only active processes (created, running, waiting) are listed: use -a to list them all.")
        )


def _group_pk(identifier: str) -> int:
    """The pk of the group ``identifier`` (label, pk or uuid), or a usage error naming --group."""
    from plait.orm import NotExistentError, load_group

    try:
        found = load_group(identifier)
    except (NotExistentError, LookupError) as exc:
        raise click.BadParameter(str(exc), param_hint="'--group'") from None
    assert found.pk is not None  # load_group finds stored groups only
    return found.pk


def _data_table(title: str, pairs: list[tuple[str, Any]]) -> Any:
    rows = table("Label", "PK", "Type", "Value", title=title)
    for label, node in pairs:
        rows.add_row(Text(link_label(label)), str(node.pk), type_name(node), Text(node_summary(node)))
    return rows


def _last_line(traceback_text: str) -> str:
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else traceback_text


def _cache_source_text(node: Any) -> str:
    """``<pk> <label>`` of the node whose outputs ``node`` reused, or its uuid if it was deleted since."""
    from plait.orm.errors import NotExistentError

    try:
        source = node.cached_from
    except NotExistentError:
        return f"{node.get_attribute(node.CACHED_FROM_KEY)} (deleted)"
    return f"{source.pk} {source.process_label}"


@process.command("show")
@click.argument("identifier", metavar="PK")
@pass_state
def show(state: CliState, identifier: str) -> None:
    """Show a process: state, inputs, outputs, caller, called processes, last report lines."""
    from plait.orm import LinkType

    state.backend()
    node = load_process(identifier)
    out = console()

    grid = kv_table()
    grid.add_row("type", Text(f"{type_name(node)} ({node.process_label})"))
    grid.add_row("pk", str(node.pk))
    grid.add_row("uuid", node.uuid)
    grid.add_row("label", Text(node.label or "-"))
    if node.description:
        grid.add_row("description", Text(node.description))
    grid.add_row("created", f"{format_time(node.ctime)} ({relative_time(node.ctime)})")
    grid.add_row("process type", Text(node.process_type or "-"))
    grid.add_row("state", process_state_text(node))
    if node.process_status:
        grid.add_row("status", Text(node.process_status))
    if node.exit_status is not None:
        grid.add_row("exit status", str(node.exit_status))
    if node.exit_message:
        grid.add_row("exit message", Text(node.exit_message))
    if node.exception:
        grid.add_row("exception", Text(_last_line(node.exception), style="red"))
    if node.is_created_from_cache:
        grid.add_row("cached from", Text(_cache_source_text(node)))
    restarted_from = node.get_attribute("restarted_from", None)
    if restarted_from is not None:
        step = node.get_attribute("restarted_from_step", None)
        where = f" at step {step}" if step is not None else ", replayed from the top"  # a durable workflow
        grid.add_row("restarted from", Text(f"{restarted_from}{where}"))
    caller = node.caller
    grid.add_row(
        "caller",
        Text(
            f"{caller.pk} {caller.process_label}  "
            f"{state_text(caller.process_state.value, caller.exit_status)}"
        )
        if caller
        else "-",
    )
    out.print(grid)

    inputs = node.get_incoming((LinkType.INPUT_CALC, LinkType.INPUT_WORK))
    outputs = node.get_outgoing((LinkType.CREATE, LinkType.RETURN))
    out.print()
    out.print(
        _data_table("Inputs", [(label, n) for label, _, n in inputs]) if inputs else Text("Inputs: none")
    )
    out.print(
        _data_table("Outputs", [(label, n) for label, _, n in outputs]) if outputs else Text("Outputs: none")
    )

    called = node.get_outgoing((LinkType.CALL_CALC, LinkType.CALL_WORK))
    if called:
        calls = table("PK", "Link label", "Process label", "State", title="Called")
        for label, _, child in called:
            # CALL links join process nodes only, so their far end loads as a ProcessNode
            process = cast("ProcessNode", child)
            calls.add_row(
                str(process.pk),
                Text(link_label(label)),
                Text(process.process_label),
                process_state_text(process),
            )
        out.print(calls)

    records = node.get_report()
    if records:
        shown = records[-SHOW_REPORT_LINES:]
        more = f" (last {len(shown)} of {len(records)})" if len(records) > len(shown) else ""
        out.print(Text(f"Report{more}:", style="bold"))
        for record in shown:
            out.print(Text(f"  {format_time(record['time'])}  {record['level']:<7} {record['message']}"))
    if node.exception:
        out.print(
            Text(
                f"The process excepted: see the full traceback with `plait process report {node.pk}`.",
                style="red",
            )
        )


def _descendants(
    backend: StorageBackend, pk: int, depth: int, found: list[tuple[int, int, dict[str, Any]]]
) -> None:
    for child in backend.get_children(pk):
        found.append((child["node_id"], depth + 1, child))
        _descendants(backend, child["node_id"], depth + 1, found)


def _level_rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else LEVELS.index("REPORT")


@process.command("report")
@click.argument("identifier", metavar="PK")
@click.option(
    "--levelname",
    "-l",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="DEBUG",
    show_default=True,
    help="Only records of this level or more severe.",
)
@pass_state
def report(state: CliState, identifier: str, levelname: str) -> None:
    """Show the log of a process and of every process it called, in time order.

    Each line is: time, level, [pk|process label|step], message; lines of
    called processes are indented by their depth.  Tracebacks of excepted
    processes follow.
    """
    backend = state.backend()
    node = load_process(identifier)
    assert node.pk is not None  # load_process only finds stored nodes
    root_row = backend.get_process(node.pk)
    tree: list[tuple[int, int, dict[str, Any]]] = [(node.pk, 0, root_row or {})]
    _descendants(backend, node.pk, 0, tree)

    threshold = _level_rank(levelname.upper())
    records = []
    for pk, depth, row in tree:
        for record in backend.get_logs(pk):
            if _level_rank(record["level"]) >= threshold:
                records.append(
                    (record["time"], record["id"], depth, pk, row.get("process_label", ""), record)
                )
    records.sort(key=lambda item: (item[0], item[1]))

    out = console()
    if not records:
        out.print(
            Text(
                f"No log records of level {levelname.upper()} or above "
                f"for process {node.pk} and its descendants."
            )
        )
    for _, _, depth, pk, label, record in records:
        step = (record.get("extra") or {}).get("step")
        where = f"[{pk}|{label}" + (f"|{step}" if step else "") + "]"
        indent = "  " * depth
        lines = str(record["message"]).splitlines() or [""]
        style = (
            "red"
            if record["level"] in ("ERROR", "CRITICAL")
            else ("yellow" if record["level"] == "WARNING" else "")
        )
        out.print(
            Text(
                f"{indent}{format_time(record['time'])} {record['level']:<7} {where} {lines[0]}", style=style
            )
        )
        for line in lines[1:]:
            out.print(Text(f"{indent}    {line}", style=style))

    for pk, depth, row in tree:
        exception = row.get("exception")
        if exception:
            out.print()
            out.print(
                Text(
                    f"Traceback of process {pk} ({row.get('process_label', '')}), excepted:", style="bold red"
                )
            )
            for line in exception.rstrip().splitlines():
                out.print(Text("  " * depth + line))


# -- control: pause, play, kill ------------------------------------------------------------------------

#: what each control verb does, for prompts and messages: (verb, past tense, default timeout)
_CONTROL = {
    "pause": ("Pause", "paused", 10.0),
    "play": ("Play", "played", 10.0),
    "kill": ("Kill", "killed", 30.0),
}
#: the start of a reply that means the request did not do what was asked
_FAILED = re.compile(
    r"^(no reply from |\d+ is not a process|unknown action|[A-Z]\w*(Error|Exception|Timeout)\b)"
)


def _resolve_pks(identifiers: tuple[str, ...]) -> tuple[list[int], list[tuple[str, str]]]:
    """``(pks of the processes, [(identifier, why not)])``: a bad identifier does not stop the others."""
    pks: list[int] = []
    errors: list[tuple[str, str]] = []
    for identifier in identifiers:
        try:
            pk = int(load_process(identifier).pk or 0)
        except click.ClickException as exc:
            errors.append((identifier, exc.format_message()))
            continue
        except Exception as exc:
            reason = describe_exception(exc)
            if reason is None:
                raise
            errors.append((identifier, reason))
            continue
        if pk not in pks:
            pks.append(pk)
    return pks, errors


def _targets_for_all(action: str) -> tuple[list[int], int]:
    """``(pks to act on, descendants acted on through them)`` for ``--all``."""
    if action == "play":
        rows = process_rows(states=list(ACTIVE), paused=True)
        return [row["id"] for row in rows], 0
    rows = process_rows(states=list(ACTIVE))
    if action == "pause":
        return [row["id"] for row in rows if not row.get("paused")], 0
    # kill: the roots of the active trees; killing a process kills what it called
    active = {row["id"] for row in rows}
    roots = [row["id"] for row in rows if row.get("caller_id") not in active]
    return roots, len(active) - len(roots)


def _pk_list(pks: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, pks[:limit]))
    return shown + (f", ... ({len(pks) - limit} more)" if len(pks) > limit else "")


def _control_command(
    state: CliState,
    action: str,
    identifiers: tuple[str, ...],
    all_: bool,
    yes: bool,
    timeout: float | None,
    message: str | None = None,
) -> None:
    from plait.engine import control

    verb, past, default_timeout = _CONTROL[action]
    timeout = timeout if timeout is not None else default_timeout
    if all_ and identifiers:
        raise click.UsageError("give either PKs or --all, not both")
    if not all_ and not identifiers:
        raise click.UsageError(f"which processes? Give their PKs, or --all to {action} every one")
    state.backend()
    out = console()
    failed = False
    if all_:
        pks, through = _targets_for_all(action)
        if not pks:
            what = "paused processes to play" if action == "play" else f"active processes to {action}"
            out.print(Text(f"There are no {what}."))
            return
        what = "paused process" if action == "play" else "active process"
        question = f"{verb} {len(pks)} {what}{'es' if len(pks) != 1 else ''} ({_pk_list(pks)})"
        if through:
            question += f" and the {through} active process{'es' if through != 1 else ''} they called"
        if not yes and not click.confirm(question + "?", default=False, err=True):
            raise CliError(f"cancelled: no process was {past}")
    else:
        pks, errors = _resolve_pks(identifiers)
        for identifier, reason in errors:
            click.echo(f"Error: {identifier}: {' '.join(reason.split())}", err=True)
            failed = True

    for pk in pks:
        try:
            if action == "kill":
                kwargs: dict[str, Any] = {"timeout": timeout}
                if message:
                    kwargs["message"] = message
                reply = control.kill([pk], **kwargs)[pk]
            else:
                reply = getattr(control, action)([pk], timeout=timeout)[pk]
        except Exception as exc:
            reply = describe_exception(exc) or f"{type(exc).__name__}: {exc}"
        reply = " ".join(str(reply).split())
        if _FAILED.match(reply):
            click.echo(f"Error: {pk}: {reply}", err=True)
            failed = True
        else:
            out.print(Text(f"{pk}: {reply}"))
    if failed:
        click.get_current_context().exit(1)


def _control_options(action: str) -> Any:
    verb, _, default_timeout = _CONTROL[action]
    what = "every paused process" if action == "play" else "every active process"

    def decorate(function: Any) -> Any:
        function = click.argument("identifiers", nargs=-1, metavar="PK...")(function)
        function = click.option("--all", "all_", is_flag=True, help=f"{verb} {what} (asks first).")(function)
        function = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation with --all.")(
            function
        )
        function = click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="S",
            help=f"Seconds to wait for the runner holding a process to reply [default: {default_timeout:g}].",
        )(function)
        return function

    return decorate


@process.command()
@_control_options("pause")
@pass_state
def pause(
    state: CliState, identifiers: tuple[str, ...], all_: bool, yes: bool, timeout: float | None
) -> None:
    """Pause processes: they stop at their next safe point and stay paused, across restarts, until played.

    A paused process held by a daemon worker is let go of: it holds no worker
    while paused.  One line per process: `42: paused`.
    """
    _control_command(state, "pause", identifiers, all_, yes, timeout)


@process.command()
@_control_options("play")
@pass_state
def play(state: CliState, identifiers: tuple[str, ...], all_: bool, yes: bool, timeout: float | None) -> None:
    """Play paused processes: they continue from where they stopped (the daemon takes them again)."""
    _control_command(state, "play", identifiers, all_, yes, timeout)


@process.command()
@_control_options("kill")
@click.option(
    "-m",
    "--message",
    metavar="TEXT",
    help="Why: recorded on the node as its exit message [default: killed by request].",
)
@pass_state
def kill(
    state: CliState,
    identifiers: tuple[str, ...],
    all_: bool,
    yes: bool,
    timeout: float | None,
    message: str | None,
) -> None:
    """Kill processes and everything they called; a calculation job's scheduler job is cancelled.

    A process running a step is killed when that step ends (an async step is
    interrupted at once).
    """
    _control_command(state, "kill", identifiers, all_, yes, timeout, message)


# -- watch ---------------------------------------------------------------------------------------------


class _Watcher:
    """Polls the database for the state of a process tree and for new log records.

    The database is the truth: this works whoever runs the processes (daemon workers, a script,
    or nobody yet) and needs no broker.
    """

    #: polls during which a terminated process's logs are still read (a kill logs after it commits)
    SETTLE_POLLS = 2

    def __init__(self, backend: StorageBackend, root: int) -> None:
        self.backend = backend
        self.root = root
        self.seen: dict[int, tuple[Any, ...]] = {}
        self.labels: dict[int, str] = {}
        self.depth: dict[int, int] = {root: 0}
        self.last_log: dict[int, int] = {}
        self.settled: dict[int, int] = {}
        self.root_state = ""

    def _depth(self, row: dict[str, Any]) -> int:
        pk = row["node_id"]
        if pk not in self.depth:
            caller = row.get("caller_id")
            self.depth[pk] = (self.depth.get(caller, 0) if caller is not None else 0) + 1
        return self.depth[pk]

    def _prefix(self, when: _dt.datetime, pk: int) -> str:
        stamp = when.astimezone().strftime("%H:%M:%S")
        return f"{stamp}  {'  ' * self.depth.get(pk, 0)}[{pk}] {self.labels.get(pk, '')}"

    def poll(self, first: bool = False) -> list[Text]:
        """Lines for what changed since the last poll (on the first poll: the current state)."""
        root = self.backend.get_process(self.root)
        if root is None:
            raise CliError(f"process {self.root} no longer exists")
        rows = [root, *self.backend.get_descendants(self.root)]
        now = time.time()
        utcnow = _dt.datetime.now(_dt.UTC)
        events: list[tuple[_dt.datetime, int, Text]] = []
        read_logs: list[int] = []
        for row in rows:
            pk = row["node_id"]
            self.labels.setdefault(pk, row.get("process_label") or "")
            self._depth(row)
            terminated = row["state"] in TERMINAL
            paused = bool(row.get("paused")) and not terminated
            owner = None if terminated else row.get("lease_owner")
            key = (row["state"], paused, row.get("status"), row.get("exit_status"), owner)
            previous = self.seen.get(pk)
            if key != previous:
                self.seen[pk] = key
                text = state_text(row["state"], row.get("exit_status"), paused, row.get("status"))
                if row.get("exit_message") and terminated and row["state"] != "finished":
                    text += f": {row['exit_message']}"
                elif row.get("exit_message") and row["state"] == "finished" and row.get("exit_status"):
                    text += f": {row['exit_message']}"
                line = Text(f"{self._prefix(row.get('mtime') or utcnow, pk)}  -> ")
                line.append(text, style=state_style(row["state"], row.get("exit_status")))
                if owner:
                    line.append(f"  ({holder_text(owner, row.get('lease_expires'), now).plain})")
                if previous is None and pk != self.root and not first:
                    line.append(f"  (called by {row.get('caller_id')})")
                state_changed = previous is None or previous[:4] != key[:4]
                when = (row.get("mtime") or utcnow) if state_changed else utcnow
                events.append((when, 0, line))
            if terminated:
                self.settled[pk] = self.settled.get(pk, 0) + 1
            if self.settled.get(pk, 0) <= self.SETTLE_POLLS:
                read_logs.append(pk)
            if pk == self.root:
                self.root_state = row["state"]
        for pk in read_logs:
            records = self.backend.get_logs(pk)
            if first:  # history is in `plait process report`; only new lines from now on
                self.last_log[pk] = records[-1]["id"] if records else 0
                continue
            last = self.last_log.get(pk, 0)
            for record in records:
                if record["id"] <= last:
                    continue
                self.last_log[pk] = record["id"]
                level = record["level"]
                style = "red" if level in ("ERROR", "CRITICAL") else ("yellow" if level == "WARNING" else "")
                message_lines = str(record["message"]).splitlines() or [""]
                line = Text(f"{self._prefix(record['time'], pk)}  {level:<7} ")
                line.append(message_lines[0], style=style)
                for more in message_lines[1:]:
                    line.append(f"\n{' ' * 10}{'  ' * self.depth.get(pk, 0)}    {more}", style=style)
                events.append((record["time"], record["id"], line))
        events.sort(key=lambda event: (event[0], event[1]))
        return [line for _, _, line in events]

    @property
    def terminated(self) -> bool:
        return self.root_state in TERMINAL


@process.command()
@click.argument("identifier", metavar="PK")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="S",
    help="Seconds between two looks at the database.",
)
@pass_state
def watch(state: CliState, identifier: str, interval: float) -> None:
    """Follow a process and its descendants live until it terminates (Ctrl-C stops watching).

    Prints a line when the state, paused flag, status or holder of a process
    of the tree changes (`->`), and every new report line, as read from the
    database, so it works whether the process runs in the daemon or in a
    script.  Exits with 0 when the process terminates.
    """
    backend = state.backend()
    node = load_process(identifier)
    pk = int(node.pk or 0)
    watcher = _Watcher(backend, pk)
    out = console()
    out.print(
        Text(
            f"Watching process {node.pk} ({node.process_label}) and its descendants; "
            f"earlier report lines: plait process report {node.pk}"
        )
    )
    failures = 0
    first = True
    try:
        while True:
            try:
                lines = watcher.poll(first=first)
                failures = 0
            except click.ClickException:
                raise
            except Exception as exc:  # a database briefly busy: look again; give up if it stays so
                failures += 1
                if failures >= 5:
                    reason = describe_exception(exc) or exc
                    raise CliError(f"cannot read process {node.pk}: {reason}") from None
                lines = []
            first = False
            for line in lines:
                out.print(line)
            if watcher.terminated:
                time.sleep(min(interval, 0.2))  # the last report lines and the children's final states
                for line in watcher.poll():
                    out.print(line)
                row = backend.get_process(pk) or {}
                out.print(
                    Text(
                        f"Process {node.pk} terminated: "
                        f"{state_text(row.get('state', ''), row.get('exit_status'))}"
                    )
                )
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo(f"Stopped watching process {node.pk} ({watcher.root_state or 'unknown state'}).", err=True)
        click.get_current_context().exit(130)


def _restart_input(assignment: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of ``--input``: ``pk:N`` (or ``uuid:U``) is a stored node, anything else JSON.

    A dotted NAME is a port in a namespace (``relax.x=3``).  Raises click.BadParameter.
    """
    import json

    from plait.orm import load_node

    name, sep, raw = assignment.partition("=")
    if not sep or not name:
        raise click.BadParameter(
            f"'{assignment}' is not NAME=VALUE (for example x=3, x=pk:12 or label='\"a\"')",
            param_hint="--input",
        )
    if raw.startswith(("pk:", "uuid:")):
        return name, load_node(raw.partition(":")[2])
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"the value of input '{name}', {raw!r}, is neither pk:N, uuid:U nor JSON ({exc.msg}); "
            f"a string needs JSON quotes: {name}='\"{raw}\"'",
            param_hint="--input",
        ) from None


def _nest_inputs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for name, value in pairs:
        *parents, leaf = name.split(".")
        target = inputs
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return inputs


def _step_map(assignments: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for assignment in assignments:
        old, sep, new = assignment.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"'{assignment}' is not OLD=NEW (two step names)", param_hint="--map")
        mapping[old] = new
    return mapping


@process.command()
@click.argument("identifier", metavar="PK")
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    help="The step to start at (default: the step that failed); 'parse' for a calculation job; "
    "for a durable workflow, the launch position from which nothing is reused.",
)
@click.option(
    "--input",
    "input_assignments",
    metavar="NAME=VALUE",
    multiple=True,
    help="Give an input anew (repeatable): VALUE is pk:N or uuid:U for a stored node, else JSON.",
)
@click.option(
    "--map",
    "step_assignments",
    metavar="OLD=NEW",
    multiple=True,
    help="A step renamed in the code since the process ran (repeatable).",
)
@click.option(
    "--submit", is_flag=True, help="Store the new process for the daemon instead of running it here."
)
@pass_state
def restart(
    state: CliState,
    identifier: str,
    from_step: str | None,
    input_assignments: tuple[str, ...],
    step_assignments: tuple[str, ...],
    submit: bool,
) -> None:
    """Fix and continue: a new process of the current code that starts where process PK failed.

    A work chain that excepted, was killed or failed starts again at the checkpoint taken
    before the failed step (or STEP), reusing the children that finished before it; a
    calculation job parses its retrieved files again with the current parser (--from parse);
    a durable workflow runs again from the top, reusing the launches its old run finished ok
    up to the first that differs (--from N: only launches 0 to N-1).
    The new process records restarted_from (and restarted_from_step); PK is not changed.
    """
    from plait.engine.ports import InputValidationError
    from plait.engine.restart_from import RestartError, plan_restart
    from plait.engine.restart_from import restart as restart_process

    state.backend()
    node = load_process(identifier)
    inputs = _nest_inputs([_restart_input(item) for item in input_assignments])
    mapping = _step_map(step_assignments)
    out = console()
    try:
        plan = plan_restart(node, from_step, mapping)  # refused here, before anything is stored
        if plan.is_replay:
            count = len(plan.reused())
            out.print(
                Text(
                    f"Restarting durable workflow {node.pk} ({node.process_label}) from the top, "
                    f"reusing up to {count} recorded launch{'' if count == 1 else 'es'}"
                )
            )
        else:
            out.print(Text(f"Restarting process {node.pk} ({node.process_label}) at step {plan.step}"))
        new = restart_process(node, from_step, inputs, step_map=mapping, submit=submit)
    except (RestartError, InputValidationError) as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # the restarted process itself excepted: it is recorded; say which
        from plait.orm import ProcessNode, QueryBuilder

        query = QueryBuilder().append(
            ProcessNode, filters={"attributes.restarted_from": node.pk}, project=["id"]
        )
        latest = max(query.all(flat=True), default="?")
        raise CliError(
            f"the restarted process {latest} excepted ({type(exc).__name__}: {exc}); "
            f"see `plait process report {latest}`"
        ) from None
    if submit:
        out.print(Text(f"Submitted process {new.pk}: the daemon runs it"))
    else:
        out.print(Text(f"Process {new.pk}: {state_text(new.process_state.value, new.exit_status)}"))


def _register_dump() -> None:
    from plait.cli.process_dump import dump

    process.add_command(dump)


_register_dump()
