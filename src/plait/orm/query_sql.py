"""One SQL statement for a checked :class:`~plait.orm.querybuilder.QueryBuilder` query, and its rows.

:class:`CompiledQuery` turns a :class:`~plait.orm.querybuilder.QuerySpec` into a SQLAlchemy Core
``SELECT`` on the tables of :mod:`plait.storage.schema`, for the dialect of the profile's
database, runs it and decodes the rows.  Every value of the query is a bound parameter, patterns
included; so are JSON keys, except those that are plain names (``value``, ``energy_1``) or list
indices, which are written into the SQL text so that the database's expression index on
``attributes.value`` applies (see :func:`_plain_path`).

How the path becomes SQL:

* each vertex is an alias of ``nodes`` or of ``groups``; a vertex of process nodes only has
  ``processes`` inner-joined (the join is then the type filter of ``ProcessNode``, and the
  database may start from that table's indexes), another one has it outer-joined when its
  filters, projections or order use process fields or when it projects ``*`` (inner-joined when
  a filter keeps only nodes with a process row); vertices after the first are joined through
  their edge: an alias of ``links``, of ``group_nodes``, or of a recursive walk;
* a walk (``with_ancestors`` / ``with_descendants``) is a recursive CTE of (ancestor,
  descendant) pairs along ``create`` and ``input_calc`` links, started from the links of the
  nodes that pass the anchor vertex's own filters, with ``UNION`` so that each pair is found
  once however many paths join it (and the recursion ends on any graph); ``depth`` (0 for a
  direct link) is carried only when the edge uses it, and an upper bound on it in the edge
  filters stops the recursion there;
* JSON paths compare by type on both databases: SQLite's ``json_type``/``json_extract`` and
  PostgreSQL's ``jsonb_typeof`` and ``->`` give the same answers (a number compares with numbers,
  a string with strings, ``1 == 1.0``; a missing key matches nothing but a negation);
* text compares and orders by code point (``COLLATE "C"`` on PostgreSQL), ``like`` is
  case-sensitive (``GLOB`` on SQLite), NULLs order last ascending and first descending.

Rows become values in bulk: ``*`` of a node is built from the node's columns (and its process
row, from the same statement) by :func:`plait.orm.node.node_from_row`, never loaded again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table
from sqlalchemy.sql.selectable import FromClause, Join, NamedFromClause, Select

from plait.orm.node import LinkType, node_from_row
from plait.orm.query_filters import (
    DATETIME,
    INT,
    TEXT,
    Comparison,
    Condition,
    FieldRef,
    Junction,
)
from plait.storage.schema import (
    NODE_COLUMNS_COPIED_TO_PROCESSES,
    group_nodes,
    groups,
    links,
    nodes,
    processes,
)

if TYPE_CHECKING:
    from plait.orm.querybuilder import OrderItem, Projection, QuerySpec, Vertex
    from plait.storage.backend import StorageBackend

__all__ = ["FOLLOWED_LINK_TYPES", "CompiledQuery"]

#: the links an ancestry walks along: data provenance (a calculation's inputs and what it created)
FOLLOWED_LINK_TYPES = (LinkType.CREATE.value, LinkType.INPUT_CALC.value)
#: longer ``in`` lists are sent as one array (PostgreSQL) or JSON list (SQLite) parameter
_LONG_IN = 500
#: SQLite's json_type names for each JSON type (PostgreSQL's jsonb_typeof names)
_SQLITE_TYPES = {
    "number": ("integer", "real"),
    "string": ("text",),
    "boolean": ("true", "false"),
    "null": ("null",),
    "object": ("object",),
    "array": ("array",),
    "missing": ("missing",),
}
_NODE_COLUMNS = [column.name for column in nodes.columns]
_PROCESS_COLUMNS = [column.name for column in processes.columns]
#: the node columns a process row repeats, by the name of the column in ``processes``
_NODE_COLUMNS_OF_PROCESS = {"id": "node_id", **{name: name for name in NODE_COLUMNS_COPIED_TO_PROCESSES}}
_GROUP_COLUMNS = [column.name for column in groups.columns]


@functools.cache
def _alias(table: Table, name: str) -> NamedFromClause[Any]:
    """The alias ``name`` of ``table``, made once: an alias is a plain description of a FROM item,
    shared by every statement that names it, and making its column proxies is most of the
    Python time of building a small query."""
    return table.alias(name)


def _utc(value: Any) -> Any:
    """A datetime in UTC (SQLite hands back naive UTC datetimes, PostgreSQL the session's zone)."""
    if isinstance(value, _dt.datetime):
        return value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else value.astimezone(_dt.UTC)
    return value


def _utc_text(text: str | None) -> _dt.datetime | None:
    """A datetime column read as SQLite's stored text (``2026-12-01 18:25:04.172914``), in UTC.

    ``datetime.fromisoformat`` is C code; SQLAlchemy's SQLite ``DateTime`` result processor
    parses the same text with a regular expression, which was most of the Python time of a
    query returning thousands of rows with a ``ctime`` (``process list``).  The text plait
    stores has no offset (it is UTC): parsing it with ``+00:00`` appended gives the aware
    datetime directly, where ``.replace(tzinfo=...)`` afterwards cost ten times the parse; a
    text that has an offset of its own fails that parse and is converted instead.
    """
    if text is None:
        return None
    try:
        return _dt.datetime.fromisoformat(text + "+00:00")
    except ValueError:
        value = _dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else value.astimezone(_dt.UTC)


def _datetime_names(table: Table) -> frozenset[str]:
    return frozenset(column.name for column in table.columns if isinstance(column.type, DateTime))


_DATETIME_NAMES = {table.name: _datetime_names(table) for table in (nodes, processes, groups)}
_JSON_NAMES = {
    table.name: frozenset(column.name for column in table.columns if isinstance(column.type, JSON))
    for table in (nodes, processes, groups)
}
_JSON_DECODER = json.JSONDecoder()


def _json_text(text: str | None) -> Any:
    """A JSON column read as SQLite's stored text, decoded.

    ``json.loads`` matches a regular expression on each side of the document to skip white
    space, which was two thirds of its time for the small objects nodes hold; the text plait
    stores has none, so the decoder's ``raw_decode`` reads it directly (``loads`` still reads
    any text that is not one whole compact document).  ``{}`` (the extras and files of most
    nodes) needs no decoding at all.
    """
    if text is None:
        return None
    if text == "{}":
        return {}
    try:
        value, end = _JSON_DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, ``\\`` escapes) as an SQLite GLOB pattern, which is case-sensitive."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            char = pattern[index + 1]
            out.append(f"[{char}]" if char in "*?[" else char)
            index += 2
            continue
        out.append("*" if char == "%" else "?" if char == "_" else f"[{char}]" if char in "*?[" else char)
        index += 1
    return "".join(out)


