"""``plait process``: list processes, show one, read its report.

The rows come from the storage backend's joined node+process query
(``list_processes``), so listing thousands of processes is one SQL query.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

import click
from rich.text import Text

from plait.cli._common import (
    CliState,
    console,
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

__all__ = ["process"]

STATES = ("created", "running", "waiting", "finished", "excepted", "killed")
ACTIVE = ("created", "running", "waiting")
#: log levels from least to most severe; REPORT is what ``self.report`` writes.
LEVELS = ("DEBUG", "INFO", "REPORT", "WARNING", "ERROR", "CRITICAL")
#: how many report lines ``process show`` prints
SHOW_REPORT_LINES = 10


@click.group()
def process() -> None:
    """List processes, show one, read its report."""


def _holder(row: dict[str, Any], now: float) -> Text:
    owner = row.get("lease_owner")
    if not owner:
        return Text("-")
    expires = row.get("lease_expires")
    if expires is not None and expires < now:
        return Text(f"{owner} (expired)", style="red")
    return Text(owner)


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
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the N most recent processes.")
@pass_state
def list_(
    state: CliState, all_: bool, states: tuple[str, ...], past_days: int | None, limit: int | None
) -> None:
    """List processes, oldest first (by default only the active ones: created, running, waiting)."""
    backend = state.backend()
    wanted = (
        sorted({s.lower() for s in states}, key=STATES.index) if states else (None if all_ else list(ACTIVE))
    )
    since = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=past_days) if past_days else None
    rows = backend.list_processes(states=wanted, since=since, limit=limit)

    out = console()
    now = time.time()
    utcnow = _dt.datetime.now(_dt.UTC)
    listing = table("PK", "Created", "Process label", "State", "Holder")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        label = row["process_label"] + (f" ({row['label']})" if row.get("label") else "")
        listing.add_row(
            str(row["id"]),
            relative_time(row["ctime"], utcnow),
            Text(label),
            Text(
                state_text(row["state"], row.get("exit_status"), bool(row.get("paused")), row.get("status")),
                style=state_style(row["state"], row.get("exit_status")),
            ),
            _holder(row, now),
        )
    if rows:
        out.print(listing)
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if s in counts)
    what = "active process" if wanted == list(ACTIVE) and not states else "process"
    total = f"{len(rows)} {what}{'es' if len(rows) != 1 else ''}"
    out.print(
        Text(
            f"Total: {total}"
            + (f" ({summary})" if summary else "")
            + (f", the {limit} most recent" if limit else "")
        )
    )
    if wanted == list(ACTIVE) and not states:
        out.print(
            Text("Only active processes (created, running, waiting) are listed: use -a to list them all.")
        )


def _data_table(title: str, pairs: list[tuple[str, Any]]) -> Any:
    rows = table("Label", "PK", "Type", "Value", title=title)
    for label, node in pairs:
        rows.add_row(Text(link_label(label)), str(node.pk), type_name(node), Text(node_summary(node)))
    return rows


def _last_line(traceback_text: str) -> str:
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else traceback_text


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
            calls.add_row(
                str(child.pk), Text(link_label(label)), Text(child.process_label), process_state_text(child)
            )  # type: ignore[attr-defined]
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


def _descendants(backend: Any, pk: int, depth: int, found: list[tuple[int, int, dict[str, Any]]]) -> None:
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
    root_row = backend.get_process(node.pk)
    tree: list[tuple[int, int, dict[str, Any]]] = [(node.pk, 0, root_row or {})]  # type: ignore[list-item]
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
