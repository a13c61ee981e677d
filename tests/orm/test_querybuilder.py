"""QueryBuilder: every operator, relationship, projection, ordering and error — the same answers on SQLite
and PostgreSQL (each test runs on both through ``any_profile`` and checks the same expected values).

The graph (labels in brackets; links as the engine leaves them)::

    x1[1] ─x─▶ add1 ─result─▶ r1[3] ─x─▶ add2 ─result─▶ r2[6]
    x2[2] ─y─▶ add1                x3[3] ─y─▶ add2
    x3 ─x─▶ fail (finished, exit status 410);  x1 ─x─▶ broken (excepted)
    x1 ─x (input_work)─▶ wrap (waiting, paused) ─CALL (call_calc)─▶ add1;  wrap ─result (return)─▶ r1

    groups: "g1" holds x1, r1, add1; "g2" holds d1
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from plait.orm import (
    CalcFunctionNode,
    CalcJobNode,
    CalculationNode,
    Data,
    Dict,
    Float,
    Group,
    Int,
    InvalidQueryError,
    List,
    MultipleObjectsError,
    Node,
    NotExistentError,
    ProcessNode,
    QueryBuilder,
    Str,
    WorkflowNode,
    WorkFunctionNode,
    load_node,
)
from plait.storage import get_backend


class Sample(Data):
    """A data type that is neither built in nor registered: its node type is ``module:QualName``."""


def _process(
    cls: type[ProcessNode], label: str, state: str, exit_status: int | None = None, **row: Any
) -> int:
    node = cls(label=label)
    node.store()
    assert node.pk is not None
    get_backend().insert_process(
        {"node_id": node.pk, "state": state, "process_label": label, "exit_status": exit_status, **row}
    )
    return node.pk


@pytest.fixture
def graph(any_profile: str) -> dict[str, int]:
    """The graph of the module docstring; label -> pk."""
    pk: dict[str, int] = {}

    def data(node: Node, label: str) -> None:
        node.label = label
        node.store()
        assert node.pk is not None
        pk[label] = node.pk

    data(Int(1), "x1")
    data(Int(2), "x2")
    data(Int(3), "x3")
    data(Float(2.5), "f")
    data(Str("hello"), "s")
    data(Dict({"a": {"b": 3, "c": [1, 2, "x"]}, "s": "hello", "t": True, "n": None, "big": 2**40}), "d1")
    data(Dict({"a": {"b": 3.5}, "s": "Hello", "t": False, "list": [[1], {"k": 1}]}), "d2")
    data(Dict({"a": {"b": "3"}, "s": "h_llo", "list": [], "n": 0}), "d3")
    data(List([1, 2, 3]), "l")
    data(Sample(), "sample")
    pk["add1"] = _process(CalcFunctionNode, "add1", "finished", 0)
    data(Int(3), "r1")
    pk["add2"] = _process(CalcFunctionNode, "add2", "finished", 0)
    data(Int(6), "r2")
    pk["fail"] = _process(CalcFunctionNode, "fail", "finished", 410, exit_message="no convergence")
    pk["broken"] = _process(CalcFunctionNode, "broken", "excepted", exception="Traceback ...")
    pk["wrap"] = _process(WorkFunctionNode, "wrap", "waiting", paused=True, lease_owner="h:1:worker:x")

    def link(source: str, kind: str, target: str, label: str) -> None:
        get_backend().insert_links(
            [{"input_id": pk[source], "output_id": pk[target], "link_type": kind, "label": label}]
        )

    link("x1", "input_calc", "add1", "x")
    link("x2", "input_calc", "add1", "y")
    link("add1", "create", "r1", "result")
    link("r1", "input_calc", "add2", "x")
    link("x3", "input_calc", "add2", "y")
    link("add2", "create", "r2", "result")
    link("x3", "input_calc", "fail", "x")
    link("x1", "input_calc", "broken", "x")
    link("x1", "input_work", "wrap", "x")
    link("wrap", "call_calc", "add1", "CALL")
    link("wrap", "return", "r1", "result")

    Group("g1", description="first").store().add_nodes([load_node(pk[name]) for name in ("x1", "r1", "add1")])
    Group("g2").store().add_nodes(load_node(pk["d1"]))
    return pk


def labels(
    cls: type | tuple[type, ...] = Node, filters: dict[str, Any] | None = None, **kwargs: Any
) -> list[str]:
    """The sorted labels of the nodes of ``cls`` that pass ``filters``."""
    return sorted(QueryBuilder().append(cls, filters=filters, project="label", **kwargs).all(flat=True))


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements (SELECT/WITH) that the database runs inside the block."""
    seen: list[str] = []
    engine = get_backend().database.engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# -- classes and subclassing ------------------------------------------------------------------------


def test_classes_and_subclassing(graph):
    everything = sorted(graph)
    assert labels(Node) == everything
    processes = ["add1", "add2", "broken", "fail", "wrap"]
    assert labels(ProcessNode) == processes
    assert labels(Data) == sorted(set(everything) - set(processes))
    assert labels(Int) == ["r1", "r2", "x1", "x2", "x3"]
    assert labels(CalculationNode) == ["add1", "add2", "broken", "fail"]
    assert labels(WorkflowNode) == ["wrap"]
    assert labels(CalcJobNode) == []
    assert labels((Int, Float, Str)) == ["f", "r1", "r2", "s", "x1", "x2", "x3"]
    assert labels(Sample) == ["sample"]
    assert labels(ProcessNode, subclassing=False) == []
    assert labels(Data, subclassing=False) == []
    assert labels(CalcFunctionNode, subclassing=False) == ["add1", "add2", "broken", "fail"]


