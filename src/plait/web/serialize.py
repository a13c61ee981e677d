"""Nodes and process rows as JSON values for the API's answers."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from plait.orm import Node, ProcessNode

__all__ = ["json_value", "node_summary", "process_summary"]


def json_value(value: Any) -> Any:
    """``value`` with datetimes as ISO text, numbers that JSON cannot hold (nan, inf) as text."""
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def node_summary(node: Node) -> dict[str, Any]:
    """pk, uuid, type, label, times; the value of a base data node (Int, Str...) too."""
    summary: dict[str, Any] = {
        "pk": node.pk,
        "uuid": node.uuid,
        "node_type": node.node_type,
        "class": type(node).__name__,
        "label": node.label,
        "ctime": json_value(node.ctime),
    }
    value = getattr(node, "value", None)
    if isinstance(value, str | int | float | bool):
        summary["value"] = json_value(value)
    return summary


def process_summary(node: ProcessNode) -> dict[str, Any]:
    """A process node's state as the list shows it."""
    return {
        **node_summary(node),
        "process_label": node.process_label,
        "state": node.process_state.value,
        "paused": node.paused,
        "exit_status": node.exit_status,
        "exit_message": node.exit_message,
        "process_status": node.process_status,
    }
