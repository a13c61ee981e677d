"""The language of :class:`plait.orm.QueryBuilder`: the fields of each vertex and edge, and filters.

A filter specification is written as in aiida-core::

    {"label": "relax",                                  # == is the default operator
     "attributes.energy": {"<": -10.5},                 # a nested JSON path, typed comparison
     "process_state": {"in": ["finished", "excepted"]},
     "or": [{"exit_status": 0}, {"exit_status": {">": 400}}],
     "ctime": {">": datetime(2024, 1, 1, tzinfo=UTC)}}

Each key is a field (a column, or ``attributes.a.b`` / ``extras.a.b``: a path into a JSON column)
or a junction (``and``, ``or``, negated as ``!and``, ``!or``; ``~`` works as ``!`` too) holding a
list of such dicts.  A field's condition is a plain value (``==``) or a dict of operators, ANDed,
which may hold ``and``/``or`` lists of operator dicts on the same field.  The operators:

=====================  ===========================================================================
``==``, ``!=``/``!==``  equal, not equal (``None``: the column is NULL, or the JSON value is null or
                        missing)
``>`` ``<`` ``>=`` ``<=``  order (JSON values: numbers with numbers, strings with strings)
``in``, ``!in``         one of a list of values (one type: numbers, strings or booleans)
``like``, ``ilike``     SQL pattern (``%`` any text, ``_`` one character, ``\\`` escapes either),
                        case-sensitive or not (``ilike`` folds ASCII letters only, as SQLite does)
``contains``            a JSON array holding every one of a list of plain values
``has_key``             a JSON object with that key (or a JSON array with that string)
``of_length``, ``longer``, ``shorter``  the length of a JSON array
``of_type``             ``object``, ``array``, ``string``, ``number``, ``boolean`` or ``null``
                        (``null`` also matches a missing value)
=====================  ===========================================================================

Any operator is negated by a ``!`` in front (``!in``, ``!like``, ``!has_key``); a negated condition
is the exact complement of the plain one (``{"exit_status": {"!==": 0}}`` also finds the processes
that have no exit status yet).

Everything here is checked in Python when the query is built, before any database is asked: an
unknown field or operator, or a value of the wrong type, raises
:class:`~plait.orm.errors.InvalidQueryError` naming the vertex, the field and the reason.  The SQL
is written elsewhere (``plait.orm.query_sql``) from the :class:`Condition` trees made here.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from plait.orm.errors import InvalidQueryError
from plait.orm.node import LinkType
from plait.orm.process_nodes import ProcessState

__all__ = [
    "DATA_FIELDS",
    "GROUP_FIELDS",
    "JSON_TYPES",
    "LINK_FIELDS",
    "MEMBERSHIP_FIELDS",
    "NODE_FIELDS",
    "OPERATORS",
    "WALK_FIELDS",
    "Column",
    "Comparison",
    "Condition",
    "FieldCatalog",
    "FieldRef",
    "Junction",
    "parse_filter_expression",
    "parse_filters",
]

#: the kinds of value a column holds
INT, FLOAT, TEXT, DATETIME, BOOL, JSON = "int", "float", "text", "datetime", "bool", "json"

#: every operator, in its canonical spelling (a ``!`` or ``~`` in front negates it)
OPERATORS = (
    "==",
    ">",
    "<",
    ">=",
    "<=",
    "in",
    "like",
    "ilike",
    "contains",
    "has_key",
    "of_length",
    "longer",
    "shorter",
    "of_type",
)
_SPELLINGS = {"=>": ">=", "=<": "<="}
#: operators that have a meaning on JSON values only
_JSON_ONLY = ("contains", "has_key", "of_length", "longer", "shorter", "of_type")
_ORDERING = (">", "<", ">=", "<=")
#: the JSON types ``of_type`` knows (PostgreSQL's names)
JSON_TYPES = ("object", "array", "string", "number", "boolean", "null")
_JUNCTIONS = {
    "and": ("and", False),
    "or": ("or", False),
    "!and": ("and", True),
    "~and": ("and", True),
    "!or": ("or", True),
    "~or": ("or", True),
}


@dataclass(frozen=True)
class Column:
    """A column a vertex or edge can be filtered, projected and ordered on.

    ``table`` says which of the vertex's tables holds it: ``node`` (``nodes``), ``process``
    (``processes``, joined for process nodes), ``group``, ``link``, ``membership``
    (``group_nodes``) or ``walk`` (the ancestor/descendant pairs of a recursive relationship).
    """

    name: str
    table: str
    column: str
    kind: str
    nullable: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldRef:
    """A field as written in a query (``text``), resolved to a column and, in a JSON column, a path.

    Path items are object keys (``str``) or array indexes (``int``, from an all-digit item:
    ``attributes.positions.0``).
    """

    text: str
    column: Column
    path: tuple[str | int, ...] = ()

    @property
    def is_json(self) -> bool:
        return self.column.kind == JSON


class FieldCatalog:
    """The fields of one kind of vertex or edge, and how a field written in a query resolves.

    ``aliases`` are other names of a column (``pk`` for ``id``).  ``process_attributes``: for
    vertices that may hold process nodes, ``attributes.process_state`` (and the other process
    fields that aiida-core keeps as attributes) resolve to the column of the ``processes`` table.
    """

    def __init__(
        self,
        what: str,
        columns: Iterable[Column],
        aliases: Mapping[str, str] | None = None,
        process_attributes: bool = False,
    ) -> None:
        self.what = what
        self.columns = {column.name: column for column in columns}
        self.aliases = dict(aliases or {})
        self.process_attributes = process_attributes

    @property
    def names(self) -> list[str]:
        """Every field name, aliases included, for messages."""
        return sorted(set(self.columns) | set(self.aliases))

    def resolve(self, text: object, where: str) -> FieldRef:
        """The field ``text`` names.

        Raises:
            InvalidQueryError: not a field of this kind of vertex, or a malformed JSON path.
        """
        if not isinstance(text, str) or not text:
            raise InvalidQueryError(f"{where}: a field is a non-empty string, not {text!r}")
        head, *rest = text.split(".")
        name = self.aliases.get(head, head)
        column = self.columns.get(name)
        if column is None:
            hint = ""
            if name in _PROCESS_COLUMN_NAMES:
                hint = f" ('{name}' is a field of process nodes, and this vertex holds {self.what}s only)"
            raise InvalidQueryError(
                f"{where}: unknown field '{text}' of a {self.what}{hint}; "
                f"the fields are {', '.join(self.names)} (and attributes.KEY..., extras.KEY... paths)"
            )
        if not rest:
            return FieldRef(text, column)
        if column.kind != JSON:
            raise InvalidQueryError(
                f"{where}: '{head}' is not a JSON column, so '{text}' names nothing inside it "
                "(only attributes and extras hold nested values)"
            )
        if self.process_attributes and name == "attributes" and len(rest) == 1:
            process_column = self.columns.get(rest[0])
            if process_column is not None and process_column.table == "process":
                return FieldRef(text, process_column)
        path: list[str | int] = []
        for item in rest:
            if not item:
                raise InvalidQueryError(f"{where}: '{text}' has an empty key (two dots, or a dot at an end)")
            if '"' in item:
                raise InvalidQueryError(f"{where}: the key {item!r} of '{text}' holds a double quote")
            path.append(int(item) if item.isdigit() else item)
        return FieldRef(text, column, tuple(path))


_NODE_COLUMNS = (
    Column("id", "node", "id", INT),
    Column("uuid", "node", "uuid", TEXT),
    Column("node_type", "node", "node_type", TEXT),
    Column("process_type", "node", "process_type", TEXT, nullable=True),
    Column("label", "node", "label", TEXT),
    Column("description", "node", "description", TEXT),
    Column("ctime", "node", "ctime", DATETIME),
    Column("mtime", "node", "mtime", DATETIME),
    Column("node_hash", "node", "node_hash", TEXT, nullable=True),
    Column("computer_id", "node", "computer_id", INT, nullable=True),
    Column("attributes", "node", "attributes", JSON),
    Column("extras", "node", "extras", JSON),
)
# every column of ``processes`` is NULL for a node that is no process (the table is outer-joined)
_PROCESS_COLUMNS = (
    Column("process_state", "process", "state", TEXT, True, tuple(state.value for state in ProcessState)),
    Column("process_status", "process", "status", TEXT, True),
    Column("exit_status", "process", "exit_status", INT, True),
    Column("exit_message", "process", "exit_message", TEXT, True),
    Column("exception", "process", "exception", TEXT, True),
    Column("process_label", "process", "process_label", TEXT, True),
    Column("paused", "process", "paused", BOOL, True),
    Column("caller_id", "process", "caller_id", INT, True),
    Column("lease_owner", "process", "lease_owner", TEXT, True),
    Column("lease_expires", "process", "lease_expires", FLOAT, True),
    Column("job_stage", "process", "job_stage", TEXT, True),
)
_PROCESS_COLUMN_NAMES = frozenset(column.name for column in _PROCESS_COLUMNS)
_NODE_ALIASES = {"pk": "id", "dbcomputer_id": "computer_id"}

#: fields of a vertex that may hold process nodes (Node, ProcessNode and its subclasses)
NODE_FIELDS = FieldCatalog("node", _NODE_COLUMNS + _PROCESS_COLUMNS, _NODE_ALIASES, process_attributes=True)
#: fields of a vertex of data nodes only
DATA_FIELDS = FieldCatalog("data node", _NODE_COLUMNS, _NODE_ALIASES)
GROUP_FIELDS = FieldCatalog(
    "group",
    (
        Column("id", "group", "id", INT),
        Column("uuid", "group", "uuid", TEXT),
        Column("label", "group", "label", TEXT),
        Column("type_string", "group", "type_string", TEXT),
        Column("description", "group", "description", TEXT),
        Column("ctime", "group", "ctime", DATETIME),
        Column("user_email", "group", "user_email", TEXT),
        Column("extras", "group", "extras", JSON),
    ),
    {"pk": "id", "time": "ctime"},
)
#: the edge of ``with_incoming`` / ``with_outgoing``: a provenance link
LINK_FIELDS = FieldCatalog(
    "link",
    (
        Column("id", "link", "id", INT),
        Column("input_id", "link", "input_id", INT),
        Column("output_id", "link", "output_id", INT),
        Column("label", "link", "label", TEXT),
        Column("link_type", "link", "link_type", TEXT, choices=tuple(kind.value for kind in LinkType)),
    ),
    {"pk": "id", "type": "link_type"},
)
#: the edge of ``with_group`` / ``with_node``: a node's membership of a group
MEMBERSHIP_FIELDS = FieldCatalog(
    "group membership",
    (Column("group_id", "membership", "group_id", INT), Column("node_id", "membership", "node_id", INT)),
)
#: the edge of ``with_ancestors`` / ``with_descendants``: ``depth`` 0 is a direct link (as in aiida-core)
WALK_FIELDS = FieldCatalog(
    "ancestor-descendant pair",
    (
        Column("ancestor_id", "walk", "ancestor_id", INT),
        Column("descendant_id", "walk", "descendant_id", INT),
        Column("depth", "walk", "depth", INT),
    ),
)


# -- conditions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """``field operator value``, the value checked and converted (datetimes in UTC, tuples as lists)."""

    field: FieldRef
    operator: str
    value: Any
    negated: bool = False


@dataclass(frozen=True)
class Junction:
    """All (``and``) or any (``or``) of ``parts``."""

    kind: str
    parts: tuple[Comparison | Junction, ...]
    negated: bool = False


Condition = Comparison | Junction


def all_of(parts: list[Condition]) -> Condition | None:
    """One condition for all of ``parts`` (None for none)."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Junction("and", tuple(parts))