def test_data_and_process_node_find_types_whose_module_is_not_imported(graph):
    """A ``module:QualName`` node type of a class nobody imported is data for Data, never a process."""
    from plait.storage.backend import utcnow

    row = Int(0, label="ghost")._row(utcnow())
    row["node_type"] = "nowhere.to.be.found:Ghost"
    get_backend().insert_nodes([row])
    assert "ghost" in labels(Data) and "ghost" in labels(Node)
    assert "ghost" not in labels(ProcessNode) and "ghost" not in labels(Int)
    [ghost] = QueryBuilder().append(Data, filters={"label": "ghost"}).all(flat=True)
    assert isinstance(ghost, Node) and ghost.get_attribute("value") == 0


def test_default_tags_and_first_one_count(graph):
    qb = QueryBuilder().append(Int, filters={"label": "x2"})
    node = qb.one()[0]
    assert isinstance(node, Int) and node.value == 2 and node.pk == graph["x2"]
    assert qb.count() == 1
    assert QueryBuilder().append(Int).append(CalcFunctionNode).dict()[0].keys() == {"CalcFunctionNode_1"}
    qb = QueryBuilder().append(Int, project="id").order_by({"Int_1": "id"})
    assert qb.first() == [graph["x1"]] and qb.first(flat=True) == graph["x1"]
    assert QueryBuilder().append(Int, filters={"label": "none"}).first() is None
    with pytest.raises(NotExistentError, match="no result"):
        QueryBuilder().append(Int, filters={"label": "none"}).one()
    with pytest.raises(MultipleObjectsError, match="more than one"):
        QueryBuilder().append(Int).one()
    assert QueryBuilder().append(Int).count() == 5
    assert QueryBuilder().append(Int).limit(2).count() == 2
    assert QueryBuilder().append(Int).offset(4).count() == 1
    ordered = QueryBuilder().append(Int, tag="i", project="label").order_by({"i": "id"})
    assert ordered.offset(1).first(flat=True) == "x2" and ordered.limit(0).first() is None


# -- filters on columns --------------------------------------------------------------------------------


def test_column_operators(graph):
    cases: list[tuple[type, dict[str, Any], list[str]]] = [
        (Int, {"label": "x1"}, ["x1"]),
        (Int, {"label": {"==": "x1"}}, ["x1"]),
        (Int, {"label": {"!=": "x1"}}, ["r1", "r2", "x2", "x3"]),
        (Int, {"label": {"!==": "x1"}}, ["r1", "r2", "x2", "x3"]),
        (Int, {"id": {">": graph["x2"]}, "label": {"like": "x%"}}, ["x3"]),
        (Int, {"id": {">=": graph["x2"], "<": graph["r1"]}}, ["x2", "x3"]),
        (Int, {"id": {"<=": graph["x1"]}}, ["x1"]),
        (Int, {"pk": {"in": [graph["x1"], graph["r2"]]}}, ["r2", "x1"]),
        (Int, {"id": {"!in": [graph["x1"], graph["r2"]]}}, ["r1", "x2", "x3"]),
        (Int, {"id": {"in": []}}, []),
        (Int, {"label": {"like": "r_"}}, ["r1", "r2"]),
        (Int, {"label": {"like": "X%"}}, []),  # like is case-sensitive on both databases
        (Int, {"label": {"ilike": "X%"}}, ["x1", "x2", "x3"]),
        (Int, {"label": {"!like": "x%"}}, ["r1", "r2"]),
        (Data, {"label": {"like": "d_"}}, ["d1", "d2", "d3"]),
        (Data, {"label": {"like": "d\\_%"}}, []),  # an escaped underscore is a literal one
        (Int, {"label": {">": "x1"}}, ["x2", "x3"]),  # text compares by code point
        (Data, {"label": {"<": "e"}}, ["d1", "d2", "d3"]),
        (Int, {"node_type": "data.core.int"}, ["r1", "r2", "x1", "x2", "x3"]),
        (Int, {"uuid": {"like": "%-%"}}, ["r1", "r2", "x1", "x2", "x3"]),
        (Node, {"process_type": None, "label": {"like": "x%"}}, ["x1", "x2", "x3"]),
        (Node, {"computer_id": {"!==": None}}, []),
        (Int, {"description": ""}, ["r1", "r2", "x1", "x2", "x3"]),
        (Int, {"or": [{"label": "x1"}, {"label": "r2"}]}, ["r2", "x1"]),
        (Int, {"!or": [{"label": "x1"}, {"label": "r2"}]}, ["r1", "x2", "x3"]),
        (Int, {"and": [{"label": {"like": "x%"}}, {"label": {"!==": "x2"}}]}, ["x1", "x3"]),
        (Int, {"!and": [{"label": {"like": "x%"}}, {"label": {"!==": "x2"}}]}, ["r1", "r2", "x2"]),
        (Int, {"label": {"or": [{"==": "x1"}, {"like": "r%"}]}}, ["r1", "r2", "x1"]),
        (Int, {"label": {"and": [{"like": "x%"}, {"!in": ["x1", "x3"]}]}}, ["x2"]),
        (Int, {"label": {"like": "x%", "!==": "x3"}}, ["x1", "x2"]),
    ]
    for cls, filters, expected in cases:
        assert labels(cls, filters) == expected, filters


