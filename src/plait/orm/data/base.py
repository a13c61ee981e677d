"""Nodes holding one Python value: ``Int``, ``Float``, ``Str``, ``Bool``.

They behave like the value they hold where that is unambiguous: arithmetic
and comparisons work with other nodes and with plain numbers and return new,
unstored nodes, so ``Int(1) + Int(2)`` is ``Int(3)``.  Equality compares
values (``Int(3) == 3``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, ClassVar

from plait.orm.node import Data, Node, short_repr

__all__ = ["BaseType", "Bool", "Float", "Int", "NumericType", "Str", "to_node"]


class BaseType(Data):
    """A node holding a single value of type :attr:`value_type` in the attribute ``value``."""

    value_type: ClassVar[type] = object

    def __init__(self, value: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = self.value_type() if value is None else value

    @property
    def value(self) -> Any:
        return self._attributes.get("value")

    @value.setter
    def value(self, value: Any) -> None:
        if isinstance(value, BaseType):
            value = value.value
        try:
            converted = self._convert(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{type(self).__name__} needs a {self.value_type.__name__}, got "
                f"{type(value).__name__} {short_repr(value)}"
            ) from exc
        self.set_attribute("value", converted)

    def _convert(self, value: Any) -> Any:
        return self.value_type(value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseType):
            return self.value == other.value
        if isinstance(other, Node):
            return False
        return self.value == other

    def __hash__(self) -> int:
        return Node.__hash__(self)

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        pk = f"pk={self.pk}" if self.pk is not None else "unstored"
        return f"<{type(self).__name__} {pk} value={self.value!r}>"


def _result(value: Any) -> Node:
    return to_node(value)


def _binary(op: Callable[[Any, Any], Any], reflected: bool = False) -> Callable[..., Any]:
    def method(self: NumericType, other: Any) -> Any:
        if isinstance(other, NumericType):
            other = other.value
        elif not isinstance(other, (int, float)) or isinstance(other, bool):
            return NotImplemented
        return _result(op(other, self.value) if reflected else op(self.value, other))

    return method


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., Any]:
    def method(self: NumericType, other: Any) -> Any:
        if isinstance(other, NumericType):
            other = other.value
        elif not isinstance(other, (int, float)):
            return NotImplemented
        return op(self.value, other)

    return method


class NumericType(BaseType):
    """``Int`` and ``Float``: arithmetic returns new unstored nodes of the natural result type."""

    __add__ = _binary(operator.add)
    __radd__ = _binary(operator.add, reflected=True)
    __sub__ = _binary(operator.sub)
    __rsub__ = _binary(operator.sub, reflected=True)
    __mul__ = _binary(operator.mul)
    __rmul__ = _binary(operator.mul, reflected=True)
    __truediv__ = _binary(operator.truediv)
    __rtruediv__ = _binary(operator.truediv, reflected=True)
    __floordiv__ = _binary(operator.floordiv)
    __rfloordiv__ = _binary(operator.floordiv, reflected=True)
    __mod__ = _binary(operator.mod)
    __rmod__ = _binary(operator.mod, reflected=True)
    __pow__ = _binary(operator.pow)
    __rpow__ = _binary(operator.pow, reflected=True)
    __lt__ = _compare(operator.lt)
    __le__ = _compare(operator.le)
    __gt__ = _compare(operator.gt)
    __ge__ = _compare(operator.ge)

    def __neg__(self) -> Node:
        return _result(-self.value)

    def __abs__(self) -> Node:
        return _result(abs(self.value))

    def __int__(self) -> int:
        return int(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __bool__(self) -> bool:
        return bool(self.value)

    __hash__ = BaseType.__hash__


class Int(NumericType):
    """An integer."""

    node_type = "data.core.int"
    value_type = int

    def _convert(self, value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(value)
        if isinstance(value, str):
            raise TypeError(value)
        return int(value)

    def __index__(self) -> int:
        return int(self.value)


class Float(NumericType):
    """A floating-point number (finite: JSON has no NaN)."""

    node_type = "data.core.float"
    value_type = float

    def _convert(self, value: Any) -> float:
        if isinstance(value, (bool, str)):
            raise TypeError(value)
        return float(value)


class Str(BaseType):
    """A string."""

    node_type = "data.core.str"
    value_type = str

    def _convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value

    def __len__(self) -> int:
        return len(self.value)


class Bool(BaseType):
    """A boolean."""

    node_type = "data.core.bool"
    value_type = bool

    def _convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(value)
        return value

    def __bool__(self) -> bool:
        return bool(self.value)


def to_node(value: Any) -> Node:
    """Wrap a plain Python value in the matching node type; a node is returned as it is.

    ``bool`` → Bool, ``int`` → Int, ``float`` → Float, ``str`` → Str,
    ``dict`` → Dict, ``list``/``tuple`` → List.

    Raises:
        TypeError: no node type holds such a value.
    """
    if isinstance(value, Node):
        return value
    if isinstance(value, bool):
        return Bool(value)
    if isinstance(value, int):
        return Int(value)
    if isinstance(value, float):
        return Float(value)
    if isinstance(value, str):
        return Str(value)
    from plait.orm.data.collections import Dict, List

    if isinstance(value, dict):
        return Dict(value)
    if isinstance(value, (list, tuple)):
        return List(list(value))
    raise TypeError(f"no node type holds a {type(value).__name__} ({value!r}); wrap it in a Data node")