def parse_filters(spec: object, resolve: Callable[[str], FieldRef], where: str) -> Condition | None:
    """Check a filter specification and turn it into one condition (None when it filters nothing).

    ``resolve`` turns a field name into a :class:`FieldRef` (raising for an unknown one);
    ``where`` ("the filters of 'calc'") starts every message.

    Raises:
        InvalidQueryError: the specification is malformed, names an unknown operator, or gives a
            value of the wrong type for its field and operator.
    """
    if not isinstance(spec, Mapping):
        raise InvalidQueryError(
            f"{where}: filters are a dict of field: condition, not a {type(spec).__name__} ({spec!r})"
        )
    parts: list[Condition] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise InvalidQueryError(f"{where}: a field is a string, not {key!r}")
        junction = _JUNCTIONS.get(key)
        if junction is not None:
            kind, negated = junction
            if not isinstance(value, (list, tuple)):
                raise InvalidQueryError(f"{where}: '{key}' takes a list of filter dicts, not {value!r}")
            children = [parse_filters(item, resolve, where) for item in value]
            found = tuple(child for child in children if child is not None)
            if found:
                parts.append(Junction(kind, found, negated))
            continue
        parts.append(_field_condition(resolve(key), value, f"{where} on '{key}'"))
    return all_of(parts)