def test_process_columns_and_their_attribute_names(graph):
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"process_state": "finished"}, ["add1", "add2", "fail"]),
        ({"attributes.process_state": "finished"}, ["add1", "add2", "fail"]),
        ({"process_state": {"in": ["excepted", "waiting"]}}, ["broken", "wrap"]),
        ({"exit_status": 0}, ["add1", "add2"]),
        ({"attributes.exit_status": {">": 0}}, ["fail"]),
        ({"exit_status": {"!==": 0}}, ["broken", "fail", "wrap"]),  # the complement: None included
        ({"exit_status": None}, ["broken", "wrap"]),
        ({"process_label": {"like": "add%"}}, ["add1", "add2"]),
        ({"attributes.process_label": "wrap"}, ["wrap"]),
        ({"paused": True}, ["wrap"]),
        ({"attributes.paused": False}, ["add1", "add2", "broken", "fail"]),
        ({"exit_message": {"ilike": "%CONVERGENCE"}}, ["fail"]),
        ({"attributes.exit_message": {"like": "no%"}}, ["fail"]),
        ({"exception": {"like": "Traceback%"}}, ["broken"]),
        ({"attributes.exception": {"!==": None}}, ["broken"]),
        ({"lease_owner": {"like": "h:1:%"}}, ["wrap"]),
    ]
    for filters, expected in cases:
        assert labels(ProcessNode, filters) == expected, filters
    # on a Node vertex the process fields are those of the outer-joined process row: data has none
    assert labels(Node, {"process_state": {"!==": "finished"}, "label": {"like": "x%"}}) == ["x1", "x2", "x3"]
    assert labels(Node, {"exit_status": 410}) == ["fail"]


def test_datetimes(graph):
    now = dt.datetime.now(dt.UTC)
    assert len(labels(Node, {"ctime": {"<=": now}})) == len(graph)
    assert labels(Node, {"ctime": {">": now + dt.timedelta(minutes=1)}}) == []
    # a naive datetime is local time, an aware one in any zone means the same instant
    assert len(labels(Node, {"ctime": {"<": dt.datetime.now() + dt.timedelta(minutes=1)}})) == len(graph)
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert len(labels(Node, {"mtime": {"<": (now + dt.timedelta(minutes=1)).astimezone(tokyo)}})) == len(
        graph
    )
    ctime = QueryBuilder().append(Int, filters={"label": "x1"}, project="ctime").one()[0]
    assert ctime.tzinfo is not None and ctime.utcoffset() == dt.timedelta(0)
    assert labels(Int, {"ctime": ctime}) == ["x1"]


def test_long_in_lists(graph):
    wanted = [graph["x1"], graph["r2"], *range(10**6, 10**6 + 2000)]
    assert labels(Node, {"id": {"in": wanted}}) == ["r2", "x1"]
    assert len(labels(Node, {"id": {"!in": wanted}})) == len(graph) - 2
    names = ["x3", *(f"n{i}" for i in range(1000))]
    assert labels(Int, {"label": {"in": names}}) == ["x3"]


# -- filters on JSON values ---------------------------------------------------------------------------


