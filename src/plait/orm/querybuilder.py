"""``QueryBuilder``: questions asked of the provenance graph, in aiida-core's shape.

A query is a *path* of vertices (nodes or groups) joined by relationships (links, group
membership, ancestry), each vertex with its filters and projections::

    from plait.orm import CalcFunctionNode, Int, QueryBuilder

    qb = QueryBuilder()
    qb.append(Int, tag="x", filters={"attributes.value": {">": 3}})
    qb.append(CalcFunctionNode, with_incoming="x", tag="calc",
              filters={"process_state": "finished", "exit_status": 0},
              edge_filters={"label": "x"}, project=["id", "process_label"])
    qb.append(Int, with_incoming="calc", project="attributes.value")
    qb.order_by({"calc": {"id": "desc"}}).limit(10)
    rows = qb.all()          # [[calc pk, label, output value], ...]

Scripts written for aiida-core's ``QueryBuilder`` port with an import change; the differences
are listed in ``docs/queries.md``.  The filter language (operators, fields, JSON paths) is
described in :mod:`plait.orm.query_filters`.

The contract:

* Building a query (``append``, ``add_filter``, ``add_projection``, ``order_by``, ``limit``...)
  checks everything in Python and raises :class:`~plait.orm.errors.InvalidQueryError` naming the
  problem (an unknown tag, field or operator, a relationship to a tag not appended yet, a class
  that is not a node class nor ``Group``, a value of the wrong type); no database is touched
  before a result is asked for, and a failed call leaves the query as it was.
* Asking for results (``all``, ``first``, ``one``, ``count``, ``iterall``, ``iterdict``,
  ``dict``) runs *one* SQL statement, with bound parameters (JSON keys that are plain names are
  written into it, see :func:`plait.orm.query_sql._plain_path`); ancestors and descendants are
  recursive queries inside it.  Projecting ``*`` gives loaded nodes (or groups) built from the
  rows of that statement, never one more query per row.
* The same query gives the same results on SQLite and on PostgreSQL: JSON values compare by
  type (a number with numbers, a string with strings), text orders by code point, NULLs order
  last (first when descending).

Without a projection, the last vertex appended is projected as ``*``.  Without ``order_by`` the
order of the rows is whatever the database finds quickest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from plait.orm.errors import InvalidQueryError, MultipleObjectsError, NotExistentError
from plait.orm.node import Data, Node
from plait.orm.process_nodes import ProcessNode
from plait.orm.query_filters import (
    DATA_FIELDS,
    GROUP_FIELDS,
    LINK_FIELDS,
    MEMBERSHIP_FIELDS,
    NODE_FIELDS,
    WALK_FIELDS,
    Comparison,
    Condition,
    FieldCatalog,
    FieldRef,
    Junction,
    parse_filters,
)
from plait.orm.registry import _entry_point_data_types

if TYPE_CHECKING:
    from plait.orm.query_sql import CompiledQuery
    from plait.storage.backend import StorageBackend

__all__ = ["QueryBuilder"]

#: relationship keyword -> (kind of the vertex it joins to, fields of the edge)
_RELATIONSHIPS: dict[str, tuple[str, FieldCatalog]] = {
    "with_incoming": ("node", LINK_FIELDS),
    "with_outgoing": ("node", LINK_FIELDS),
    "with_ancestors": ("node", WALK_FIELDS),
    "with_descendants": ("node", WALK_FIELDS),
    "with_group": ("group", MEMBERSHIP_FIELDS),
    "with_node": ("node", MEMBERSHIP_FIELDS),
}
#: the relationships a vertex of each kind may have
_ALLOWED = {
    "node": ("with_incoming", "with_outgoing", "with_ancestors", "with_descendants", "with_group"),
    "group": ("with_node",),
}
_EDGE_DELIMITER = "--"
_CASTS = ("f", "i", "t", "b")

TagSpec = str | type
_Dict = dict  # QueryBuilder.dict() shadows the builtin in the class body


@dataclass(frozen=True)
class Projection:
    """What one projection of a vertex or edge gives: ``*`` (the loaded entity) or a field."""

    text: str
    field: FieldRef | None  # None for "*"
    cast: str | None = None


@dataclass(frozen=True)
class OrderItem:
    tag: str
    field: FieldRef
    descending: bool
    cast: str | None = None


@dataclass
class Vertex:
    """One vertex of the path: what it holds, how it joins an earlier one, and its edge."""

    tag: str
    entity: str  # "node" or "group"
    classes: tuple[type, ...]
    fields: FieldCatalog
    type_condition: Condition | None
    may_hold_processes: bool
    #: every node of the vertex is a process node, so each has its process row (the engine writes
    #: both in one transaction): ``processes`` is inner-joined, which lets the database start
    #: from that table and its indexes, and for ``ProcessNode`` the join alone is the type filter
    processes_only: bool = False
    relationship: str | None = None
    target: str | None = None
    edge_tag: str | None = None
    edge_fields: FieldCatalog | None = None


@dataclass(frozen=True)
class QuerySpec:
    """A checked query, handed to :mod:`plait.orm.query_sql` to become one statement."""

    path: tuple[Vertex, ...]
    filters: Mapping[str, tuple[Condition, ...]]
    projections: tuple[tuple[str, Projection], ...]
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
    distinct: bool


@dataclass
class _State:
    path: list[Vertex] = field(default_factory=list)
    filters: dict[str, dict[str, Condition]] = field(default_factory=dict)
    projections: dict[str, list[Projection]] = field(default_factory=dict)


def _group_class() -> type | None:
    try:
        from plait.orm.groups import Group
    except ImportError:  # pragma: no cover - groups ship with plait
        return None
    return Group


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    stack: list[type] = [cls]
    while stack:
        subclasses: list[type] = stack.pop().__subclasses__()
        for sub in subclasses:
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


def _known_node_types(cls: type[Node]) -> set[str]:
    return {cls.node_type} | {sub.node_type for sub in _all_subclasses(cls) if issubclass(sub, Node)}


_NODE_TYPE = DATA_FIELDS.resolve("node_type", "node type")


def _class_condition(cls: type[Node], subclassing: bool) -> Condition | None:
    """The ``node_type`` condition that selects ``cls`` (and its subclasses); None for every node.

    Node types are not one hierarchy of strings (``process.workchain`` is a subclass of
    ``process.workflow``), so a class stands for the node types of itself and of every subclass
    imported now, plus the data plugins registered below its own type (``data.core.code.x`` for
    the entry point ``core.code.x``), as one ``IN`` list that the ``node_type`` index serves.
    ``Data`` and ``ProcessNode`` partition all nodes: process types start with ``process.``;
    data is the rest, so a ``module:QualName`` data type is found even when its module is not
    imported.
    """
    if not subclassing:
        return Comparison(_NODE_TYPE, "==", cls.node_type)
    if cls is Node:
        return None
    custom_process = sorted(t for t in _known_node_types(ProcessNode) if not t.startswith("process."))
    if cls is Data:
        parts: list[Condition] = [
            Comparison(_NODE_TYPE, "like", "process.%", negated=True),
            Comparison(_NODE_TYPE, "==", Node.node_type, negated=True),
        ]
        if custom_process:
            parts.append(Comparison(_NODE_TYPE, "in", custom_process, negated=True))
        return Junction("and", tuple(parts))
    if cls is ProcessNode:
        prefix = Comparison(_NODE_TYPE, "like", "process.%")
        return (
            Junction("or", (prefix, Comparison(_NODE_TYPE, "in", custom_process)))
            if custom_process
            else prefix
        )
    types = _known_node_types(cls)
    if ":" not in cls.node_type:
        family = cls.node_type + "."
        types |= {node_type for node_type in _entry_point_data_types() if node_type.startswith(family)}
    return Comparison(_NODE_TYPE, "in", sorted(types))


def _type_condition(classes: tuple[type[Node], ...], subclassing: bool) -> Condition | None:
    if subclassing and ProcessNode in classes and all(issubclass(c, ProcessNode) for c in classes):
        return None  # every node with a process row: the inner join with ``processes`` selects them
    parts = []
    for cls in classes:
        condition = _class_condition(cls, subclassing)
        if condition is None:
            return None
        parts.append(condition)
    return parts[0] if len(parts) == 1 else Junction("or", tuple(parts))


class QueryBuilder:
    """A query of the provenance graph, built by :meth:`append` and asked by :meth:`all` & co.

    ``QueryBuilder(backend=None, *, path=(), filters=None, project=None, limit=None, offset=None,
    order_by=None, distinct=False)``: ``path`` is a list of classes or of dicts of
    :meth:`append`'s arguments; ``filters`` and ``project`` map tags to filters and projections.
    ``backend``: the storage to ask (default: the current profile's, opened at the first result).

    Raises:
        InvalidQueryError: as the methods the arguments are handed to.
    """

    def __init__(
        self,
        backend: StorageBackend | None = None,
        *,
        path: Sequence[type | tuple[type, ...] | Mapping[str, Any]] = (),
        filters: Mapping[TagSpec, Mapping[str, Any]] | None = None,
        project: Mapping[TagSpec, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        order_by: Any = None,
        distinct: bool = False,
    ) -> None:
        self._backend = backend
        self._state = _State()
        self._order: list[OrderItem] = []
        self._limit: int | None = None
        self._offset: int | None = None
        self._distinct = False
        for item in path:
            if isinstance(item, Mapping):
                arguments = dict(item)
                cls = arguments.pop("cls", None)
                self.append(cls, **arguments)
            else:
                self.append(item)
        for tag, spec in (filters or {}).items():
            self.add_filter(tag, spec)
        for tag, spec in (project or {}).items():
            self.add_projection(tag, spec)
        self.limit(limit)
        self.offset(offset)
        if order_by:
            self.order_by(order_by)
        self.distinct(distinct)

    # -- building ---------------------------------------------------------------------------------
    def append(
        self,
        cls: type | tuple[type, ...] | list[type] | None = None,
        *,
        tag: str | None = None,
        filters: Mapping[str, Any] | None = None,
        project: Any = None,
        subclassing: bool = True,
        edge_tag: str | None = None,
        edge_filters: Mapping[str, Any] | None = None,
        edge_project: Any = None,
        with_incoming: TagSpec | None = None,
        with_outgoing: TagSpec | None = None,
        with_node: TagSpec | None = None,
        with_ancestors: TagSpec | None = None,
        with_descendants: TagSpec | None = None,
        with_group: TagSpec | None = None,
    ) -> QueryBuilder:
        """Add a vertex to the path: the nodes (or groups) of ``cls`` related to an earlier vertex.

        ``cls``: a node class (``Int``, ``Data``, ``CalcJobNode``...) or ``Group``, or a tuple of
        node classes (any of them).  ``subclassing`` (default True): subclasses too, so ``Node``
        finds every node and ``Data`` every data node.  ``tag``: the name other calls use for this
        vertex (default ``ClassName_1``).  ``filters``, ``project``: as :meth:`add_filter` and
        :meth:`add_projection`.

        At most one relationship to an earlier vertex (a tag or a class appended once):

        * ``with_incoming=T``: nodes with a link coming in from T (outputs of T);
        * ``with_outgoing=T``: nodes with a link going out to T (inputs of T);
        * ``with_ancestors=T``: descendants of T; ``with_descendants=T``: ancestors of T (along
          create and input_calc links, the data provenance, as in aiida-core);
        * ``with_group=T``: nodes in group T; for a ``Group`` vertex, ``with_node=T``: the groups
          that hold T.

        Without one, a vertex after the first is ``with_incoming`` the one before (``with_group``
        after a group, ``with_node`` for a group after a node).  The edge has its own
        ``edge_tag`` (default ``T--tag``), ``edge_filters`` and ``edge_project``: ``label`` and
        ``type`` of a link; ``depth`` of an ancestry (0 is a direct link).

        Raises:
            InvalidQueryError: see the module docstring; nothing is added then.
        """
        state = self._state
        classes, entity = self._classes(cls)
        if tag is None:
            tag = self._free_tag("-".join(c.__name__ for c in classes))
        else:
            self._check_new_tag(tag, "tag")
        given = {
            name: value
            for name, value in (
                ("with_incoming", with_incoming),
                ("with_outgoing", with_outgoing),
                ("with_node", with_node),
                ("with_ancestors", with_ancestors),
                ("with_descendants", with_descendants),
                ("with_group", with_group),
            )
            if value is not None
        }
        if len(given) > 1:
            raise InvalidQueryError(
                f"append('{tag}'): one relationship per vertex, got {', '.join(sorted(given))}; "
                "append another vertex for the other"
            )
        relationship: str | None = None
        target: str | None = None
        if given:
            if not state.path:
                raise InvalidQueryError(
                    f"append('{tag}'): {next(iter(given))} names a vertex, but nothing is appended yet"
                )
            relationship, spec = next(iter(given.items()))
            if relationship not in _ALLOWED[entity]:
                raise InvalidQueryError(
                    f"append('{tag}'): a {'Group' if entity == 'group' else 'node'} vertex joins with "
                    f"{' or '.join(_ALLOWED[entity])}, not {relationship}"
                )
            target = self._vertex_tag(spec, f"append('{tag}'): {relationship}")
        elif state.path:
            previous = state.path[-1]
            target = previous.tag
            if entity == "node":
                relationship = "with_group" if previous.entity == "group" else "with_incoming"
            elif previous.entity == "node":
                relationship = "with_node"
            else:
                raise InvalidQueryError(
                    f"append('{tag}'): a Group vertex joins a node vertex (with_node=...), "
                    f"and '{previous.tag}' is a Group vertex"
                )
        edge_fields: FieldCatalog | None = None
        if relationship is not None:
            assert target is not None
            wanted_kind, edge_fields = _RELATIONSHIPS[relationship]
            found = self._by_tag(target)
            if found.entity != wanted_kind:
                raise InvalidQueryError(
                    f"append('{tag}'): {relationship}='{target}' must name a "
                    f"{'Group' if wanted_kind == 'group' else 'node'} vertex, and '{target}' is a "
                    f"{'Group' if found.entity == 'group' else 'node'} vertex"
                )
            if edge_tag is None:
                edge_tag = f"{target}{_EDGE_DELIMITER}{tag}"
            else:
                self._check_new_tag(edge_tag, "edge_tag")
            if edge_tag == tag:
                raise InvalidQueryError(f"append('{tag}'): the edge_tag cannot be the vertex's own tag")
        elif edge_tag is not None or edge_filters is not None or edge_project is not None:
            raise InvalidQueryError(
                f"append('{tag}'): the first vertex has no edge, so no edge_tag, edge_filters or edge_project"
            )

        if entity == "group":
            fields = GROUP_FIELDS
            type_condition = None
            holds_processes = processes_only = False
        else:
            node_classes = tuple(c for c in classes if issubclass(c, Node))
            data_only = all(issubclass(c, Data) for c in node_classes)
            fields = DATA_FIELDS if data_only else NODE_FIELDS
            type_condition = _type_condition(node_classes, subclassing)
            holds_processes = not data_only
            processes_only = all(issubclass(c, ProcessNode) for c in node_classes)
        vertex = Vertex(
            tag,
            entity,
            classes,
            fields,
            type_condition,
            holds_processes,
            entity == "node" and processes_only,
            relationship,
            target,
            edge_tag,
            edge_fields,
        )
        # check every part before changing anything, so that a refused append leaves no trace
        vertex_filters = self._parse_filters(vertex.fields, filters or {}, f"the filters of '{tag}'")
        vertex_projections = self._parse_projections(vertex.fields, project, tag, star=True)
        edge_filter_map: dict[str, Condition] = {}
        edge_projections: list[Projection] = []
        if edge_tag is not None:
            assert edge_fields is not None
            edge_filter_map = self._parse_filters(
                edge_fields, edge_filters or {}, f"the edge filters of '{edge_tag}'"
            )
            edge_projections = self._parse_projections(edge_fields, edge_project, edge_tag, star=False)

        state.path.append(vertex)
        state.filters[tag] = vertex_filters
        state.projections[tag] = vertex_projections
        if edge_tag is not None:
            state.filters[edge_tag] = edge_filter_map
            state.projections[edge_tag] = edge_projections
        return self

    def inputs(self, **kwargs: Any) -> QueryBuilder:
        """Append the inputs of the last vertex (``cls`` defaults to ``Node``); as aiida-core's."""
        return self._append_related("with_outgoing", kwargs)

    def outputs(self, **kwargs: Any) -> QueryBuilder:
        """Append the outputs of the last vertex (``cls`` defaults to ``Node``)."""
        return self._append_related("with_incoming", kwargs)

    def children(self, **kwargs: Any) -> QueryBuilder:
        """Append the descendants of the last vertex (``cls`` defaults to ``Node``)."""
        return self._append_related("with_ancestors", kwargs)

    def parents(self, **kwargs: Any) -> QueryBuilder:
        """Append the ancestors of the last vertex (``cls`` defaults to ``Node``)."""
        return self._append_related("with_descendants", kwargs)

    def _append_related(self, relationship: str, kwargs: dict[str, Any]) -> QueryBuilder:
        if not self._state.path:
            raise InvalidQueryError(f"{relationship}: nothing is appended yet")
        cls = kwargs.pop("cls", Node)
        arguments: dict[str, Any] = {relationship: self._state.path[-1].tag, **kwargs}
        return self.append(cls, **arguments)

    def add_filter(self, tag: TagSpec, filters: Mapping[str, Any]) -> QueryBuilder:
        """Add filters to the vertex or edge ``tag`` (a tag, or a class appended once).

        A field filtered again replaces its earlier filter (as in aiida-core); filters on
        different fields are ANDed.  See :mod:`plait.orm.query_filters` for the language.

        Raises:
            InvalidQueryError: unknown tag, field or operator, or a value of the wrong type.
        """
        name = self._any_tag(tag, "add_filter")
        parsed = self._parse_filters(self._fields_of(name), filters, f"the filters of '{name}'")
        self._state.filters[name].update(parsed)
        return self

    def add_projection(self, tag: TagSpec, projection: Any) -> QueryBuilder:
        """Set what the vertex or edge ``tag`` contributes to each result row (replacing earlier ones).

        ``projection``: a field (``"id"``, ``"label"``, ``"attributes.energy"``), ``"*"`` (the
        loaded node or group; not for edges), or a list of them; a dict ``{field: {"cast": "f"}}``
        reads a JSON value as a float (``i`` int, ``t`` text, ``b`` bool; a value of another
        type gives None).

        Raises:
            InvalidQueryError: unknown tag or field, a field projected twice.
        """
        name = self._any_tag(tag, "add_projection")
        projections = self._parse_projections(
            self._fields_of(name), projection, name, star=not self._is_edge(name)
        )
        self._state.projections[name] = projections
        return self

    def order_by(self, order_by: Any) -> QueryBuilder:
        """Order the rows (replacing an earlier order): ``{tag: field}``, ``{tag: {field: "desc"}}``.

        Also ``{tag: [field, {field: {"order": "desc", "cast": "f"}}]}`` and a list of such dicts,
        applied in turn.  A JSON path orders by type (numbers, then strings, booleans, arrays,
        objects, nulls and missing values), then by value; with a ``cast`` by the cast value.

        Raises:
            InvalidQueryError: unknown tag or field, an order that is not ``asc`` or ``desc``.
        """
        specs = order_by if isinstance(order_by, (list, tuple)) else [order_by]
        items: list[OrderItem] = []
        for spec in specs:
            if not isinstance(spec, Mapping):
                raise InvalidQueryError(f"order_by takes {{tag: field}} dicts, not {spec!r}")
            for tag, entries in spec.items():
                name = self._any_tag(tag, "order_by")
                fields = self._fields_of(name)
                entries_list = entries if isinstance(entries, (list, tuple)) else [entries]
                for entry in entries_list:
                    pairs: list[tuple[Any, Any]]
                    if isinstance(entry, str):
                        pairs = [(entry, {})]
                    elif isinstance(entry, Mapping):
                        pairs = list(entry.items())
                    else:
                        raise InvalidQueryError(
                            f"order_by of '{name}': {entry!r} is not a field or {{field: order}}"
                        )
                    for text, how in pairs:
                        items.append(self._order_item(name, fields, text, how))
        self._order = items
        return self

    def _order_item(self, tag: str, fields: FieldCatalog, text: Any, how: Any) -> OrderItem:
        where = f"order_by of '{tag}'"
        spec = {"order": how} if isinstance(how, str) else how
        if not isinstance(spec, Mapping):
            raise InvalidQueryError(f"{where}: the order of '{text}' is 'asc', 'desc' or a dict, not {how!r}")
        unknown = set(spec) - {"order", "cast"}
        if unknown:
            raise InvalidQueryError(
                f"{where}: unknown key {sorted(unknown)[0]!r} for '{text}' (keys: order, cast)"
            )
        order = spec.get("order", "asc")
        if order not in ("asc", "desc"):
            raise InvalidQueryError(f"{where}: the order of '{text}' is 'asc' or 'desc', not {order!r}")
        ref = fields.resolve(text, where)
        if ref.is_json and not ref.path:
            raise InvalidQueryError(f"{where}: cannot order by the whole of '{text}'; order by a key in it")
        cast = self._cast(spec.get("cast"), ref, where)
        return OrderItem(tag, ref, order == "desc", cast)

    def limit(self, limit: int | None) -> QueryBuilder:
        """Return at most ``limit`` rows (None: no limit)."""
        self._limit = self._count_argument(limit, "limit")
        return self

    def offset(self, offset: int | None) -> QueryBuilder:
        """Skip the first ``offset`` rows (None or 0: none)."""
        self._offset = self._count_argument(offset, "offset")
        return self

    def distinct(self, value: bool = True) -> QueryBuilder:
        """Return each distinct row once (the columns ordered by count as projected)."""
        if not isinstance(value, bool):
            raise InvalidQueryError(f"distinct() takes a bool, not {value!r}")
        self._distinct = value
        return self

    # -- results ----------------------------------------------------------------------------------
    @overload
    def all(self, batch_size: int | None = None, flat: Literal[False] = False) -> list[list[Any]]: ...
    @overload
    def all(self, batch_size: int | None = None, *, flat: Literal[True]) -> list[Any]: ...
    def all(self, batch_size: int | None = None, flat: bool = False) -> list[list[Any]] | list[Any]:
        """Every row, as a list of the projected values in path order (edge projections last).

        ``flat=True``: one flat list of all projected values (one per row for one projection).
        """
        rows = self._compiled().fetch(batch_size)
        return [value for row in rows for value in row] if flat else rows

    def iterall(self, batch_size: int | None = 100) -> Iterator[list[Any]]:
        """The rows one by one, read from the database ``batch_size`` at a time."""
        yield from self._compiled().iterate(batch_size)

    def iterdict(self, batch_size: int | None = 100) -> Iterator[dict[str, dict[str, Any]]]:
        """The rows as ``{tag: {projection: value}}``, read ``batch_size`` at a time."""
        compiled = self._compiled()
        for row in compiled.iterate(batch_size):
            yield compiled.as_dict(row)

    def dict(self, batch_size: int | None = None) -> list[dict[str, dict[str, Any]]]:
        """Every row as ``{tag: {projection: value}}`` (``{"calc": {"id": 5, "*": <node>}}``)."""
        compiled = self._compiled()
        return [compiled.as_dict(row) for row in compiled.fetch(batch_size)]

    def first(self, flat: bool = False) -> Any:
        """The first row (a list), or None when there is none; ``flat``: the value alone if only one."""
        rows = self._compiled(limit=1).fetch(None)
        if not rows:
            return None
        row = rows[0]
        return row[0] if flat and len(row) == 1 else row

    def one(self) -> list[Any]:
        """The only row.

        Raises:
            NotExistentError: no row matches.
            MultipleObjectsError: more than one row matches.
        """
        rows = self._compiled(limit=2).fetch(None)
        if not rows:
            raise NotExistentError(f"no result was found for the query of {self._describe()}")
        if len(rows) > 1:
            raise MultipleObjectsError(
                f"more than one result was found for the query of {self._describe()}; "
                "add filters, or use first() or all()"
            )
        return rows[0]

    def count(self) -> int:
        """The number of rows :meth:`all` would return, counted by the database.

        Unless the query is :meth:`distinct`, what is projected does not change the count, so the
        count reads no projected column (the count of process nodes by their process columns then
        reads no node row).
        """
        return self._compiled(counting=not self._distinct).count()

    def as_sql(self) -> str:
        """The SQL of the query for the profile's database, its bound parameters as placeholders."""
        return self._compiled().sql()

    def __repr__(self) -> str:
        return f"<QueryBuilder of {self._describe()}>"

    # -- internals ---------------------------------------------------------------------------------
    def _describe(self) -> str:
        if not self._state.path:
            return "nothing (no vertex appended)"
        return " -> ".join(f"'{vertex.tag}'" for vertex in self._state.path)

    def _spec(self, limit: int | None = None) -> QuerySpec:
        state = self._state
        if not state.path:
            raise InvalidQueryError("the query has no vertex: append(NodeClass) first")
        projections: list[tuple[str, Projection]] = []
        for vertex in state.path:
            projections.extend((vertex.tag, p) for p in state.projections[vertex.tag])
        for vertex in state.path:
            if vertex.edge_tag is not None:
                projections.extend((vertex.edge_tag, p) for p in state.projections[vertex.edge_tag])
        if not projections:
            projections = [(state.path[-1].tag, Projection("*", None))]
        effective = (
            self._limit if limit is None else (limit if self._limit is None else min(limit, self._limit))
        )
        return QuerySpec(
            path=tuple(state.path),
            filters={tag: tuple(conditions.values()) for tag, conditions in state.filters.items()},
            projections=tuple(projections),
            order=tuple(self._order),
            limit=effective,
            offset=self._offset,
            distinct=self._distinct,
        )

    def _compiled(self, limit: int | None = None, *, counting: bool = False) -> CompiledQuery:
        spec = self._spec(limit)  # raises before any database is opened
        if counting:
            spec = dataclasses.replace(spec, projections=())
        from plait.orm.query_sql import CompiledQuery

        backend = self._backend
        if backend is None:
            from plait.storage import get_backend

            backend = get_backend()
        return CompiledQuery(spec, backend)

    def _classes(self, cls: Any) -> tuple[tuple[type, ...], str]:
        if cls is None:
            raise InvalidQueryError(
                "append() needs a class: a node class (Int, CalcJobNode, Node...) or Group"
            )
        items = tuple(cls) if isinstance(cls, (tuple, list)) else (cls,)
        if not items:
            raise InvalidQueryError("append() got an empty tuple of classes")
        group = _group_class()
        kinds = set()
        for item in items:
            if isinstance(item, type) and issubclass(item, Node):
                kinds.add("node")
            elif isinstance(item, type) and group is not None and issubclass(item, group):
                kinds.add("group")
            else:
                what = f"the class {item.__name__}" if isinstance(item, type) else f"{item!r}"
                raise InvalidQueryError(
                    f"append(): {what} is not a node class (a subclass of plait.orm.Node) nor Group"
                )
        if len(kinds) > 1:
            raise InvalidQueryError(
                "append(): one vertex holds nodes or groups, not both; append one of each"
            )
        if "group" in kinds and len(items) > 1:
            raise InvalidQueryError("append(): give Group alone, not in a tuple")
        return items, kinds.pop()

    def _all_tags(self) -> list[str]:
        tags: list[str] = []
        for vertex in self._state.path:
            tags.append(vertex.tag)
            if vertex.edge_tag is not None:
                tags.append(vertex.edge_tag)
        return tags

    def _check_new_tag(self, tag: object, what: str) -> None:
        if not isinstance(tag, str) or not tag:
            raise InvalidQueryError(f"append(): a {what} is a non-empty string, not {tag!r}")
        if _EDGE_DELIMITER in tag and what == "tag":
            raise InvalidQueryError(
                f"append(): the tag '{tag}' holds '{_EDGE_DELIMITER}', which marks edge tags"
            )
        if tag in self._all_tags():
            raise InvalidQueryError(f"append(): the {what} '{tag}' is in use already")

    def _free_tag(self, base: str) -> str:
        used = set(self._all_tags())
        number = 1
        while f"{base}_{number}" in used:
            number += 1
        return f"{base}_{number}"

    def _by_tag(self, tag: str) -> Vertex:
        for vertex in self._state.path:
            if vertex.tag == tag:
                return vertex
        raise AssertionError(tag)

    def _is_edge(self, tag: str) -> bool:
        return any(vertex.edge_tag == tag for vertex in self._state.path)

    def _fields_of(self, tag: str) -> FieldCatalog:
        for vertex in self._state.path:
            if vertex.tag == tag:
                return vertex.fields
            if vertex.edge_tag == tag:
                assert vertex.edge_fields is not None
                return vertex.edge_fields
        raise AssertionError(tag)

    def _vertex_tag(self, spec: TagSpec, where: str) -> str:
        """The tag of the vertex ``spec`` names (a tag, or a class appended exactly once)."""
        tags = [vertex.tag for vertex in self._state.path]
        if isinstance(spec, str):
            if spec in tags:
                return spec
            if self._is_edge(spec):
                raise InvalidQueryError(f"{where}: '{spec}' is an edge tag; name a vertex")
            raise InvalidQueryError(
                f"{where}: no vertex is tagged '{spec}' yet (a relationship names a vertex appended "
                f"before; tags so far: {', '.join(tags) or 'none'})"
            )
        if isinstance(spec, type):
            found = [vertex.tag for vertex in self._state.path if spec in vertex.classes]
            if len(found) == 1:
                return found[0]
            if not found:
                raise InvalidQueryError(f"{where}: no vertex of class {spec.__name__} is appended yet")
            raise InvalidQueryError(
                f"{where}: several vertices are of class {spec.__name__} ({', '.join(found)}); "
                "name one by its tag"
            )
        raise InvalidQueryError(
            f"{where}: a vertex is named by its tag (a string) or its class, not {spec!r}"
        )

    def _any_tag(self, spec: TagSpec, where: str) -> str:
        if isinstance(spec, str) and self._is_edge(spec):
            return spec
        if isinstance(spec, str) and spec not in self._all_tags():
            raise InvalidQueryError(
                f"{where}: unknown tag '{spec}' "
                f"(tags: {', '.join(self._all_tags()) or 'none, append a vertex first'})"
            )
        return self._vertex_tag(spec, where)

    @staticmethod
    def _parse_filters(fields: FieldCatalog, filters: Any, where: str) -> _Dict[str, Condition]:
        if not isinstance(filters, Mapping):
            raise InvalidQueryError(f"{where}: filters are a dict of field: condition, not {filters!r}")
        parsed: dict[str, Condition] = {}
        for key, value in filters.items():
            condition = parse_filters({key: value}, lambda name: fields.resolve(name, where), where)
            if condition is not None:
                parsed[key] = condition
        return parsed

    def _parse_projections(
        self, fields: FieldCatalog, projection: Any, tag: str, *, star: bool
    ) -> list[Projection]:
        if projection is None:
            return []
        where = f"the projections of '{tag}'"
        entries = list(projection) if isinstance(projection, (list, tuple)) else [projection]
        result: list[Projection] = []
        for entry in entries:
            pairs: list[tuple[Any, Any]]
            if isinstance(entry, str):
                pairs = [(entry, {})]
            elif isinstance(entry, Mapping):
                pairs = list(entry.items())
            else:
                raise InvalidQueryError(
                    f"{where}: {entry!r} is not a field, '*' or {{field: {{'cast': ...}}}}"
                )
            for text, options in pairs:
                if not isinstance(options, Mapping):
                    raise InvalidQueryError(f"{where}: the options of '{text}' are a dict, not {options!r}")
                unknown = set(options) - {"cast"}
                if unknown:
                    raise InvalidQueryError(
                        f"{where}: {sorted(unknown)[0]!r} is not supported for '{text}' (only 'cast'; "
                        "count rows with count())"
                    )
                if text == "*":
                    if not star:
                        raise InvalidQueryError(
                            f"{where}: an edge has no '*'; project its fields ({', '.join(fields.names)})"
                        )
                    if options:
                        raise InvalidQueryError(f"{where}: '*' takes no cast")
                    result.append(Projection("*", None))
                    continue
                if text == "**":
                    raise InvalidQueryError(
                        f"{where}: '**' is not supported; project '*' or the fields you need"
                    )
                ref = fields.resolve(text, where)
                result.append(Projection(text, ref, self._cast(options.get("cast"), ref, where)))
        seen: set[str] = set()
        for item in result:
            if item.text in seen:
                raise InvalidQueryError(f"{where}: '{item.text}' is projected twice")
            seen.add(item.text)
        return result

    @staticmethod
    def _cast(cast: Any, ref: FieldRef, where: str) -> str | None:
        if cast is None:
            return None
        if cast not in _CASTS:
            raise InvalidQueryError(f"{where}: unknown cast {cast!r} for '{ref.text}' (f, i, t or b)")
        if not (ref.is_json and ref.path):
            raise InvalidQueryError(
                f"{where}: a cast reads a value inside attributes or extras, not '{ref.text}'"
            )
        return str(cast)

    @staticmethod
    def _count_argument(value: Any, name: str) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidQueryError(f"{name}() takes an int >= 0 or None, not {value!r}")
        return int(value)