def _field_condition(field: FieldRef, value: object, where: str) -> Condition:
    if not isinstance(value, Mapping):
        return Comparison(field, "==", check_value(field, "==", value, where))
    if not value:
        raise InvalidQueryError(
            f"{where}: an empty dict of operators (write {{'==': {{}}}} for an empty dict)"
        )
    parts: list[Condition] = []
    for key, operand in value.items():
        junction = _JUNCTIONS.get(key) if isinstance(key, str) else None
        if junction is not None:
            kind, negated = junction
            if not isinstance(operand, (list, tuple)) or not operand:
                raise InvalidQueryError(f"{where}: '{key}' takes a non-empty list of operator dicts")
            children = tuple(_field_condition(field, item, where) for item in operand)
            parts.append(Junction(kind, children, negated))
            continue
        operator, negated = parse_operator(key, where)
        parts.append(Comparison(field, operator, check_value(field, operator, operand, where), negated))
    condition = all_of(parts)
    assert condition is not None
    return condition


def parse_operator(text: object, where: str) -> tuple[str, bool]:
    """``(canonical operator, negated)`` for an operator as written (``"!in"`` -> ``("in", True)``).

    Raises:
        InvalidQueryError: not an operator.
    """
    if isinstance(text, str):
        if text == "!=":
            return "==", True
        negated = text[:1] in ("!", "~")
        name = _SPELLINGS.get(text[1:] if negated else text, text[1:] if negated else text)
        if name in OPERATORS:
            return name, negated
    raise InvalidQueryError(
        f"{where}: unknown operator {text!r}; the operators are {', '.join(OPERATORS)} "
        "(a '!' in front negates one: '!==', '!in', '!like')"
    )


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON (tuples become lists, str enums plain strings)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidQueryError(f"{where}: {value!r} is no JSON value (JSON has no NaN or infinity)")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(item, where) for item in value]
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise InvalidQueryError(f"{where}: the JSON object key {key!r} is not a string")
        return {key: _json_value(item, where) for key, item in value.items()}
    raise InvalidQueryError(f"{where}: a {_type_name(value)} is no JSON value ({value!r})")