def test_json_operators(graph):
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"attributes.a.b": 3}, ["d1"]),
        ({"attributes.a.b": 3.0}, ["d1"]),  # 1 == 1.0, as JSON numbers
        ({"attributes.a.b": "3"}, ["d3"]),  # but never a string
        ({"attributes.a.b": {">": 3}}, ["d2"]),
        ({"attributes.a.b": {">=": 3}}, ["d1", "d2"]),
        ({"attributes.a.b": {"<": 3.2}}, ["d1"]),
        ({"attributes.a.b": {"<=": 3.5}}, ["d1", "d2"]),
        ({"attributes.a.b": {">": "2"}}, ["d3"]),  # strings compare with strings
        ({"attributes.a.b": {"!>": 3}}, ["d1", "d3"]),
        ({"attributes.a.b": {"in": [3, 4]}}, ["d1"]),
        ({"attributes.a.b": {"in": ["3"]}}, ["d3"]),
        ({"attributes.a.b": {"!in": [3.5]}}, ["d1", "d3"]),
        ({"attributes.t": True}, ["d1"]),
        ({"attributes.t": False}, ["d2"]),
        ({"attributes.t": {"in": [True, False]}}, ["d1", "d2"]),
        ({"attributes.t": {"!==": True}}, ["d2", "d3"]),  # missing counts as not equal
        ({"attributes.n": None}, ["d1", "d2"]),  # null, or missing
        ({"attributes.n": {"!==": None}}, ["d3"]),
        ({"attributes.n": 0}, ["d3"]),
        ({"attributes.t": 1}, []),  # a boolean is no number
        ({"attributes.big": 2**40}, ["d1"]),
        ({"attributes.big": {">": 2**40 - 1}}, ["d1"]),
        ({"attributes.s": {"like": "h%"}}, ["d1", "d3"]),
        ({"attributes.s": {"like": "h\\_llo"}}, ["d3"]),
        ({"attributes.s": {"like": "h_llo"}}, ["d1", "d3"]),
        ({"attributes.s": {"ilike": "H%"}}, ["d1", "d2", "d3"]),
        ({"attributes.s": {"!ilike": "hello"}}, ["d3"]),
        ({"attributes.s": {">": "Hello"}}, ["d1", "d3"]),  # "H" < "h" by code point
        ({"attributes.a.c": {"contains": [1, "x"]}}, ["d1"]),
        ({"attributes.a.c": {"contains": []}}, ["d1"]),
        ({"attributes.a.c": {"contains": [3]}}, []),
        ({"attributes.a.c": {"!contains": [3]}}, ["d1", "d2", "d3"]),
        ({"attributes.a": {"has_key": "c"}}, ["d1"]),
        ({"attributes": {"has_key": "list"}}, ["d2", "d3"]),
        ({"attributes.a.c": {"has_key": "x"}}, ["d1"]),  # a string element of an array
        ({"attributes.s": {"has_key": "hello"}}, []),  # but not a string itself
        ({"attributes": {"!has_key": "n"}}, ["d2"]),
        ({"attributes.a.c": {"of_length": 3}}, ["d1"]),
        ({"attributes.list": {"of_length": 0}}, ["d3"]),
        ({"attributes.list": {"longer": 0}}, ["d2"]),
        ({"attributes.a.c": {"shorter": 4}}, ["d1"]),
        ({"attributes.list": {"!shorter": 1}}, ["d1", "d2"]),  # no array at all is not shorter
        ({"attributes.a": {"of_type": "object"}}, ["d1", "d2", "d3"]),
        ({"attributes.a.b": {"of_type": "number"}}, ["d1", "d2"]),
        ({"attributes.a.b": {"of_type": "string"}}, ["d3"]),
        ({"attributes.t": {"of_type": "boolean"}}, ["d1", "d2"]),
        ({"attributes.list": {"of_type": "array"}}, ["d2", "d3"]),
        ({"attributes.n": {"of_type": "null"}}, ["d1", "d2"]),
        ({"attributes.a.c.0": 1}, ["d1"]),  # an index into an array
        ({"attributes.a.c.2": "x"}, ["d1"]),
        ({"attributes.list.1.k": 1}, ["d2"]),
        ({"attributes.a": {"==": {"c": [1, 2, "x"], "b": 3}}}, ["d1"]),  # key order does not matter
        ({"attributes.a": {"==": {"b": 3}}}, []),  # but every key does
        ({"attributes.a.c": {"==": [1, 2, "x"]}}, ["d1"]),
        ({"attributes.a.c": {"==": [2, 1, "x"]}}, []),  # array order does
        ({"attributes.list": {"==": [[1], {"k": 1}]}}, ["d2"]),
        ({"attributes.list": {"==": []}}, ["d3"]),
        ({"attributes.a.b": 3, "attributes.s": "hello"}, ["d1"]),
        ({"or": [{"attributes.a.b": 3}, {"attributes.a.b": "3"}]}, ["d1", "d3"]),
        ({"attributes.a.b": {"or": [{"==": 3}, {">": 3.1}]}}, ["d1", "d2"]),
    ]
    for filters, expected in cases:
        assert labels(Dict, filters) == expected, filters
    assert labels(Int, {"attributes.value": {">": 2}}) == ["r1", "r2", "x3"]
    assert labels(Data, {"attributes.value": {"like": "hel%"}}) == ["s"]
    assert labels(List, {"attributes.list": {"contains": [3, 1]}}) == ["l"]


def test_extras(graph):
    x1 = QueryBuilder().append(Int, filters={"label": "x1"}).one()[0]
    x1.set_extra("tags", ["keep", "a"])
    x1.set_extra("score", {"value": 7.5})
    assert labels(Node, {"extras.tags": {"contains": ["keep"]}}) == ["x1"]
    assert labels(Node, {"extras.score.value": {">": 7}}) == ["x1"]
    assert labels(Node, {"extras": {"has_key": "score"}}) == ["x1"]
    assert QueryBuilder().append(Int, filters={"label": "x1"}, project="extras.score").all() == [
        [{"value": 7.5}]
    ]


# -- relationships -------------------------------------------------------------------------------------


