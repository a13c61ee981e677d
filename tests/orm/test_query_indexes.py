"""The query builder's SQL reads the indexes made for it, and its rows decode as the ORM loads them.

``attributes.value`` (the value of every Int, Float, Str and Bool) has an expression index,
``ix_nodes_attributes_value``, that the migrations make with the expression of
:class:`plait.storage.schema.AttributeValue`; a database uses it only for a query holding the
same expression, the JSON key written as a literal (``query_sql._plain_path``).  Each test runs
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.schema import CreateIndex

from plait.engine.process_function import calcfunction
from plait.orm import (
    CalcFunctionNode,
    Dict,
    Float,
    Int,
    Node,
    ProcessNode,
    QueryBuilder,
    Str,
    WorkFunctionNode,
)
from plait.orm.node import LinkType, store_nodes
from plait.orm.query_sql import _json_text
from plait.storage import get_backend
from plait.storage.schema import nodes


@contextmanager
def _explained() -> Iterator[list[str]]:
    """Inside: every statement the profile's database runs is asked for its plan instead."""
    backend = get_backend()
    engine = backend.database.engine
    prefix = "EXPLAIN QUERY PLAN " if backend.database.is_sqlite else "EXPLAIN "
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> Any:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            if not backend.database.is_sqlite:  # the tables are small: make any index path win
                cursor.execute("SET LOCAL enable_seqscan = off")
            return prefix + statement, parameters
        return statement, parameters

    event.listen(engine, "before_cursor_execute", explain, retval=True)
    try:
        yield plans
    finally:
        event.remove(engine, "before_cursor_execute", explain)


def _plan(qb: QueryBuilder) -> str:
    compiled = qb._compiled()
    with _explained(), get_backend().database.read() as conn:
        rows = conn.execute(compiled.statement()).cursor.fetchall()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.fixture
def values(any_profile: str) -> None:
    """Ints 0..299, each the input ``x`` of a calculation whose output is -i; a few other nodes; analysed."""
    ints = [Int(i) for i in range(300)]
    calcs = [CalcFunctionNode(label="add") for _ in ints]
    outputs = [Int(-i) for i in range(300)]
    store_nodes([*ints, *calcs, *outputs, Float(2.5), Str("hello"), Dict({"value": {"nested": 1}})])
    backend = get_backend()
    links = []
    for x, calc, out in zip(ints, calcs, outputs, strict=True):
        assert calc.pk is not None
        backend.insert_process(
            {"node_id": calc.pk, "state": "finished", "process_label": "add", "exit_status": 0}
        )
        links.append(
            {"input_id": x.pk, "output_id": calc.pk, "link_type": LinkType.INPUT_CALC.value, "label": "x"}
        )
        links.append(
            {"input_id": calc.pk, "output_id": out.pk, "link_type": LinkType.CREATE.value, "label": "result"}
        )
    backend.insert_links(links)
    backend.database.analyze()


def test_the_migrations_make_the_value_index_of_the_schema(any_profile):
    (index,) = [ix for ix in nodes.indexes if ix.name == "ix_nodes_attributes_value"]
    backend = get_backend()
    with backend.database.read() as conn:
        if backend.database.is_sqlite:
            made = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"),
                {"name": index.name},
            ).scalar_one()
            assert made == str(CreateIndex(index).compile(dialect=conn.dialect))
        else:
            made = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": index.name}
            ).scalar_one()
            assert "(attributes -> 'value'::text)" in made and "IS NOT NULL" in made, made


def test_a_filter_on_attributes_value_reads_the_value_index(values):
    qb = QueryBuilder().append(Int, filters={"attributes.value": {">": 290}}, project="attributes.value")
    assert "ix_nodes_attributes_value" in _plan(qb)
    assert sorted(qb.all(flat=True)) == list(range(291, 300))
    equal = QueryBuilder().append(Node, filters={"attributes.value": 7}, project="attributes.value")
    assert "ix_nodes_attributes_value" in _plan(equal)
    assert equal.all(flat=True) == [7]
    assert QueryBuilder().append(Node, filters={"attributes.value": {"<": -297}}).count() == 2


