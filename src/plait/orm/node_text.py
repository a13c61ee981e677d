"""Short text about nodes and process states, for people: CLI tables and provenance graph labels.

``state_text("finished", 0)`` is ``"finished [0]"``; :func:`node_summary` is
a node's value, keys, files or process state in a few dozen characters.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plait.orm.node import Node

__all__ = ["node_summary", "one_line", "state_text"]


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(str(text).split())


def state_text(
    state: str, exit_status: int | None = None, paused: bool = False, status: str | None = None
) -> str:
    """``"finished [0]"``, ``"waiting, paused: waiting for 2 processes: 5, 6"``."""
    text = state
    if state == "finished" and exit_status is not None:
        text += f" [{exit_status}]"
    if paused:
        text += ", paused"
    if status:
        text += f": {status}"
    return text


def _short(text: str, limit: int = 60) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def node_summary(node: Node, limit: int = 60) -> str:
    """A short description of a node's content: its value, keys, files or process state."""
    from plait.orm import BaseType, Dict, List, ProcessNode

    if isinstance(node, ProcessNode):
        text = f"{node.process_label} {state_text(node.process_state.value, node.exit_status, node.paused)}"
        return _short(text, limit)
    if isinstance(node, BaseType):
        value = node.value
        if isinstance(value, float):
            return repr(value) if len(repr(value)) <= 14 else f"{value:.12g}"
        return _short(repr(value) if isinstance(value, str) else str(value), limit)
    if isinstance(node, (Dict, List)):
        return _short(json.dumps(node.value, sort_keys=True), limit)
    files = node.list_file_paths()
    if files:
        return _short(", ".join(files), limit)
    if node.attributes:
        return _short(json.dumps(node.attributes, sort_keys=True), limit)
    return ""