def test_links_and_edge_filters(graph):
    qb = QueryBuilder()
    qb.append(Int, tag="x", project="label")
    qb.append(
        CalcFunctionNode, with_incoming="x", tag="calc", project="label", edge_project=["label", "type"]
    )
    rows = sorted(qb.all())
    assert rows == [
        ["r1", "add2", "x", "input_calc"],
        ["x1", "add1", "x", "input_calc"],
        ["x1", "broken", "x", "input_calc"],
        ["x2", "add1", "y", "input_calc"],
        ["x3", "add2", "y", "input_calc"],
        ["x3", "fail", "x", "input_calc"],
    ]
    qb.add_filter("x--calc", {"label": "y"})
    assert sorted(qb.all()) == [["x2", "add1", "y", "input_calc"], ["x3", "add2", "y", "input_calc"]]

    outputs = QueryBuilder().append(ProcessNode, tag="p", filters={"label": "wrap"})
    outputs.append(
        Node, with_incoming="p", edge_filters={"type": {"in": ["return", "call_calc"]}}, project="label"
    )
    assert sorted(outputs.all(flat=True)) == ["add1", "r1"]

    inputs = QueryBuilder().append(CalcFunctionNode, tag="c", filters={"label": "add1"})
    inputs.append(Int, with_outgoing="c", project="label", edge_filters={"label": {"in": ["x", "y"]}})
    assert sorted(inputs.all(flat=True)) == ["x1", "x2"]

    # without a keyword, a vertex is an output of the one before; the edge tag can be named
    chain = (
        QueryBuilder()
        .append(Int, filters={"label": "x1"})
        .append(CalcFunctionNode, edge_tag="in", project="label")
    )
    chain.add_projection("in", "label")
    assert sorted(chain.all()) == [["add1", "x"], ["broken", "x"]]

    # a path of three, joined by class
    qb = QueryBuilder().append(Int, tag="a", filters={"attributes.value": {"<": 3}}, project="label")
    qb.append(CalcFunctionNode, with_incoming="a", filters={"exit_status": 0})
    qb.append(Int, with_incoming=CalcFunctionNode, project="attributes.value")
    assert sorted(qb.all()) == [["x1", 3], ["x2", 3]]


def test_shortcuts_inputs_outputs_children_parents(graph):
    add1 = {"label": "add1"}
    inputs = QueryBuilder().append(CalcFunctionNode, filters=add1).inputs(project="label")
    assert sorted(inputs.all(flat=True)) == ["wrap", "x1", "x2"]  # the caller's call link is incoming too
    assert QueryBuilder().append(CalcFunctionNode, filters=add1).outputs(cls=Int, project="label").all() == [
        ["r1"]
    ]
    parents = QueryBuilder().append(Int, filters={"label": "r2"}).parents(cls=Int, project="label")
    assert sorted(parents.all(flat=True)) == ["r1", "x1", "x2", "x3"]
    children = QueryBuilder().append(Int, filters={"label": "x2"}).children(project="label")
    assert sorted(children.all(flat=True)) == ["add1", "add2", "r1", "r2"]


def test_ancestors_and_descendants(graph):
    down = QueryBuilder().append(Int, tag="x", filters={"label": "x1"})
    down.append(Node, with_ancestors="x", project="label", edge_project="depth")
    assert sorted(down.all()) == [["add1", 0], ["add2", 2], ["broken", 0], ["r1", 1], ["r2", 3]]
    down.add_filter("x--Node_1", {"depth": {"<=": 1}})
    assert sorted(down.all()) == [["add1", 0], ["broken", 0], ["r1", 1]]
    near = QueryBuilder().append(Int, tag="x", filters={"label": "x1"})
    near.append(Node, with_ancestors="x", project="label", edge_filters={"depth": {"<": 2}})
    assert sorted(near.all(flat=True)) == ["add1", "broken", "r1"]

    up = QueryBuilder().append(Int, tag="r", filters={"label": "r2"})
    up.append(Node, with_descendants="r", project="label")
    assert sorted(up.all(flat=True)) == ["add1", "add2", "r1", "x1", "x2", "x3"]
    up_data = QueryBuilder().append(Int, tag="r", filters={"label": "r2"})
    up_data.append(Int, with_descendants="r", project="label", filters={"attributes.value": {"<": 3}})
    assert sorted(up_data.all(flat=True)) == ["x1", "x2"]

    # a pair reached along two paths is one row: r2 descends from x3 directly and through nothing else,
    # add2 from x1 only once although the walk meets it once per path
    both = QueryBuilder().append(Int, tag="i", filters={"label": {"in": ["x1", "x2", "x3"]}}, project="label")
    both.append(Int, with_ancestors="i", filters={"label": "r2"}, project="label")
    assert sorted(both.all()) == [["x1", "r2"], ["x2", "r2"], ["x3", "r2"]]

    # ancestry follows data provenance only: not the workflow's input, call and return links
    wrapped = (
        QueryBuilder().append(WorkFunctionNode, tag="w").append(Node, with_ancestors="w", project="label")
    )
    assert wrapped.all() == []
    assert QueryBuilder().append(Node, tag="n").append(Node, with_ancestors="n").count() == 18


def test_groups(graph):
    in_group = QueryBuilder().append(Group, tag="g", filters={"label": "g1"})
    in_group.append(Node, with_group="g", project="label")
    assert sorted(in_group.all(flat=True)) == ["add1", "r1", "x1"]
    ints = (
        QueryBuilder().append(Group, filters={"label": "g1"}).append(Int, project="label")
    )  # default: with_group
    assert sorted(ints.all(flat=True)) == ["r1", "x1"]

    holders = QueryBuilder().append(Dict, tag="d", filters={"label": "d1"})
    holders.append(Group, with_node="d", project=["label", "description", "*"])
    [[label, description, group]] = holders.all()
    assert (label, description) == ("g2", "")
    assert isinstance(group, Group) and group.label == "g2" and group.count() == 1

    every = (
        QueryBuilder()
        .append(Node, tag="n", project="label")
        .append(Group, project="label", edge_project="node_id")
    )
    rows = sorted(every.all())
    assert [row[:2] for row in rows] == [["add1", "g1"], ["d1", "g2"], ["r1", "g1"], ["x1", "g1"]]
    assert {row[2] for row in rows} == {graph[name] for name in ("add1", "d1", "r1", "x1")}

    groups = QueryBuilder().append(
        Group, filters={"description": {"like": "fir%"}}, project=["label", "time"]
    )
    [[found, time]] = groups.all()
    assert found == "g1" and time.tzinfo is not None
    assert QueryBuilder().append(Group, project="label").order_by({"Group_1": {"label": "desc"}}).all(
        flat=True
    ) == [
        "g2",
        "g1",
    ]