def _scalar_kind(value: object) -> str | None:
    """``number``, ``string``, ``boolean`` or ``null`` for a plain JSON scalar; None otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _value_list(value: object, operator: str, where: str) -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidQueryError(f"{where}: '{operator}' takes a list of values, not {value!r}")
    return list(value)


def check_value(field: FieldRef, operator: str, value: Any, where: str) -> Any:
    """``value`` checked for ``field operator value`` and converted to what the SQL compares with.

    Raises:
        InvalidQueryError: naming the field, the operator and what it takes.
    """
    if field.is_json:
        return _check_json_value(field, operator, value, where)
    return _check_column_value(field.column, operator, value, where)


def _check_json_value(field: FieldRef, operator: str, value: Any, where: str) -> Any:
    if operator == "==":
        return _json_value(value, where)
    if operator in _ORDERING:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidQueryError(f"{where}: cannot compare with {value!r}")
        if _is_number(value) or isinstance(value, str):
            return str(value) if isinstance(value, str) else value
        raise InvalidQueryError(
            f"{where}: '{operator}' compares a JSON value with a number or a string, not with {value!r}"
        )
    if operator == "in":
        items = [_json_value(item, where) for item in _value_list(value, operator, where)]
        kinds = {_scalar_kind(item) or "structured" for item in items}
        if kinds & {"structured", "null"}:
            raise InvalidQueryError(
                f"{where}: 'in' takes numbers, strings or booleans (for null write {{'==': None}})"
            )
        if len(kinds) > 1:
            raise InvalidQueryError(f"{where}: the values of 'in' mix types ({', '.join(sorted(kinds))})")
        return items
    if operator in ("like", "ilike", "has_key"):
        if not isinstance(value, str):
            raise InvalidQueryError(f"{where}: '{operator}' takes a string, not {value!r}")
        return str(value)
    if operator == "contains":
        items = [_json_value(item, where) for item in _value_list(value, operator, where)]
        if any(_scalar_kind(item) is None for item in items):
            raise InvalidQueryError(
                f"{where}: 'contains' takes a list of plain values (numbers, strings, booleans, None)"
            )
        return items
    if operator in ("of_length", "longer", "shorter"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidQueryError(f"{where}: '{operator}' takes a length (an int >= 0), not {value!r}")
        return int(value)
    assert operator == "of_type"
    if value not in JSON_TYPES:
        raise InvalidQueryError(f"{where}: 'of_type' takes one of {', '.join(JSON_TYPES)}, not {value!r}")
    return str(value)


def utc_datetime(value: _dt.datetime) -> _dt.datetime:
    """``value`` in UTC; a naive datetime is taken as local time, as ``datetime.astimezone`` does."""
    return value.astimezone(_dt.UTC)


def _column_scalar(column: Column, value: Any, where: str) -> Any:
    kind = column.kind
    if kind == INT and isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if kind == FLOAT and _is_number(value):
        return float(value)
    if kind == BOOL and isinstance(value, bool):
        return value
    if kind == DATETIME and isinstance(value, _dt.datetime):
        return utc_datetime(value)
    if kind == TEXT and isinstance(value, str):
        if column.choices and value not in column.choices:
            raise InvalidQueryError(f"{where}: {value!r} is not one of {', '.join(column.choices)}")
        return str(value)
    wanted = {INT: "integers", FLOAT: "numbers", BOOL: "booleans", DATETIME: "datetimes", TEXT: "strings"}
    raise InvalidQueryError(
        f"{where}: '{column.name}' holds {wanted[kind]}, not {_type_name(value)} {value!r}"
    )


def _check_column_value(column: Column, operator: str, value: Any, where: str) -> Any:
    if operator in _JSON_ONLY:
        raise InvalidQueryError(
            f"{where}: '{operator}' applies to JSON values (attributes.KEY, extras.KEY), "
            f"and '{column.name}' is a {column.kind} column"
        )
    if operator in ("like", "ilike"):
        if column.kind != TEXT:
            raise InvalidQueryError(
                f"{where}: '{operator}' applies to text, and '{column.name}' holds {column.kind}s"
            )
        if not isinstance(value, str):
            raise InvalidQueryError(f"{where}: '{operator}' takes a string pattern, not {value!r}")
        return str(value)
    if operator == "in":
        return [_column_scalar(column, item, where) for item in _value_list(value, operator, where)]
    if value is None:
        if operator == "==":
            return None
        raise InvalidQueryError(f"{where}: cannot order by comparing with None ('{operator}')")
    if operator in _ORDERING and column.kind == BOOL:
        raise InvalidQueryError(
            f"{where}: '{column.name}' holds booleans, which '{operator}' does not compare"
        )
    return _column_scalar(column, value, where)


# -- filter expressions of the command line ------------------------------------------------------------

_EXPRESSION = re.compile(
    r"^\s*(?P<field>[^\s=!<>]+?)\s*(?:(?P<symbol>==|!=|>=|<=|=|>|<)|\s(?P<word>!?[a-z_]+)(?:\s|$))\s*(?P<value>.*?)\s*$",
    re.S,
)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _json_scalar(text: str) -> Any:
    """A value written on the command line: JSON if it reads as JSON (``3``, ``true``, ``"3"``), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return _unquote(text)


