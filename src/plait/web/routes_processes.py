"""``/api/processes``: list, show, report, control, submit, and a stream of state changes.

The database work of every endpoint runs in the thread pool (plain ``def``
endpoints, ``run_in_threadpool``), so the server's loop never waits on it.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from plait.orm import ProcessNode, QueryBuilder
from plait.web.errors import ApiError
from plait.web.lookup import get_process, load_process_class, resolve_inputs
from plait.web.serialize import json_value, node_summary, process_summary

__all__ = ["router"]

router = APIRouter(prefix="/api/processes", tags=["processes"])

MAX_PK = 2**63 - 1
Pk = Annotated[int, Path(ge=1, le=MAX_PK, description="the process node's pk")]
StateName = Literal["created", "running", "waiting", "finished", "excepted", "killed"]
ACTIVE: tuple[StateName, ...] = ("created", "running", "waiting")
#: the fields each row of the list has -> the QueryBuilder field
ROW_FIELDS = {
    "pk": "id",
    "uuid": "uuid",
    "label": "label",
    "ctime": "ctime",
    "process_label": "process_label",
    "state": "process_state",
    "paused": "paused",
    "exit_status": "exit_status",
    "process_status": "process_status",
    "job_stage": "job_stage",
    "caller": "caller_id",
    "holder": "lease_owner",
}


class ProcessFilter(BaseModel):
    """Which processes: the same filters as the list (all given ones must hold)."""

    state: list[StateName] | None = Field(default=None, description="only processes in these states")
    process_label: str | None = Field(
        default=None, max_length=255, description="equal, or a LIKE pattern with % or _"
    )
    paused: bool | None = Field(default=None)
    since: _dt.datetime | None = Field(default=None, description="created at or after")
    until: _dt.datetime | None = Field(default=None, description="created before")


def _filters(spec: ProcessFilter) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if spec.state:
        filters["process_state"] = {"in": list(spec.state)}
    if spec.process_label is not None:
        label = spec.process_label
        filters["process_label"] = {"like": label} if "%" in label or "_" in label else label
    if spec.paused is not None:
        filters["paused"] = spec.paused
    times = {}
    for key, op in (("since", ">="), ("until", "<")):
        value = getattr(spec, key)
        if value is not None:
            times[op] = value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if times:
        filters["ctime"] = {"and": [{op: value} for op, value in times.items()]}
    return filters


def _query(spec: ProcessFilter, extra: dict[str, Any] | None = None) -> QueryBuilder:
    filters = _filters(spec)
    if extra:
        filters = {"and": [filters, extra]} if filters else extra
    return QueryBuilder().append(ProcessNode, tag="process", filters=filters)


def _total(spec: ProcessFilter, extra: dict[str, Any] | None) -> int:
    """How many processes the list's filters select.

    With no filter but states, the per-state counts of the process rows answer it (one indexed
    ``GROUP BY``, a few ms with 10,000 processes, where the query builder's count joins every node);
    any other filter counts through the query builder.
    """
    plain = ProcessFilter(state=spec.state)
    if extra is None and spec == plain:
        from plait.storage import get_backend

        counts = get_backend().count_processes()
        return sum(counts.get(state, 0) for state in spec.state) if spec.state else sum(counts.values())
    return _query(spec, extra).count()


def _search_filter(text: str | None) -> dict[str, Any] | None:
    """The filter of the list's ``search``: the text in the label or process label, or the pk it is."""
    text = (text or "").strip()
    if not text:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    found: list[dict[str, Any]] = [{"label": {"ilike": pattern}}, {"process_label": {"ilike": pattern}}]
    if text.isdigit() and int(text) <= MAX_PK:
        found.append({"id": int(text)})
    return {"or": found}


@router.get("", summary="List processes (newest first), filtered and paged")
def list_processes(
    state: Annotated[list[StateName] | None, Query(description="repeat for several states")] = None,
    process_label: Annotated[str | None, Query(max_length=255)] = None,
    paused: bool | None = None,
    since: _dt.datetime | None = None,
    until: _dt.datetime | None = None,
    search: Annotated[
        str | None,
        Query(max_length=255, description="text in the label or process label (any case), or a pk"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_PK)] = 0,
) -> dict[str, Any]:
    spec = ProcessFilter(state=state, process_label=process_label, paused=paused, since=since, until=until)
    extra = _search_filter(search)
    total = _total(spec, extra)
    query = _query(spec, extra)
    query.add_projection("process", list(ROW_FIELDS.values()))
    query.order_by({"process": {"id": "desc"}}).limit(limit).offset(offset)
    items = [json_value(dict(zip(ROW_FIELDS, values, strict=True))) for values in query.all()]
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def _links(node: ProcessNode, incoming: bool) -> dict[str, Any]:
    from plait.orm import LinkType

    kinds = (LinkType.INPUT_CALC, LinkType.INPUT_WORK) if incoming else (LinkType.CREATE, LinkType.RETURN)
    found = node.get_incoming(kinds) if incoming else node.get_outgoing(kinds)
    return {label.replace("__", "."): node_summary(other) for label, _, other in found}


def _call_tree(pk: int, depth: int = 0) -> list[dict[str, Any]]:
    from plait.storage import get_backend

    if depth > 50:  # a call tree deeper than this is cut (it would be unreadable anyway)
        return []
    return [
        {
            "pk": row["node_id"],
            "process_label": row["process_label"],
            "state": row["state"],
            "paused": bool(row["paused"]),
            "exit_status": row["exit_status"],
            "called": _call_tree(row["node_id"], depth + 1),
        }
        for row in get_backend().get_children(pk)
    ]


def _report(pk: int) -> list[dict[str, Any]]:
    from plait.storage import get_backend

    return [
        json_value({key: record.get(key) for key in ("time", "level", "message")} | {"pk": pk})
        for record in get_backend().get_logs(pk)
    ]


@router.get("/{pk}", summary="One process: state, inputs, outputs, report, children and call tree")
def show_process(pk: Pk) -> dict[str, Any]:
    from plait.storage import get_backend

    node = get_process(pk)
    caller = node.caller
    row = get_backend().get_process(pk) or {}
    return {
        **process_summary(node),
        "job_stage": row.get("job_stage"),
        "holder": row.get("lease_owner"),
        "exception": node.exception,
        "caller": caller.pk if caller is not None else None,
        "inputs": _links(node, incoming=True),
        "outputs": _links(node, incoming=False),
        "children": [process_summary(child) for child in node.called],
        "call_tree": _call_tree(pk),
        "report": _report(pk),
    }


@router.get("/{pk}/report", summary="The report lines of a process and of every process it called")
def process_report(pk: Pk) -> dict[str, Any]:
    from plait.storage import get_backend

    get_process(pk)
    pks = [pk, *(row["node_id"] for row in get_backend().get_descendants(pk))]
    lines = sorted((line for p in pks for line in _report(p)), key=lambda line: str(line["time"]))
    return {"pk": pk, "lines": lines}


Action = Literal["pause", "play", "kill"]


def _control(action: str, pks: list[int], message: str) -> dict[str, str]:
    from plait.engine import control

    if not pks:
        return {}
    if action == "pause":
        results = control.pause(pks)
    elif action == "play":
        results = control.play(pks)
    else:
        results = control.kill(pks, message=message)
    return {str(pk): text for pk, text in results.items()}


class KillMessage(BaseModel):
    message: str = Field(default="killed through the web API", max_length=10_000)


@router.post("/{pk}/{action}", summary="Pause, play or kill one process")
def control_one(pk: Pk, action: Action, body: KillMessage | None = None) -> dict[str, Any]:
    get_process(pk)
    message = (body or KillMessage()).message
    return {"action": action, "results": _control(action, [pk], message)}


class ControlRequest(BaseModel):
    """Pause, play or kill the processes listed, or with ``all`` every active one the filter selects."""

    action: Action
    pks: list[Annotated[int, Field(ge=1, le=MAX_PK)]] | None = Field(default=None, max_length=1000)
    all: bool = Field(default=False, description="act on every active process that ``filter`` selects")
    filter: ProcessFilter = Field(default_factory=lambda: ProcessFilter())
    message: str = Field(default="killed through the web API", max_length=10_000)


@router.post("/control", summary="Pause, play or kill processes by pk, or every active one of a filter")
def control_many(request: ControlRequest) -> dict[str, Any]:
    if request.pks is not None and request.all:
        raise ApiError(422, "give either pks or all, not both", "body.all")
    if request.pks is None and not request.all:
        raise ApiError(422, "which processes? give pks, or all=true with a filter", "body.pks")
    if request.all:
        spec = request.filter.model_copy()
        wanted = [s for s in (spec.state or list(ACTIVE)) if s in ACTIVE]
        if not wanted:
            return {"action": request.action, "results": {}}
        spec.state = wanted
        if request.action == "play":
            spec.paused = True
        query = _query(spec)
        query.add_projection("process", "id")
        pks = query.all(flat=True)
    else:
        pks = list(dict.fromkeys(request.pks or []))
    return {"action": request.action, "results": _control(request.action, pks, request.message)}


class SubmitRequest(BaseModel):
    """A process class and its inputs as JSON; ``{"$node": pk or uuid}`` stands for a stored node."""

    process: str = Field(
        ..., min_length=1, max_length=500, description="an entry point (arithmetic.add) or 'module:ClassName'"
    )
    inputs: dict[str, Any] = Field(default_factory=dict)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Submit a process to the daemon")
def submit_process(request: SubmitRequest) -> dict[str, Any]:
    from plait.engine.launch import submit
    from plait.engine.ports import InputValidationError

    cls = load_process_class(request.process)
    inputs = resolve_inputs(request.inputs)
    try:
        node = submit(cls, inputs)
    except InputValidationError as exc:
        raise ApiError(422, str(exc), "body.inputs") from None
    except (ValueError, TypeError) as exc:
        raise ApiError(422, str(exc), "body.process") from None
    return process_summary(node)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get(
    "/{pk}/events",
    summary="Server-sent events: the process's state changes until it terminates",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def process_events(pk: Pk) -> StreamingResponse:
    from plait.engine.watch import watch

    await run_in_threadpool(get_process, pk)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for event in watch(pk, interval=0.5):
                yield _sse("state", event.as_dict())
        except ValueError as exc:  # deleted while watched
            yield _sse("error", {"error": str(exc)})

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