def test_groups_by_rows_written_directly(graph):
    """Membership is read from group_nodes as the backend stores it, whoever wrote the rows."""
    from plait.storage.schema import group_nodes, groups

    backend = get_backend()
    with backend.transaction() as conn:
        group_id = conn.execute(
            groups.insert().returning(groups.c.id),
            {
                "uuid": "00000000-0000-4000-8000-000000000009",
                "label": "raw",
                "type_string": "core",
                "description": "",
                "ctime": dt.datetime.now(dt.UTC),
                "user_email": "",
                "extras": {"kind": "raw"},
            },
        ).scalar_one()
        conn.execute(group_nodes.insert(), [{"group_id": group_id, "node_id": graph["x2"]}])
        # a query inside the transaction sees what it wrote
        qb = (
            QueryBuilder().append(Group, tag="g", filters={"extras.kind": "raw"}).append(Int, project="label")
        )
        assert qb.all(flat=True) == ["x2"]
    assert qb.all(flat=True) == ["x2"]


# -- projections ---------------------------------------------------------------------------------------


def test_projections(graph):
    qb = QueryBuilder().append(
        Dict,
        filters={"label": "d1"},
        project=[
            "id",
            "pk",
            "uuid",
            "label",
            "node_type",
            "attributes.a",
            "attributes.a.c",
            "attributes.t",
            "attributes.n",
            "attributes.missing",
            "attributes.s",
            "attributes.a.b",
            "attributes.big",
            "extras",
        ],
    )
    [row] = qb.all()
    assert row[0] == row[1] == graph["d1"]
    assert row[3:] == [
        "d1",
        "data.core.dict",
        {"b": 3, "c": [1, 2, "x"]},
        [1, 2, "x"],
        True,
        None,
        None,
        "hello",
        3,
        2**40,
        {},
    ]
    assert isinstance(row[12], int) and isinstance(row[2], str)
    floats = QueryBuilder().append(
        Dict,
        filters={"label": {"in": ["d1", "d2", "d3"]}},
        project=[
            "label",
            {"attributes.a.b": {"cast": "f"}},
            {"attributes.t": {"cast": "b"}},
            {"attributes.s": {"cast": "t"}},
        ],
    )
    assert sorted(floats.all()) == [
        ["d1", 3.0, True, "hello"],
        ["d2", 3.5, False, "Hello"],
        ["d3", None, None, "h_llo"],
    ]
    ints = QueryBuilder().append(Dict, filters={"label": "d2"}, project={"attributes.a.b": {"cast": "i"}})
    assert ints.all() == [[3]]
    whole = QueryBuilder().append(List, project="attributes").one()
    assert whole == [{"list": [1, 2, 3]}]


def test_star_builds_nodes_from_the_rows_of_one_statement(graph):
    with statements() as seen:
        rows = QueryBuilder().append(Node, project=["*", "label"]).all()
    assert len(seen) == 1, seen
    by_label = {label: node for node, label in rows}
    assert set(by_label) == set(graph)
    wrap = by_label["wrap"]
    assert isinstance(wrap, WorkFunctionNode) and wrap.pk == graph["wrap"]
    assert wrap.process_state.value == "waiting" and wrap.paused and wrap.process_label == "wrap"
    fail = by_label["fail"]
    assert (
        isinstance(fail, CalcFunctionNode)
        and fail.exit_status == 410
        and fail.exit_message == "no convergence"
    )
    assert by_label["d1"].get_attribute("a") == {"b": 3, "c": [1, 2, "x"]}
    assert isinstance(by_label["sample"], Sample)
    assert by_label["x1"].ctime is not None and by_label["x1"].ctime.tzinfo is not None
    # what a loaded node reads afterwards is its own business; the query read nothing more
    with statements() as seen:
        QueryBuilder().append(ProcessNode).all()
        QueryBuilder().append(Int, tag="i").append(CalcFunctionNode, project="*").append(
            Int, project="*"
        ).all()
    assert len(seen) == 2


