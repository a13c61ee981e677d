"""``Dict`` and ``List``: JSON containers as nodes."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from plait.orm.errors import StoringNotAllowed
from plait.orm.node import Data, check_json, short_repr

__all__ = ["Dict", "List"]

_list = list  # the name ``list`` is a parameter of List.__init__


class Dict(Data):
    """A dictionary with string keys and JSON values.

    ``Dict({"a": 1})`` or ``Dict(dict={"a": 1})``; read with ``d["a"]``,
    ``d.get_dict()``; change with ``d["a"] = 2`` only before storing.
    """

    node_type = "data.core.dict"

    def __init__(
        self, value: dict[str, Any] | None = None, *, dict: dict[str, Any] | None = None, **kwargs: Any
    ):
        super().__init__(**kwargs)
        content = value if value is not None else dict
        if content is not None and not isinstance(content, Mapping):
            raise TypeError(f"Dict needs a dict, not {type(content).__name__}: {short_repr(content)}")
        for key, item in (content or {}).items():
            self[key] = item

    def __setitem__(self, key: str, value: Any) -> None:
        """Set ``key`` (a str: JSON keys are strings) to a JSON value, copied.

        Raises:
            StoringNotAllowed: a key that is not a str (``{1: 2}`` is refused, not
                turned into ``{"1": 2}``), a value that is not JSON, nests too deeply
                or contains itself; naming the key.
        """
        if not isinstance(key, str):
            raise StoringNotAllowed(f"Dict key {short_repr(key)} is not a string (JSON keys are strings)")
        check_json(value, f"Dict[{key!r}]")  # before the copy, which would recurse without limit
        self.set_attribute(key, copy.deepcopy(value))

    def __getitem__(self, key: str) -> Any:
        try:
            return copy.deepcopy(self._attributes[key])
        except KeyError:
            raise KeyError(f"{self!r} has no key '{key}' (keys: {', '.join(self._attributes)})") from None

    def __contains__(self, key: object) -> bool:
        return key in self._attributes

    def __iter__(self) -> Iterator[str]:
        return iter(self._attributes)

    def __len__(self) -> int:
        return len(self._attributes)

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self._attributes.get(key, default))

    def keys(self) -> list[str]:
        return list(self._attributes)

    def items(self) -> list[tuple[str, Any]]:
        return list(self.get_dict().items())

    def get_dict(self) -> dict[str, Any]:
        """A deep copy of the content."""
        return copy.deepcopy(self._attributes)

    @property
    def value(self) -> dict[str, Any]:
        return self.get_dict()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dict):
            return self._attributes == other._attributes
        if isinstance(other, dict):
            return self._attributes == other
        return super().__eq__(other)

    __hash__ = Data.__hash__


class List(Data):
    """A list of JSON values.  ``List([1, 2])``; ``append``/``extend`` only before storing."""

    node_type = "data.core.list"

    def __init__(self, value: list[Any] | None = None, *, list: list[Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        content = value if value is not None else list
        self.set_list(content or [])

    def set_list(self, items: list[Any]) -> None:
        """Replace the content by a copy of ``items`` (a list or tuple of JSON values).

        Raises:
            TypeError: ``items`` is a str, bytes, a mapping or not iterable.
            StoringNotAllowed: an item is not JSON, nests too deeply or contains itself.
        """
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise TypeError(f"List needs a list, not {type(items).__name__}: {short_repr(items)}")
        if not isinstance(items, (tuple, _list)):
            items = _list(items)
        check_json(items, "list")
        self.set_attribute("list", copy.deepcopy([*items]))

    def get_list(self) -> list[Any]:
        return copy.deepcopy(self._attributes.get("list", []))

    @property
    def value(self) -> list[Any]:
        return self.get_list()

    def append(self, item: Any) -> None:
        self.set_list([*self._attributes.get("list", []), item])

    def extend(self, items: list[Any]) -> None:
        self.set_list([*self._attributes.get("list", []), *items])

    def __getitem__(self, index: int) -> Any:
        return copy.deepcopy(self._attributes["list"][index])

    def __len__(self) -> int:
        return len(self._attributes.get("list", []))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get_list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, List):
            return self._attributes.get("list") == other._attributes.get("list")
        if isinstance(other, list):
            return self._attributes.get("list") == other
        return super().__eq__(other)

    __hash__ = Data.__hash__