def test_the_inputs_of_calculations_by_value_start_from_the_value_index(values):
    """The shape of bench_queries' q2: the planner starts from the values, not from every calculation."""
    qb = QueryBuilder()
    qb.append(Int, tag="x", filters={"attributes.value": {">": 290}}, project="attributes.value")
    qb.append(CalcFunctionNode, tag="c", with_incoming="x", edge_filters={"label": "x"})
    qb.append(Int, with_incoming="c", project="attributes.value")
    plan = _plan(qb)
    assert "ix_nodes_attributes_value" in plan, plan
    assert sorted(qb.all()) == [[x, -x] for x in range(291, 300)]


@calcfunction
def _add(x: Int, y: Int) -> Int:
    return Int(x.value + y.value)


def _count_plan(qb: QueryBuilder) -> str:
    compiled = qb._compiled(counting=True)
    with _explained(), get_backend().database.read() as conn:
        rows = conn.execute(compiled.count_statement()).cursor.fetchall()
    return "\n".join(str(row[-1]) for row in rows)


def test_processes_by_label_state_and_exit_status_are_read_from_their_index_alone(values):
    """bench_queries' q1: each process row repeats its node's type, so the count needs no node row."""
    backend = get_backend()
    other = [WorkFunctionNode(label="add"), CalcFunctionNode(label="add"), CalcFunctionNode(label="sub")]
    store_nodes(other)
    for node, exit_status in zip(other, (0, 1, 0), strict=True):
        assert node.pk is not None
        backend.insert_process(
            {"node_id": node.pk, "state": "finished", "process_label": node.label, "exit_status": exit_status}
        )
    filters = {
        "attributes.process_state": "finished",
        "attributes.exit_status": 0,
        "attributes.process_label": "add",
    }
    calcs = QueryBuilder().append(CalcFunctionNode, filters=filters)
    plan = _count_plan(calcs)
    assert "nodes" not in plan, plan
    if backend.database.is_sqlite:  # PostgreSQL picks among its indexes by the (tiny) tables' statistics
        assert "COVERING INDEX ix_processes_label_state" in plan, plan
    assert calcs.count() == 300
    assert QueryBuilder().append(WorkFunctionNode, filters=filters).count() == 1
    assert QueryBuilder().append(ProcessNode, filters=filters).count() == 301
    assert QueryBuilder().append(CalcFunctionNode, filters={"process_label": "add"}).count() == 301
    # projections of process columns and the pk come from the same rows
    rows = QueryBuilder().append(
        CalcFunctionNode, filters={"exit_status": 1}, project=["id", "node_type", "attributes.process_label"]
    )
    assert "nodes" not in rows.as_sql()
    assert rows.all() == [[other[1].pk, "process.calcfunction", "add"]]
    # a vertex that reads a node column keeps its node rows
    labelled = QueryBuilder().append(CalcFunctionNode, filters={**filters, "label": "add"}, project="id")
    assert "nodes" in labelled.as_sql() and len(labelled.all()) == 300


def test_recent_processes_are_read_from_their_ctime_index_alone(values):
    """bench_queries' q5 (``process list`` of the last day): the process rows repeat their node's ctime."""
    import datetime as dt

    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    fields = ["id", "ctime", "attributes.process_label", "attributes.process_state", "attributes.exit_status"]
    recent = QueryBuilder().append(ProcessNode, tag="p", filters={"ctime": {">": since}}, project=fields)
    recent.order_by({"p": {"ctime": "asc"}})
    plan = _plan(recent)
    assert "nodes" not in plan, plan
    if get_backend().database.is_sqlite:
        assert "ix_processes_ctime" in plan, plan
    rows = recent.all()
    assert len(rows) == 300 and all(ctime > since for _, ctime, *_ in rows)
    assert [ctime for _, ctime, *_ in rows] == sorted(ctime for _, ctime, *_ in rows)
    # the same values as the nodes' own (read through a vertex that needs the node rows)
    by_node = QueryBuilder().append(
        ProcessNode, filters={"ctime": {">": since}, "label": "add"}, project=["id", "ctime"]
    )
    assert "nodes" in by_node.as_sql()
    assert sorted(by_node.all()) == sorted([pk, ctime] for pk, ctime, *_ in rows)
    assert QueryBuilder().append(ProcessNode, filters={"ctime": {"<": since}}).count() == 0
    # a whole node built from the joined rows has its process row's times as datetimes
    node = QueryBuilder().append(CalcFunctionNode, project="*").first(flat=True)
    assert node._process_row["ctime"] == node.ctime and isinstance(node._process_row["ctime"], dt.datetime)