def test_results_shapes(graph):
    qb = QueryBuilder()
    qb.append(Int, tag="x", filters={"label": {"in": ["x1", "x2"]}}, project=["label", "attributes.value"])
    qb.append(CalcFunctionNode, tag="c", project="label", edge_project="label")
    qb.order_by([{"x": "label"}, {"c": "label"}])
    assert qb.all() == [["x1", 1, "add1", "x"], ["x1", 1, "broken", "x"], ["x2", 2, "add1", "y"]]
    assert qb.all(flat=True) == ["x1", 1, "add1", "x", "x1", 1, "broken", "x", "x2", 2, "add1", "y"]
    assert qb.dict()[0] == {
        "x": {"label": "x1", "attributes.value": 1},
        "c": {"label": "add1"},
        "x--c": {"label": "x"},
    }
    assert list(qb.iterdict(batch_size=1)) == qb.dict()
    assert list(qb.iterall(batch_size=2)) == qb.all()
    assert qb.all(batch_size=1) == qb.all()
    assert list(qb.iterall(batch_size=None)) == qb.all()
    assert qb.limit(2).all() == [["x1", 1, "add1", "x"], ["x1", 1, "broken", "x"]]
    assert qb.offset(1).all() == [["x1", 1, "broken", "x"], ["x2", 2, "add1", "y"]]
    assert qb.limit(None).offset(None).count() == 3
    assert qb.first() == ["x1", 1, "add1", "x"]

    distinct = QueryBuilder().append(Int, tag="x", project="label").append(CalcFunctionNode)
    assert sorted(distinct.all(flat=True)) == ["r1", "x1", "x1", "x2", "x3", "x3"]
    distinct.distinct()
    assert sorted(distinct.all(flat=True)) == ["r1", "x1", "x2", "x3"]
    assert distinct.count() == 4
    distinct.order_by({"x": {"label": "desc"}})
    assert distinct.all(flat=True) == ["x3", "x2", "x1", "r1"]


def test_iterall_streams_in_batches(graph):
    qb = QueryBuilder().append(Node, project=["id", "*"]).order_by({"Node_1": "id"})
    seen = []
    for pk, node in qb.iterall(batch_size=3):
        assert node.pk == pk
        seen.append(pk)
    assert seen == sorted(graph.values())


# -- ordering ------------------------------------------------------------------------------------------


def test_order_by(graph):
    def ordered(cls: type, order: Any, filters: dict[str, Any] | None = None) -> list[str]:
        qb = QueryBuilder().append(cls, tag="n", filters=filters, project="label")
        return qb.order_by(order).all(flat=True)

    assert ordered(Int, {"n": "id"}) == ["x1", "x2", "x3", "r1", "r2"]
    assert ordered(Int, {"n": {"id": "desc"}}) == ["r2", "r1", "x3", "x2", "x1"]
    assert ordered(Int, {"n": [{"id": {"order": "desc"}}]}) == ["r2", "r1", "x3", "x2", "x1"]
    assert ordered(Int, [{"n": {"attributes.value": "desc"}}, {"n": "id"}]) == ["r2", "x3", "r1", "x2", "x1"]
    assert ordered(Int, {"n": [{"attributes.value": {"cast": "i"}}, {"label": "desc"}]}) == [
        "x1",
        "x2",
        "x3",
        "r1",
        "r2",
    ]
    assert ordered(Int, {Int: ["label"]}) == ["r1", "r2", "x1", "x2", "x3"]
    # by type (numbers, strings, booleans...), then value; text by code point; missing last
    assert ordered(Dict, {"n": ["attributes.a.b", "label"]}) == ["d1", "d2", "d3"]
    assert ordered(Dict, {"n": ["attributes.t", "label"]}) == ["d2", "d1", "d3"]
    assert ordered(Dict, {"n": {"attributes.s": "asc"}}) == ["d2", "d3", "d1"]
    assert ordered(Dict, {"n": [{"attributes.n": "desc"}, "label"]}) == ["d1", "d2", "d3"]
    assert ordered(Dict, {"n": [{"attributes.n": "asc"}, "label"]}) == ["d3", "d1", "d2"]
    mixed = {"label": {"in": ["f", "s", "x1", "d1"]}}
    assert ordered(Data, {"n": ["attributes.value", "label"]}, mixed) == ["x1", "f", "s", "d1"]
    # NULL columns order last ascending, first descending, on both databases
    processes = QueryBuilder().append(ProcessNode, tag="p", project="label")
    assert processes.order_by({"p": ["exit_status", "label"]}).all(flat=True) == [
        "add1",
        "add2",
        "fail",
        "broken",
        "wrap",
    ]
    assert processes.order_by({"p": [{"exit_status": "desc"}, "label"]}).all(flat=True) == [
        "broken",
        "wrap",
        "fail",
        "add1",
        "add2",
    ]
    # an edge field
    edges = (
        QueryBuilder()
        .append(Int, tag="x", project="label")
        .append(CalcFunctionNode, tag="c", project="label")
    )
    assert edges.order_by([{"x--c": {"label": "desc"}}, {"c": "label"}, {"x": "label"}]).all()[:2] == [
        ["x2", "add1"],
        ["x3", "add2"],
    ]


# -- errors, before any statement ----------------------------------------------------------------------