def _fields(condition: Condition) -> Iterator[FieldRef]:
    if isinstance(condition, Comparison):
        yield condition.field
    else:
        for part in condition.parts:
            yield from _fields(part)


class _WalkJoin(Join):
    """The join of a walk (a recursive CTE) to the vertices before it; on SQLite a ``CROSS JOIN``.

    SQLite keeps the left side of a ``CROSS JOIN`` in an outer loop, so the anchor's rows are
    read first and the walk is joined to them.  Left to choose, with the statistics of an
    ``ANALYZE`` it put the walk outside and built a Bloom filter over the anchor's nodes: 2.5 ms
    for six descendants of one node, of which the walk itself took 0.04 ms.  Other databases
    get a plain ``JOIN``.
    """

    inherit_cache = True


@compiles(_WalkJoin, "sqlite")
def _walk_join_sqlite(join: _WalkJoin, compiler: SQLCompiler, **kw: Any) -> str:
    kw.pop("asfrom", None)
    linter = kw.get("from_linter")
    if linter is not None:  # the pairs this join connects, for SQLAlchemy's cartesian-product check
        linter.edges.update((a, b) for a in join.left._from_objects for b in join.right._from_objects)
    left = compiler.process(join.left, asfrom=True, **kw)
    right = compiler.process(join.right, asfrom=True, **kw)
    assert join.onclause is not None
    return f"{left} CROSS JOIN {right} ON {compiler.process(join.onclause, **kw)}"


def _plain_path(path: Sequence[str | int]) -> bool:
    """Whether every key of a JSON path is a plain name (ASCII letters, digits, ``_``) or an index.

    Such a path is written into the SQL text (quoted by SQLAlchemy) rather than bound: a
    database uses an index on an expression (``ix_nodes_attributes_value``, see
    :class:`plait.storage.schema.AttributeValue`) only for a query holding the very same
    expression, and a bound parameter is not the same to it.  A plain name cannot carry
    anything but itself into the SQL; every other key is bound.
    """
    return all(
        isinstance(item, int) or (item.isascii() and item.isidentifier() and len(item) <= 64) for item in path
    )


class _Json:
    """Typed access to the value at ``path`` inside the JSON column ``column``, for one dialect."""

    def __init__(self, column: ColumnElement[Any], path: Sequence[str | int], sqlite: bool) -> None:
        self.column = column
        self.path = tuple(path)
        self.sqlite = sqlite
        if sqlite:
            text = "$" + "".join(f"[{item}]" if isinstance(item, int) else f'."{item}"' for item in self.path)
            self.path_text = bindparam(None, text, type_=String, literal_execute=_plain_path(self.path))
            self.kind = func.coalesce(func.json_type(column, self.path_text), literal("missing", String))
        else:
            parent: ColumnElement[Any] = type_coerce(column, JSONB)
            node = parent
            for item in self.path:
                parent = node
                node = node.op("->", return_type=JSONB)(self._key(item))
            self.node = node
            self.text: ColumnElement[Any] = (
                parent.op("->>", return_type=Text)(self._key(self.path[-1]))
                if self.path
                else cast(node, Text)
            )
            self.kind = func.coalesce(func.jsonb_typeof(node), literal("missing", String))

    @staticmethod
    def _key(item: str | int) -> Any:
        kind = Integer if isinstance(item, int) else String
        return bindparam(None, item, type_=kind, literal_execute=_plain_path((item,)))

    def is_type(self, *kinds: str) -> ColumnElement[bool]:
        if self.sqlite:
            names = [name for kind in kinds for name in _SQLITE_TYPES[kind]]
        else:
            names = list(kinds)
        return self.kind == names[0] if len(names) == 1 else self.kind.in_(names)

    def extract(self) -> ColumnElement[Any]:
        """SQLite: the SQL value (number, text; objects and arrays as JSON text)."""
        return func.json_extract(self.column, self.path_text)

    def number(self) -> ColumnElement[Any]:
        return self.extract() if self.sqlite else cast(self.text, Numeric)

    def string(self, collated: bool = False) -> ColumnElement[Any]:
        if self.sqlite:
            return self.extract()
        return self.text.collate("C") if collated else self.text

    def boolean(self) -> ColumnElement[bool]:
        if self.sqlite:
            return type_coerce(self.kind == "true", Boolean)
        return self.node == bindparam(None, True, type_=JSONB)

    def length(self) -> ColumnElement[Any]:
        if self.sqlite:
            return func.json_array_length(self.column, self.path_text)
        return func.jsonb_array_length(self.node)

    def each(self) -> Any:
        """SQLite: the members of the object or array, as a table (key, value, type)."""
        return func.json_each(self.column, self.path_text).table_valued("key", "value", "type")

    def child(self, item: str | int) -> _Json:
        return _Json(self.column, (*self.path, item), self.sqlite)