def test_each_process_row_repeats_its_node_type_and_ctime(values):
    """Whatever wrote them (the engine, an archive import), process rows carry their node's type and ctime."""
    import plait

    plait.run(_add, x=Int(1), y=Int(2))
    with get_backend().database.read() as conn:
        differ = conn.execute(
            text(
                "SELECT count(*) FROM processes JOIN nodes ON nodes.id = processes.node_id "
                "WHERE processes.node_type != nodes.node_type OR processes.ctime != nodes.ctime"
            )
        ).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM processes")).scalar_one()
    assert differ == 0 and total == 301


def test_a_key_that_is_not_a_plain_name_stays_bound(values):
    qb = QueryBuilder().append(Dict, filters={"attributes.value.nested": 1}, project="attributes.value")
    assert qb.all(flat=True) == [{"nested": 1}]
    odd = QueryBuilder().append(Dict, filters={"attributes.it's": {"==": 1}})
    assert "it's" not in odd.as_sql() and odd.all() == []


def test_json_text_reads_what_json_loads_reads():
    for value in ({}, {"value": 900001}, {"a": [1, 2.5, "x", None, True]}, [], "text", 3, None):
        assert _json_text(json.dumps(value, separators=(",", ":"))) == value
    assert _json_text(None) is None
    assert _json_text(' {"a": 1} ') == {"a": 1}  # white space: read by json.loads
    with pytest.raises(json.JSONDecodeError):
        _json_text('{"a": 1} trailing')


def test_a_walk_starts_from_its_anchor(values):
    """SQLite reads the anchor first and joins the walk to it (``_WalkJoin``): with statistics it
    otherwise put the walk outside and built a Bloom filter over the anchor's nodes each time."""
    (head,) = QueryBuilder().append(Int, filters={"attributes.value": 5}, project="id").all(flat=True)
    qb = QueryBuilder()
    qb.append(Node, filters={"id": head}, tag="head")
    qb.append(Node, with_ancestors="head", project="attributes.value")
    if get_backend().database.is_sqlite:
        plan = _plan(qb).splitlines()
        assert not any("BLOOM" in line for line in plan), plan
        v0 = [i for i, line in enumerate(plan) if line.startswith("SEARCH v0")]
        walk = [i for i, line in enumerate(plan) if line.startswith("SCAN walk")]  # the last: the join
        assert v0 and v0[0] < walk[-1], plan
    assert sorted(qb.all(flat=True), key=lambda v: (v is not None, v)) == [None, -5]


def test_storage_maintenance_analyses_the_database(any_profile):
    """``plait storage maintain`` leaves the statistics the planner reads (an SQLite file has none before)."""
    store_nodes([Int(i) for i in range(20)])
    backend = get_backend()
    statistics = (
        "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'nodes'"
        if backend.database.is_sqlite
        else "SELECT count(*) FROM pg_stats WHERE tablename = 'nodes'"
    )

    def count() -> int:
        with backend.database.read() as conn:
            try:
                return int(conn.execute(text(statistics)).scalar_one())
            except Exception:  # SQLite: no sqlite_stat1 table before the first ANALYZE
                return 0

    if backend.database.is_sqlite:
        assert count() == 0
    backend.maintain_storage(grace_seconds=0)
    assert count() > 0