def test_bad_queries_fail_before_the_database(graph):
    def refused(match: str, build: Any) -> None:
        with statements() as seen, pytest.raises(InvalidQueryError, match=match):
            build()
        assert seen == []

    qb = QueryBuilder().append(Int, tag="x")
    refused("unknown tag 'y'", lambda: qb.add_filter("y", {"id": 1}))
    refused(
        "no vertex is tagged 'nope' yet",
        lambda: QueryBuilder().append(Int, tag="a").append(Int, with_incoming="nope"),
    )
    refused("nothing is appended yet", lambda: QueryBuilder().append(Int, with_incoming="a"))
    refused("unknown operator '=~'", lambda: QueryBuilder().append(Int, filters={"label": {"=~": "x"}}))
    refused("unknown operator 'a'", lambda: QueryBuilder().append(Int, filters={"attributes": {"a": 1}}))
    refused("not a node class", lambda: QueryBuilder().append(dict))
    refused("not a node class", lambda: QueryBuilder().append("Int"))  # type: ignore[arg-type]
    refused("unknown field 'lable'", lambda: QueryBuilder().append(Int, filters={"lable": "x"}))
    refused("unknown field 'colour'", lambda: QueryBuilder().append(Int, project="colour"))
    refused(
        "'process_state' is a field of process nodes",
        lambda: QueryBuilder().append(Int, filters={"process_state": "finished"}),
    )
    refused("'label' is not a JSON column", lambda: QueryBuilder().append(Int, filters={"label.x": 1}))
    refused("holds integers, not str", lambda: QueryBuilder().append(Int, filters={"id": "3"}))
    refused("holds datetimes", lambda: QueryBuilder().append(Int, filters={"ctime": {">": "2024-01-01"}}))
    refused(
        "'finised' is not one of created",
        lambda: QueryBuilder().append(ProcessNode, filters={"process_state": "finised"}),
    )
    refused("'inputcalc' is not one of", lambda: qb.append(Node, edge_filters={"type": "inputcalc"}))
    refused(
        "'like' takes a string", lambda: QueryBuilder().append(Int, filters={"attributes.value": {"like": 3}})
    )
    refused(
        "'has_key' applies to JSON values",
        lambda: QueryBuilder().append(Int, filters={"label": {"has_key": "a"}}),
    )
    refused("'in' takes a list", lambda: QueryBuilder().append(Int, filters={"id": {"in": 3}}))
    refused("mix types", lambda: QueryBuilder().append(Int, filters={"attributes.value": {"in": [1, "1"]}}))
    refused(
        "'of_type' takes one of",
        lambda: QueryBuilder().append(Int, filters={"attributes.value": {"of_type": "int"}}),
    )
    refused(
        "'of_length' takes a length",
        lambda: QueryBuilder().append(Int, filters={"attributes.value": {"of_length": -1}}),
    )
    refused(
        "'contains' takes a list of plain values",
        lambda: QueryBuilder().append(Int, filters={"attributes.v": {"contains": [[1]]}}),
    )
    refused(
        "compares a JSON value with a number or a string",
        lambda: QueryBuilder().append(Int, filters={"attributes.v": {">": None}}),
    )
    refused("one relationship per vertex", lambda: qb.append(Int, with_incoming="x", with_outgoing="x"))
    refused("joins with with_node", lambda: qb.append(Group, with_incoming="x"))
    refused("must name a Group vertex", lambda: qb.append(Int, with_group="x"))
    refused("the tag 'x' is in use", lambda: qb.append(Int, tag="x"))
    refused("the first vertex has no edge", lambda: QueryBuilder().append(Int, edge_filters={"label": "x"}))
    refused("an edge has no '\\*'", lambda: qb.append(Node, tag="n2", edge_project="*"))
    refused("projected twice", lambda: QueryBuilder().append(Int, project=["id", "id"]))
    refused("'func' is not supported", lambda: QueryBuilder().append(Int, project={"id": {"func": "count"}}))
    refused("is 'asc' or 'desc'", lambda: qb.order_by({"x": {"id": "up"}}))
    refused("unknown cast", lambda: qb.order_by({"x": {"attributes.value": {"cast": "z"}}}))
    refused("limit\\(\\) takes an int", lambda: qb.limit(-1))
    refused("the query has no vertex", lambda: QueryBuilder().all())
    refused("no vertex of class Float", lambda: qb.append(Int, with_incoming=Float))
    refused("an empty dict of operators", lambda: QueryBuilder().append(Int, filters={"attributes.a": {}}))
    # a refused append leaves the query as it was
    assert qb.count() == 5
    assert [vertex.tag for vertex in qb._state.path] == ["x"]


def test_values_are_bound_parameters(graph):
    nasty = "x1' OR '1'='1"
    qb = QueryBuilder().append(
        Int, filters={"label": nasty, "attributes.value": {"like": "%'; DROP TABLE nodes; --"}}
    )
    sql = qb.as_sql()
    assert "DROP TABLE" not in sql and "OR '1'" not in sql
    assert qb.all() == []
    assert labels(Node, {"label": {"in": ["x1", nasty]}}) == ["x1"]
    key = QueryBuilder().append(Dict, filters={"attributes.weird key": {"has_key": "'; --"}})
    assert "weird key" not in key.as_sql() and key.all() == []


def test_query_builder_constructor_arguments(graph):
    qb = QueryBuilder(
        path=[Int, {"cls": CalcFunctionNode, "tag": "c", "with_incoming": "Int_1"}],
        filters={"Int_1": {"label": "x1"}},
        project={"c": "label"},
        order_by={"c": {"label": "desc"}},
        limit=5,
    )
    assert qb.all(flat=True) == ["broken", "add1"]
    assert "'Int_1' -> 'c'" in repr(qb)