class _Sql:
    """The SQL of conditions, projections and orderings for one dialect."""

    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite

    # -- conditions -------------------------------------------------------------------------------
    def condition(
        self,
        condition: Condition,
        column: Callable[[FieldRef], ColumnElement[Any]],
        negated_above: bool = False,
    ) -> ColumnElement[bool]:
        """The SQL of ``condition``.

        Under a negation it is never NULL, so that the negation is the exact complement: a
        comparison on a nullable column is guarded by ``IS NOT NULL`` there (and only there,
        where it changes the answer, so that plain filters stay plain for the planner).
        """
        negated = negated_above or condition.negated
        if isinstance(condition, Junction):
            parts = [self.condition(part, column, negated) for part in condition.parts]
            expression = and_(*parts) if condition.kind == "and" else or_(*parts)
        elif condition.field.is_json:
            json_value = _Json(column(condition.field), condition.field.path, self.sqlite)
            expression = self.json_comparison(json_value, condition.operator, condition.value)
        else:
            expression = self.column_comparison(condition, column(condition.field), guard=negated)
        return not_(expression) if condition.negated else expression

    def like(self, expression: ColumnElement[Any], pattern: str, insensitive: bool) -> ColumnElement[bool]:
        if not self.sqlite:
            return expression.ilike(pattern) if insensitive else expression.like(pattern)
        if insensitive:  # SQLite's LIKE folds ASCII letters, which is what ILIKE means here
            return expression.like(pattern, escape="\\")
        return expression.op("GLOB", return_type=Boolean)(_glob(pattern))

    def _long_in(self, expression: ColumnElement[Any], values: list[Any], kind: str) -> ColumnElement[bool]:
        if self.sqlite:
            members = func.json_each(bindparam(None, json.dumps(values), type_=String)).table_valued("value")
            return expression.in_(select(members.c.value))
        array: ARRAY[Any] = ARRAY(BigInteger) if kind == INT else ARRAY(Text)
        return expression == any_(bindparam(None, values, type_=array))

    def column_comparison(
        self, comparison: Comparison, column: ColumnElement[Any], guard: bool = True
    ) -> ColumnElement[bool]:
        operator, value, kind = comparison.operator, comparison.value, comparison.field.column.kind
        if operator == "==" and value is None:
            return column.is_(None)
        expression: ColumnElement[bool]
        if operator == "==":
            expression = column == value
        elif operator in (">", "<", ">=", "<="):
            left = column.collate("C") if kind == TEXT and not self.sqlite else column
            expression = {
                ">": left > value,
                "<": left < value,
                ">=": left >= value,
                "<=": left <= value,
            }[operator]
        elif operator == "in":
            if not value:
                return false()
            if len(value) > _LONG_IN and kind in (INT, TEXT):
                expression = self._long_in(column, list(value), kind)
            else:
                expression = column.in_(list(value))
        elif operator in ("like", "ilike"):
            expression = self.like(column, value, operator == "ilike")
        else:  # pragma: no cover - query_filters refuses the other operators on columns
            raise AssertionError(operator)
        if guard and comparison.field.column.nullable:
            expression = and_(column.is_not(None), expression)
        elif self.sqlite and not guard and _rare_states(comparison):
            # Terminated processes pile up and the active ones are a handful at any time, which
            # SQLite's statistics (one average per index, no histogram) cannot tell: after an
            # ANALYZE it would scan every process row rather than use the state index.
            expression = func.likelihood(expression, literal_column("0.001"))
        return expression

    def _typed(
        self, condition: ColumnElement[bool], comparison: ColumnElement[bool], can_fail: bool = False
    ) -> ColumnElement[bool]:
        """``comparison`` where the type ``condition`` holds, else false.

        A plain AND, which the planner can estimate and reorder; a CASE only on PostgreSQL for a
        ``comparison`` that would fail on a value of another type (``jsonb_array_length`` of an
        object), since SQL does not promise to test the type first in an AND.
        """
        if can_fail and not self.sqlite:
            return case((condition, comparison), else_=false())
        return and_(condition, comparison)

    def json_equal(self, value_at: _Json, value: Any) -> ColumnElement[bool]:
        """``value_at`` is exactly ``value`` (a nested null is a null, not a missing key)."""
        if value is None:
            return value_at.is_type("null")
        if not self.sqlite:
            return and_(
                value_at.is_type(_json_kind(value)), value_at.node == bindparam(None, value, type_=JSONB)
            )
        if isinstance(value, bool):
            return value_at.kind == ("true" if value else "false")
        if isinstance(value, (int, float)):
            return self._typed(value_at.is_type("number"), value_at.extract() == value)
        if isinstance(value, str):
            return self._typed(value_at.is_type("string"), value_at.extract() == value)
        if isinstance(value, list):
            parts = [value_at.is_type("array"), value_at.length() == len(value)]
            parts += [self.json_equal(value_at.child(index), item) for index, item in enumerate(value)]
            return and_(*parts)
        keys = select(func.count()).select_from(value_at.each()).scalar_subquery()
        parts = [value_at.is_type("object"), keys == len(value)]
        parts += [self.json_equal(value_at.child(key), item) for key, item in value.items()]
        return and_(*parts)

    def _member_equal(self, member: Any, value: Any) -> ColumnElement[bool]:
        """SQLite: a row of ``json_each`` is the plain value ``value``."""
        if value is None:
            return member.c.type == "null"
        if isinstance(value, bool):
            return member.c.type == ("true" if value else "false")
        if isinstance(value, str):
            return and_(member.c.type == "text", member.c.value == value)
        return and_(member.c.type.in_(["integer", "real"]), member.c.value == value)

    def json_comparison(self, at: _Json, operator: str, value: Any) -> ColumnElement[bool]:
        if operator == "==":
            return at.is_type("null", "missing") if value is None else self.json_equal(at, value)
        if operator in (">", "<", ">=", "<="):
            numeric = not isinstance(value, str)
            left = at.string(collated=True)
            right: Any = value
            if numeric:  # PostgreSQL compares jsonb numbers as numbers, with no cast that could fail
                left, right = (
                    (at.extract(), value) if self.sqlite else (at.node, bindparam(None, value, type_=JSONB))
                )
            compared = {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[
                operator
            ]
            return self._typed(at.is_type("number" if numeric else "string"), compared)
        if operator == "in":
            if not value:
                return false()
            first = value[0]
            if isinstance(first, bool):
                return or_(*[self.json_equal(at, item) for item in dict.fromkeys(value)])
            if isinstance(first, str):
                return self._typed(at.is_type("string"), at.string().in_(value))
            if self.sqlite:
                return self._typed(at.is_type("number"), at.extract().in_(value))
            numbers = [bindparam(None, item, type_=JSONB) for item in value]
            return self._typed(at.is_type("number"), at.node.in_(numbers))
        if operator in ("like", "ilike"):
            return self._typed(at.is_type("string"), self.like(at.string(), value, operator == "ilike"))
        if operator == "contains":
            if not self.sqlite:
                wanted = bindparam(None, value, type_=JSONB)
                return and_(at.is_type("array"), at.node.op("@>", return_type=Boolean)(wanted))
            parts = [at.is_type("array")]
            for item in dict.fromkeys(json.dumps(v) for v in value):
                member = at.each()
                parts.append(
                    exists(
                        select(literal(1))
                        .select_from(member)
                        .where(self._member_equal(member, json.loads(item)))
                    )
                )
            return and_(*parts)
        if operator == "has_key":
            if not self.sqlite:
                key = bindparam(None, value, type_=Text)
                return self._typed(at.is_type("object", "array"), at.node.op("?", return_type=Boolean)(key))
            in_object = at.each()
            in_array = at.each()
            return or_(
                and_(
                    at.is_type("object"),
                    exists(select(literal(1)).select_from(in_object).where(in_object.c.key == value)),
                ),
                and_(
                    at.is_type("array"),
                    exists(
                        select(literal(1))
                        .select_from(in_array)
                        .where(in_array.c.type == "text", in_array.c.value == value)
                    ),
                ),
            )
        if operator in ("of_length", "longer", "shorter"):
            length = at.length()
            compared = {"of_length": length == value, "longer": length > value, "shorter": length < value}[
                operator
            ]
            return self._typed(at.is_type("array"), compared, can_fail=True)
        assert operator == "of_type"
        return at.is_type("null", "missing") if value == "null" else at.is_type(value)

    # -- values -----------------------------------------------------------------------------------
    def json_cast(self, at: _Json, cast_to: str) -> ColumnElement[Any]:
        """The value read as ``f`` (float), ``i`` (int), ``t`` (text), ``b`` (bool); NULL for other types."""
        if cast_to == "t":
            return case((at.is_type("string"), at.string(collated=True)), else_=None)
        if cast_to == "b":
            return case((at.is_type("boolean"), at.boolean()), else_=None)
        if cast_to == "f":
            number = cast(at.extract(), Float) if self.sqlite else cast(at.number(), Float)
        else:
            number = (
                cast(at.extract(), BigInteger) if self.sqlite else cast(func.trunc(at.number()), BigInteger)
            )
        return case((at.is_type("number"), number), else_=None)

    def json_order(self, at: _Json) -> list[ColumnElement[Any]]:
        """Order keys of a JSON value: its type (numbers, strings, booleans, arrays, objects, null or
        missing), then its value within numbers, strings and booleans."""
        rank = case(
            (at.is_type("number"), 0),
            (at.is_type("string"), 1),
            (at.is_type("boolean"), 2),
            (at.is_type("array"), 3),
            (at.is_type("object"), 4),
            else_=5,
        )
        return [
            rank,
            case((at.is_type("number"), at.number()), else_=None),
            case((at.is_type("string"), at.string(collated=True)), else_=None),
            case((at.is_type("boolean"), at.boolean()), else_=None),
        ]


class CompiledQuery:
    """The statement of one query for one profile's database, and how its rows become results."""

    def __init__(self, spec: QuerySpec, backend: StorageBackend) -> None:
        self.spec = spec
        self.backend = backend
        self.sqlite = backend.database.is_sqlite
        self.sql_of = _Sql(self.sqlite)
        self.tables: dict[str, Any] = {}
        self.process_tables: dict[str, Any] = {}
        self.inner_processes: dict[str, bool] = {}
        self.edge_tables: dict[str, Any] = {}
        #: the vertices read from ``processes`` alone (see :meth:`_reads_processes_alone`)
        self.process_sources: set[str] = set()
        self.vertices = {vertex.tag: vertex for vertex in spec.path}
        from_clause = self._from_clause()
        self.where = [expression for expression in self._conditions() if expression is not None]
        self.from_clause = from_clause
        self.columns: list[ColumnElement[Any]] = []
        self.keys: list[tuple[str, str]] = []
        expressions: list[str] = []
        for tag, projection in spec.projections:
            self.keys.append((tag, projection.text))
            expressions.append(self._projection(tag, projection))
        self._decode = _row_decoder(tuple(expressions))
        self._plain: bool | None = None
        self.order_keys: list[ColumnElement[Any]] = []
        self.order = [clause for item in spec.order for clause in self._order(item)]

    # -- building -----------------------------------------------------------------------------------
    def _fields_of(self, tag: str) -> list[FieldRef]:
        """The fields the filters, projections and order of the vertex or edge ``tag`` read."""
        fields = [field for condition in self.spec.filters.get(tag, ()) for field in _fields(condition)]
        fields += [p.field for t, p in self.spec.projections if t == tag and p.field is not None]
        fields += [item.field for item in self.spec.order if item.tag == tag]
        return fields

    def _uses(self, tag: str, table: str) -> bool:
        return any(field.column.table == table for field in self._fields_of(tag))

    def _projects_star(self, tag: str) -> bool:
        return any(t == tag and p.field is None for t, p in self.spec.projections)

    def _vertex_table(self, vertex: Vertex, index: int) -> FromClause:
        if self._reads_processes_alone(vertex):
            process = _alias(processes, f"p{index}")
            self.tables[vertex.tag] = self.process_tables[vertex.tag] = process
            self.inner_processes[vertex.tag] = True
            self.process_sources.add(vertex.tag)
            return process
        table = nodes if vertex.entity == "node" else groups
        alias = _alias(table, f"v{index}")
        self.tables[vertex.tag] = alias
        return alias

    def _reads_processes_alone(self, vertex: Vertex) -> bool:
        """Whether ``vertex`` is read from ``processes`` without its nodes.

        So when the query has this one vertex, only process nodes pass (the inner join of
        :meth:`_process_join`), and nothing but the node's pk, type and creation time (which the
        process row repeats: ``node_id``, ``node_type``, ``ctime``) and process columns is
        filtered, projected or ordered on: a count of finished calculations by label and exit
        status then reads one index, a list of the processes of the last day another.  In a
        longer path a vertex is reached through a link, by its pk, and its node row costs one
        probe; read alone, its narrow covering index made SQLite start from it even where
        another vertex's filter was far more selective (4x slower).
        """
        if len(self.spec.path) != 1 or vertex.entity != "node" or self._projects_star(vertex.tag):
            return False
        fields = self._fields_of(vertex.tag)
        if vertex.type_condition is not None:
            fields += list(_fields(vertex.type_condition))
        if any(f.column.table == "node" and f.column.column not in _NODE_COLUMNS_OF_PROCESS for f in fields):
            return False
        return self._process_join(vertex, any(f.column.table == "process" for f in fields)) == "inner"

    def _id(self, tag: str) -> ColumnElement[Any]:
        """The pk of the vertex ``tag``'s rows (the node's, or the group's)."""
        table = self.tables[tag]
        return table.c.node_id if tag in self.process_sources else table.c.id

    def _process_join(self, vertex: Vertex, uses_processes: bool) -> str | None:
        """How ``vertex`` joins ``processes``: ``inner``, ``outer`` or not at all (None).

        Inner when every node of the vertex is a process node, or when its filters keep only
        nodes that have a process row (a plain condition on a process field): then the database
        may start from ``processes`` and its indexes.  Outer otherwise, so that data nodes stay.
        """
        if vertex.entity != "node":
            return None
        if vertex.processes_only:
            return "inner"
        if not uses_processes:
            return None
        if any(_needs_process_row(condition) for condition in self.spec.filters.get(vertex.tag, ())):
            return "inner"
        return "outer"

    def _with_processes(self, from_clause: Any, vertex: Vertex, index: int) -> Any:
        if vertex.tag in self.process_sources:
            return from_clause
        uses = self._uses(vertex.tag, "process") or (
            vertex.may_hold_processes and self._projects_star(vertex.tag)
        )
        how = self._process_join(vertex, uses)
        if how is None:
            return from_clause
        process = _alias(processes, f"p{index}")
        self.process_tables[vertex.tag] = process
        self.inner_processes[vertex.tag] = how == "inner"
        return from_clause.join(
            process, process.c.node_id == self.tables[vertex.tag].c.id, isouter=how == "outer"
        )

    def _from_clause(self) -> Any:
        first = self.spec.path[0]
        from_clause: Any = self._vertex_table(first, 0)
        from_clause = self._with_processes(from_clause, first, 0)
        for index, vertex in enumerate(self.spec.path[1:], start=1):
            assert vertex.target is not None and vertex.edge_tag is not None
            target_id = self._id(vertex.target)
            table = self._vertex_table(vertex, index)
            relationship = vertex.relationship
            if relationship in ("with_incoming", "with_outgoing"):
                edge = _alias(links, f"e{index}")
                near, far = (
                    (edge.c.input_id, edge.c.output_id)
                    if relationship == "with_incoming"
                    else (edge.c.output_id, edge.c.input_id)
                )
                from_clause = from_clause.join(edge, near == target_id)
                from_clause = from_clause.join(table, self._id(vertex.tag) == far)
            elif relationship in ("with_group", "with_node"):
                edge = _alias(group_nodes, f"e{index}")
                near, far = (
                    (edge.c.group_id, edge.c.node_id)
                    if relationship == "with_group"
                    else (edge.c.node_id, edge.c.group_id)
                )
                from_clause = from_clause.join(edge, near == target_id)
                from_clause = from_clause.join(table, self._id(vertex.tag) == far)
            else:
                edge = self._walk(vertex, index)
                near, far = (
                    (edge.c.ancestor_id, edge.c.descendant_id)
                    if relationship == "with_ancestors"
                    else (edge.c.descendant_id, edge.c.ancestor_id)
                )
                walk_join = _WalkJoin(from_clause, edge, near == target_id)
                from_clause = walk_join.join(table, self._id(vertex.tag) == far)
            self.edge_tables[vertex.edge_tag] = edge
            from_clause = self._with_processes(from_clause, vertex, index)
        return from_clause

    def _anchor_ids(self, anchor: Vertex, index: int) -> Select[Any] | None:
        """The ids of the nodes that pass ``anchor``'s own filters (where a walk starts), or None for all."""
        conditions = [
            c for c in (anchor.type_condition, *self.spec.filters.get(anchor.tag, ())) if c is not None
        ]
        if not conditions and not anchor.processes_only:
            return None
        table = _alias(nodes, f"w{index}_anchor")
        from_clause: Any = table
        process = None
        uses = any(
            field.column.table == "process" for condition in conditions for field in _fields(condition)
        )
        how = self._process_join(anchor, uses)
        if how is not None:
            process = _alias(processes, f"w{index}_anchor_process")
            from_clause = table.join(process, process.c.node_id == table.c.id, isouter=how == "outer")

        def column(field: FieldRef) -> ColumnElement[Any]:
            source = process if field.column.table == "process" else table
            assert source is not None
            return source.c[field.column.column]

        where = [self.sql_of.condition(condition, column) for condition in conditions]
        return select(table.c.id).select_from(from_clause).where(*where)

    def _depth_bound(self, edge_tag: str) -> int | None:
        """The largest depth the edge filters allow (from top-level ``<``, ``<=``, ``==``), if any."""
        bounds: list[int] = []
        stack = list(self.spec.filters.get(edge_tag, ()))
        while stack:
            condition = stack.pop()
            if isinstance(condition, Junction):
                if condition.kind == "and" and not condition.negated:
                    stack.extend(condition.parts)
                continue
            if condition.negated or condition.field.column.name != "depth":
                continue
            if condition.operator in ("<=", "=="):
                bounds.append(condition.value)
            elif condition.operator == "<":
                bounds.append(condition.value - 1)
        return min(bounds) if bounds else None

    def _walk(self, vertex: Vertex, index: int) -> Any:
        assert vertex.target is not None and vertex.edge_tag is not None
        downward = vertex.relationship == "with_ancestors"  # the new vertex is a descendant of the target
        with_depth = any(field.column.name == "depth" for field in self._fields_of(vertex.edge_tag))
        first = _alias(links, f"w{index}_first")
        start, end = (
            (first.c.input_id, first.c.output_id) if downward else (first.c.output_id, first.c.input_id)
        )
        base_columns = [
            (start if downward else end).label("ancestor_id"),
            (end if downward else start).label("descendant_id"),
        ]
        if with_depth:
            base_columns.append(literal(0, Integer).label("depth"))
        base = select(*base_columns).where(first.c.link_type.in_(FOLLOWED_LINK_TYPES))
        anchors = self._anchor_ids(self.vertices[vertex.target], index)
        if anchors is not None:
            base = base.where(start.in_(anchors))
        walk = base.cte(f"walk_{index}", recursive=True)
        step_link = _alias(links, f"w{index}_step")
        if downward:
            columns = [walk.c.ancestor_id, step_link.c.output_id]
            near, frontier = step_link.c.input_id, walk.c.descendant_id
        else:
            columns = [step_link.c.input_id, walk.c.descendant_id]
            near, frontier = step_link.c.output_id, walk.c.ancestor_id
        on = near == frontier
        if self.sqlite:
            # the same join, written as a lookup of the link ids: with ANALYZE statistics SQLite
            # otherwise builds a Bloom filter over the whole links index at every step of the walk
            lookup = _alias(links, f"w{index}_lookup")
            side = lookup.c.input_id if downward else lookup.c.output_id
            on = step_link.c.id.in_(select(lookup.c.id).where(side == frontier))
        joined = walk.join(step_link, on)
        step = select(*columns, *([walk.c.depth + 1] if with_depth else [])).select_from(joined)
        step = step.where(step_link.c.link_type.in_(FOLLOWED_LINK_TYPES))
        bound = self._depth_bound(vertex.edge_tag) if with_depth else None
        if bound is not None:
            step = step.where(walk.c.depth < bound)
        walk = walk.union(step)
        if not with_depth:
            return walk
        return (
            select(walk.c.ancestor_id, walk.c.descendant_id, func.min(walk.c.depth).label("depth"))
            .group_by(walk.c.ancestor_id, walk.c.descendant_id)
            .subquery(f"pairs_{index}")
        )

    def _column(self, tag: str, field: FieldRef) -> ColumnElement[Any]:
        table = field.column.table
        if table in ("link", "membership", "walk"):
            return self.edge_tables[tag].c[field.column.column]
        if table == "node" and tag in self.process_sources:
            return self.tables[tag].c[_NODE_COLUMNS_OF_PROCESS[field.column.column]]
        source = self.process_tables[tag] if table == "process" else self.tables[tag]
        return source.c[field.column.column]

    def _resolver(self, tag: str) -> Callable[[FieldRef], ColumnElement[Any]]:
        return lambda field: self._column(tag, field)

    def _conditions(self) -> Iterator[ColumnElement[bool] | None]:
        for vertex in self.spec.path:
            if vertex.type_condition is not None:
                yield self.sql_of.condition(vertex.type_condition, self._resolver(vertex.tag))
        for tag, conditions in self.spec.filters.items():
            for condition in conditions:
                yield self.sql_of.condition(condition, self._resolver(tag))

    # -- projections and order ------------------------------------------------------------------------
    def _add(self, expression: ColumnElement[Any]) -> int:
        self.columns.append(expression.label(f"c{len(self.columns)}"))
        return len(self.columns) - 1

    def _projection(self, tag: str, projection: Projection) -> str:
        """Add the columns of one projection; return the Python expression that decodes them from
        a row ``r`` (see :func:`_row_decoder`): a plain column is ``r[i]`` as it comes."""
        if projection.field is None:
            return self._star(tag)
        field = projection.field
        column = self._column(tag, field)
        if field.is_json and field.path:
            at = _Json(column, field.path, self.sqlite)
            if projection.cast is not None:
                return f"r[{self._add(self.sql_of.json_cast(at, projection.cast))}]"
            if not self.sqlite:
                return f"r[{self._add(at.node)}]"
            kind = self._add(func.json_type(column, at.path_text))
            value = self._add(at.extract())
            # json_extract's value is the answer for numbers, text, null and a missing key
            return f"(r[{value}] if r[{kind}] in _PLAIN_JSON else _sqlite_json(r[{kind}], r[{value}]))"
        if field.column.kind == DATETIME:
            if self.sqlite:
                return f"_utc_text(r[{self._add(type_coerce(column, String))}])"
            return f"_utc(r[{self._add(column)}])"
        return f"r[{self._add(column)}]"

    def _row_column(self, alias: Any, table: Table, name: str) -> ColumnElement[Any]:
        """Column ``name`` of a whole row read for ``project='*'``: datetimes and JSON as text on
        SQLite (decoded by :func:`_utc_text` and :func:`_json_text`, see there)."""
        column: ColumnElement[Any] = alias.c[name]
        if self.sqlite and (name in _DATETIME_NAMES[table.name] or name in _JSON_NAMES[table.name]):
            return type_coerce(column, String)
        return column

    def _star(self, tag: str) -> str:
        vertex = self.vertices[tag]
        table = self.tables[tag]
        utc, loads = ("_utc_text", "_json_text") if self.sqlite else ("_utc", "None")
        first = len(self.columns)
        if vertex.entity == "group":
            for name in _GROUP_COLUMNS:
                self._add(self._row_column(table, groups, name))
            return f"_group_from_row(r, {first}, {utc}, {loads})"
        for name in _NODE_COLUMNS:
            self._add(self._row_column(table, nodes, name))
        process = self.process_tables.get(tag)
        process_first = len(self.columns)
        if process is None:
            return f"_node_from_row(r, {first}, None, {utc}, {loads})"
        for name in _PROCESS_COLUMNS:
            self._add(self._row_column(process, processes, name))
        return f"_node_from_row(r, {first}, {process_first}, {utc}, {loads})"

    def _order(self, item: OrderItem) -> list[Any]:
        column = self._column(item.tag, item.field)
        if (
            item.field.column.table == "node"
            and item.field.column.name == "id"
            and self.inner_processes.get(item.tag)
        ):
            # the same value; SQLite then reads processes in key order and stops at the LIMIT,
            # where ordering by the node's id made it sort every process first
            column = self.process_tables[item.tag].c.node_id
        if item.field.is_json:
            at = _Json(column, item.field.path, self.sqlite)
            keys = [self.sql_of.json_cast(at, item.cast)] if item.cast else self.sql_of.json_order(at)
            nullable = item.cast is not None
        else:
            keys = [column.collate("C") if item.field.column.kind == TEXT and not self.sqlite else column]
            nullable = item.field.column.nullable
        ordered = []
        self.order_keys.extend(keys)
        for key in keys:
            clause = key.desc() if item.descending else key.asc()
            if nullable:
                clause = clause.nulls_first() if item.descending else clause.nulls_last()
            ordered.append(clause)
        return ordered

    # -- statements -----------------------------------------------------------------------------------
    def statement(self) -> Select[Any]:
        columns = list(self.columns)
        if self.spec.distinct:  # an ORDER BY of a DISTINCT query must read projected columns
            columns += [key.label(f"o{index}") for index, key in enumerate(self.order_keys)]
        query = select(*columns).select_from(self.from_clause).where(*self.where)
        if self.spec.distinct:
            query = query.distinct()
        if self.order:
            query = query.order_by(*self.order)
        if self.spec.limit is not None:
            query = query.limit(self.spec.limit)
        if self.spec.offset:
            query = query.offset(self.spec.offset)
        return query

    def count_statement(self) -> Select[Any]:
        spec = self.spec
        if not spec.distinct and spec.limit is None and not spec.offset:
            return select(func.count()).select_from(self.from_clause).where(*self.where)
        inner = select(*(self.columns if spec.distinct else [literal(1).label("one")]))
        inner = inner.select_from(self.from_clause).where(*self.where)
        if spec.distinct:
            inner = inner.distinct()
        if spec.limit is not None or spec.offset:
            inner = inner.order_by(*self.order)
            if spec.limit is not None:
                inner = inner.limit(spec.limit)
            if spec.offset:
                inner = inner.offset(spec.offset)
        return select(func.count()).select_from(inner.subquery("counted"))

    def sql(self) -> str:
        dialect = self.backend.database.engine.dialect
        return str(self.statement().compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The current transaction's connection (its writes are seen), else a read-only one."""
        if self.backend.in_transaction:
            with self.backend.transaction() as conn:
                yield conn
        else:
            with self.backend.database.read() as conn:
                yield conn

    # -- results --------------------------------------------------------------------------------------
    def fetch(self, batch_size: int | None) -> list[list[Any]]:
        """Every row, decoded."""
        if batch_size:
            return list(self.iterate(batch_size))
        with self._connection() as conn:
            result = conn.execute(self.statement())
            if self._plain_rows(conn):
                # every column comes from the driver as the value wanted: the driver's tuples are
                # the rows, without a SQLAlchemy Row made for each (about 1 us a row)
                rows: Sequence[Any] = result.cursor.fetchall()
                result.close()
            else:
                rows = result.all()
        return self._decode(rows)

    def _plain_rows(self, conn: Connection) -> bool:
        """Whether no column of the statement has a SQLAlchemy result processor for this dialect
        (so the driver's values are SQLAlchemy's); an unknown answer counts as no."""
        if self._plain is None:
            dialect = conn.dialect
            try:
                self._plain = all(
                    column.type.dialect_impl(dialect).result_processor(dialect, None) is None
                    for column in self.columns
                )
            except Exception:  # a type that needs the driver's column type to answer
                self._plain = False
        return self._plain

    def iterate(self, batch_size: int | None) -> Iterator[list[Any]]:
        """The rows, decoded a batch at a time (a server-side cursor on PostgreSQL)."""
        if not batch_size:
            yield from self.fetch(None)
            return
        with self._connection() as conn:
            result = conn.execute(self.statement(), execution_options={"yield_per": batch_size})
            for partition in result.partitions():
                yield from self._decode(partition)

    def count(self) -> int:
        with self._connection() as conn:
            return int(conn.execute(self.count_statement()).scalar_one())

    def as_dict(self, row: list[Any]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for (tag, text), value in zip(self.keys, row, strict=True):
            result.setdefault(tag, {})[text] = value
        return result


def _rare_states(comparison: Comparison) -> bool:
    """Whether ``comparison`` keeps processes in states other than finished (few, in any database)."""
    if comparison.field.column.name != "process_state" or comparison.operator not in ("==", "in"):
        return False
    states = comparison.value if comparison.operator == "in" else [comparison.value]
    return bool(states) and None not in states and "finished" not in states


def _needs_process_row(condition: Condition) -> bool:
    """Whether only a node with a process row can pass ``condition`` (a plain, non-NULL comparison
    on a process field, alone or in an AND)."""
    if condition.negated:
        return False
    if isinstance(condition, Junction):
        return condition.kind == "and" and any(_needs_process_row(part) for part in condition.parts)
    if condition.field.column.table != "process":
        return False
    return not (condition.operator == "==" and condition.value is None)


def _json_kind(value: Any) -> str:
    """The JSON type (PostgreSQL's name) of a plain JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "number"


def _sqlite_json(kind: str | None, value: Any) -> Any:
    """A JSON value from SQLite's ``json_type`` and ``json_extract`` of it."""
    if kind in ("object", "array"):
        return _json_text(value)
    if kind == "true":
        return True
    if kind == "false":
        return False
    return value  # integer, real, text; None for null and for a missing key


#: SQLite json_type names whose json_extract value is the Python value (None: a missing key)
_PLAIN_JSON = frozenset({"integer", "real", "text", "null", None})
_NODE_COUNT = len(_NODE_COLUMNS)
_PROCESS_COUNT = len(_PROCESS_COLUMNS)
_GROUP_COUNT = len(_GROUP_COLUMNS)


def _node_from_row(
    row: Row[Any],
    first: int,
    process_first: int | None,
    utc: Callable[[Any], Any],
    loads: Callable[[Any], Any] | None,
) -> Any:
    """The node whose columns start at ``row[first]`` (its process row's at ``row[process_first]``);
    ``utc`` reads a datetime column, ``loads`` a JSON column (None: the driver has decoded it)."""
    data = dict(zip(_NODE_COLUMNS, row[first : first + _NODE_COUNT], strict=True))
    data["ctime"], data["mtime"] = utc(data["ctime"]), utc(data["mtime"])
    if loads is not None:
        data["attributes"] = loads(data["attributes"])
        data["extras"] = loads(data["extras"])
        data["files"] = loads(data["files"])
    if process_first is not None:
        values = row[process_first : process_first + _PROCESS_COUNT]
        if values[0] is None:
            data["process"] = None
        else:
            process_row = dict(zip(_PROCESS_COLUMNS, values, strict=True))
            process_row["mtime"], process_row["ctime"] = utc(process_row["mtime"]), utc(process_row["ctime"])
            if loads is not None:
                process_row["checkpoint"] = loads(process_row["checkpoint"])
            data["process"] = process_row
    return node_from_row(data)


def _group_from_row(
    row: Row[Any], first: int, utc: Callable[[Any], Any], loads: Callable[[Any], Any] | None
) -> Any:
    from plait.orm.groups import Group

    data = dict(zip(_GROUP_COLUMNS, row[first : first + _GROUP_COUNT], strict=True))
    data["ctime"] = utc(data["ctime"])
    if loads is not None:
        data["extras"] = loads(data["extras"])
    return Group._from_row(data)


_DECODER_NAMES = {
    "_PLAIN_JSON": _PLAIN_JSON,
    "_sqlite_json": _sqlite_json,
    "_utc": _utc,
    "_utc_text": _utc_text,
    "_json_text": _json_text,
    "_node_from_row": _node_from_row,
    "_group_from_row": _group_from_row,
}


@functools.lru_cache(maxsize=256)
def _row_decoder(expressions: tuple[str, ...]) -> Callable[[Sequence[Row[Any]]], list[list[Any]]]:
    """A function that turns database rows into result rows: one list comprehension.

    Each of ``expressions`` decodes one projection from the row ``r`` (``r[3]``, ``_utc(r[1])``,
    ``_node_from_row(r, 0, 13, _utc)``), as :meth:`CompiledQuery._projection` wrote it from
    the query's own columns (never from a value of the query), so the source is one of a few
    shapes and compiled once per shape.  Written out as one comprehension, a plain column costs
    an index into the row; a function per projection called for every row was most of the
    Python time of a ``process list`` of thousands of rows.
    """
    source = f"def decode(rows):\n    return [[{', '.join(expressions)}] for r in rows]\n"
    namespace: dict[str, Any] = dict(_DECODER_NAMES)
    exec(compile(source, "<plait.orm.query_sql row decoder>", "exec"), namespace)
    decode: Callable[[Sequence[Row[Any]]], list[list[Any]]] = namespace["decode"]
    return decode
