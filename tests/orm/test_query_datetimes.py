"""Datetimes read by the QueryBuilder: the same instants, aware and in UTC, however they are decoded.

On SQLite the QueryBuilder reads datetime columns as their stored text and parses them with
``datetime.fromisoformat`` (see ``query_sql._utc_text``), both for a projected column and for the
rows behind ``project='*'``; these tests hold that path to what the ORM loads.
"""

from __future__ import annotations

import datetime as dt

from plait.orm import CalcFunctionNode, Group, Int, QueryBuilder, load_node
from plait.orm.query_sql import _utc_text
from plait.storage import get_backend


def test_text_of_a_datetime_becomes_an_aware_utc_datetime():
    assert _utc_text(None) is None
    naive = _utc_text("2026-12-01 18:25:04.172914")
    assert naive == dt.datetime(2026, 12, 1, 18, 25, 4, 172914, tzinfo=dt.UTC)
    # text with an offset (not what plait writes, but a row written by another tool) keeps its instant
    shifted = _utc_text("2026-12-02 03:25:04+09:00")
    assert shifted == dt.datetime(2026, 12, 1, 18, 25, 4, tzinfo=dt.UTC)
    assert shifted is not None and shifted.utcoffset() == dt.timedelta(0)
    assert _utc_text("2026-12-01 18:25:04") == dt.datetime(2026, 12, 1, 18, 25, 4, tzinfo=dt.UTC)


def test_projected_and_star_datetimes_equal_what_the_orm_loads(any_profile):
    x = Int(3).store()
    calc = CalcFunctionNode(label="dt-check").store()
    get_backend().insert_process(
        {"node_id": calc.pk, "state": "finished", "process_label": "f", "exit_status": 0}
    )
    group = Group("dt-group").store()
    group.add_nodes([x])
    loaded = load_node(x.pk)

    ctime, mtime = QueryBuilder().append(Int, filters={"id": x.pk}, project=["ctime", "mtime"]).one()
    assert (ctime, mtime) == (loaded.ctime, loaded.mtime)
    for value in (ctime, mtime):
        assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)

    (star,) = QueryBuilder().append(Int, filters={"id": x.pk}).one()
    assert (star.ctime, star.mtime) == (loaded.ctime, loaded.mtime)

    (node,) = QueryBuilder().append(CalcFunctionNode, filters={"id": calc.pk}).one()
    assert node.ctime == load_node(calc.pk).ctime and node.ctime.utcoffset() == dt.timedelta(0)
    assert node.process_state == "finished"  # the process row (and its mtime) came with it

    (found,) = QueryBuilder().append(Group, filters={"label": "dt-group"}).one()
    assert found.ctime == group.ctime and found.ctime.utcoffset() == dt.timedelta(0)

    # a filter with the value read back finds the same row (the text round trip loses nothing)
    assert QueryBuilder().append(Int, filters={"ctime": ctime, "id": x.pk}).count() == 1