def _cli_column_value(column: Column, text: str, expression: str) -> Any:
    kind = column.kind
    try:
        if kind == INT:
            return int(text)
        if kind == FLOAT:
            return float(text)
        if kind == DATETIME:
            return _dt.datetime.fromisoformat(_unquote(text))
    except ValueError:
        wanted = {INT: "an integer", FLOAT: "a number", DATETIME: "an ISO date and time (2024-05-01T12:00)"}
        raise InvalidQueryError(
            f"filter '{expression}': '{column.name}' holds {wanted[kind]}, not '{text}'"
        ) from None
    if kind == BOOL:
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise InvalidQueryError(f"filter '{expression}': '{column.name}' is true or false, not '{text}'")
    return _unquote(text)


def parse_filter_expression(expression: str, fields: FieldCatalog) -> dict[str, Any]:
    """A filter dict from one command-line expression: ``attributes.value>3``, ``label=foo``.

    ``FIELD OP VALUE`` with ``OP`` one of ``= == != > < >= <=`` (no spaces needed), or an operator
    word between spaces: ``label like relax%``, ``attributes.x !in 1,2,3``,
    ``extras has_key tag``.  The value is read as the field's type: text for text columns,
    an integer for ``id``, an ISO datetime for ``ctime``; for JSON paths as JSON when it reads
    as JSON (``3``, ``2.5``, ``true``, ``null``, ``"3"`` for the string), else as text.  ``in``,
    ``!in`` and ``contains`` take comma-separated values or a JSON list.

    Raises:
        InvalidQueryError: the expression does not read, or names an unknown field or operator,
            or its value does not fit the field (the message quotes the expression).
    """
    where = f"filter '{expression}'"
    match = _EXPRESSION.match(expression)
    if match is None:
        raise InvalidQueryError(
            f"{where} does not read as FIELD OPERATOR VALUE (e.g. 'attributes.value>3', 'label=foo', "
            "'label like relax%')"
        )
    field = fields.resolve(match["field"], where)
    symbol = match["symbol"]
    written = {"=": "=="}.get(symbol, symbol) if symbol else match["word"]
    operator, negated = parse_operator(written, where)
    text = match["value"]
    if symbol and text[:1] in ("=", "<", ">"):
        raise InvalidQueryError(
            f"{where}: the value '{text}' begins with an operator character; "
            f"quote it ({match['field']}{symbol}'{text}') if that is what you mean"
        )
    value: Any
    if operator in ("in", "contains"):
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidQueryError(f"{where}: '{text}' is not a JSON list") from None
        else:
            items = [item.strip() for item in text.split(",") if item.strip()]
            value = [
                _json_scalar(item) if field.is_json else _cli_column_value(field.column, item, expression)
                for item in items
            ]
    elif operator in ("of_length", "longer", "shorter"):
        try:
            value = int(text)
        except ValueError:
            raise InvalidQueryError(f"{where}: '{operator}' takes a length, not '{text}'") from None
    elif operator in ("like", "ilike", "has_key", "of_type"):
        value = _unquote(text)
    elif field.is_json:
        value = _json_scalar(text)
    else:
        value = _cli_column_value(field.column, text, expression)
    spec = {field.text: {("!" if negated else "") + operator: value}}
    parse_filters(spec, lambda name: fields.resolve(name, where), where)  # the value fits the field
    return spec
