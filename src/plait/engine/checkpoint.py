"""Checkpoints are data: versioned JSON, never pickles.

A work chain's context may hold plain JSON values (``None``, bool, int,
finite float, str, lists, tuples, dicts with string keys) and *stored*
nodes.  Nodes are written as references (``{"__node__": pk}``) and loaded
back on resume; tuples are tagged so they come back as tuples.  Anything
else is refused by :func:`encode` with a :class:`CheckpointError` that names
the context key, raised at the end of the step that set it — not at some
later resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from plait.orm import Node

__all__ = ["CHECKPOINT_VERSION", "AttributeDict", "CheckpointError", "decode", "encode"]

CHECKPOINT_VERSION = 1
_NODE = "__node__"
_TUPLE = "__tuple__"
_DICT = "__dict__"
_ATTRDICT = "__attributedict__"


class CheckpointError(TypeError):
    """A value cannot be written to a checkpoint."""


class AttributeDict(MutableMapping[str, Any]):
    """A dict whose keys are also attributes: ``ctx.count`` is ``ctx["count"]``.

    A missing attribute raises AttributeError naming the known keys.
    """

    __slots__ = ("_data", "_what")

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        what: str = "the context has no '{key}' (it has: {known})",
    ) -> None:
        object.__setattr__(self, "_data", dict(data or {}))
        object.__setattr__(self, "_what", what)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key in ("_data", "_what"):
            raise AttributeError(key)
        try:
            return self._data[key]
        except KeyError:
            known = ", ".join(sorted(self._data)) or "none"
            raise AttributeError(self._what.format(key=key, known=known)) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"AttributeDict({self._data!r})"

    def __dir__(self) -> list[str]:
        return sorted(self._data)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __copy__(self) -> AttributeDict:
        return AttributeDict(self._data, what=self._what)

    def __deepcopy__(self, memo: dict[int, Any]) -> AttributeDict:
        import copy

        return AttributeDict(copy.deepcopy(self._data, memo), what=self._what)


def encode(value: Any, where: str) -> Any:
    """The JSON form of ``value``.

    Raises:
        CheckpointError: naming ``where`` (e.g. ``"ctx.results[2]"``) and the type refused.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{where} = {value!r}: checkpoints are JSON, which has no NaN or infinity")
        return value
    if isinstance(value, Node):
        if not value.is_stored:
            raise CheckpointError(
                f"{where} holds an unstored {type(value).__name__}: store it (or create it with a "
                "calcfunction, which records where it came from) before putting it in the context"
            )
        return {_NODE: value.pk}
    if isinstance(value, list):
        return [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return {_TUPLE: [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if isinstance(value, (dict, AttributeDict)):
        out: dict[str, Any] = {}
        if isinstance(value, AttributeDict):
            return {_ATTRDICT: encode(value.as_dict(), where)}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"{where}: dictionary key {key!r} is not a string (JSON needs str keys)"
                )
            out[key] = encode(item, f"{where}.{key}")
        if len(out) == 1 and next(iter(out)) in (_NODE, _TUPLE, _DICT, _ATTRDICT):
            return {_DICT: out}  # a user dict that happens to look like a tag
        return out
    raise CheckpointError(
        f"{where} holds a {type(value).__module__}.{type(value).__qualname__}: a work chain context may hold "
        "only stored nodes and JSON values (None, bool, int, float, str, list, tuple, dict with str keys)"
    )


def decode(value: Any, load: Callable[[int], Node]) -> Any:
    """The inverse of :func:`encode`; ``load(pk)`` returns the node for a reference."""
    if isinstance(value, list):
        return [decode(item, load) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            key = next(iter(value))
            if key == _NODE:
                return load(value[_NODE])
            if key == _TUPLE:
                return tuple(decode(item, load) for item in value[_TUPLE])
            if key == _DICT:
                return {k: decode(v, load) for k, v in value[_DICT].items()}
            if key == _ATTRDICT:
                return AttributeDict(decode(value[_ATTRDICT], load))
        return {k: decode(v, load) for k, v in value.items()}
    return value
