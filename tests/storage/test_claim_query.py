"""The SQLite claim query finds exactly the runnable processes, oldest first, as the plain one does."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from plait import submit
from plait.orm import Int
from plait.storage import get_backend
from plait.storage.backend import _CLAIM_CANDIDATES_SQLITE, _runnable
from plait.storage.schema import processes

ROWS = 12
NOW = time.time()

row = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["created", "running", "waiting", "finished", "excepted", "killed"]),
        "submitted": st.booleans(),
        "paused": st.booleans(),
        "lease_owner": st.sampled_from([None, "host:1:worker:a"]),
        "lease_expires": st.sampled_from([None, NOW - 60, NOW + 60]),
        "wake_at": st.sampled_from([None, NOW - 5, NOW + 5]),
        "waits_on": st.lists(st.integers(0, ROWS - 1), max_size=2),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=ROWS, max_size=ROWS), limit=st.integers(1, ROWS + 1))
def test_the_claim_query_is_the_runnable_condition(rows, limit, sqlite_processes):
    backend, pks = sqlite_processes
    with backend.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM process_waits")
        for pk, values in zip(pks, rows, strict=True):
            fields = {k: v for k, v in values.items() if k != "waits_on"}
            conn.execute(processes.update().where(processes.c.node_id == pk).values(**fields))
            for child in dict.fromkeys(values["waits_on"]):
                if pks[child] != pk:
                    conn.exec_driver_sql(
                        "INSERT INTO process_waits (parent_id, child_id) VALUES (?, ?)", (pk, pks[child])
                    )
        plain = select(processes.c.node_id).where(_runnable(NOW)).order_by(processes.c.node_id)
        expected = [r[0] for r in conn.execute(plain.limit(limit))]
        found = [r[0] for r in conn.execute(_CLAIM_CANDIDATES_SQLITE, {"now": NOW, "limit": limit})]
    assert found == expected


def test_the_claim_query_reads_no_parked_or_queued_row_it_does_not_return(sqlite_processes):
    """With every row created and unleased, SQLite reads them from the index in pk order: the plan
    has no sort of the whole state (which made each claim read every queued row)."""
    backend, _ = sqlite_processes
    with backend.database.read() as conn:
        sql = str(
            _CLAIM_CANDIDATES_SQLITE.params(now=NOW, limit=5).compile(
                conn, compile_kwargs={"literal_binds": True}
            )
        )
        plan = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    created_no_lease = [p for p in plan if "lease_expires=?" in p]
    assert len(created_no_lease) == 3, plan  # one index search with equality on every column, per state


@pytest.fixture
def sqlite_processes():
    from wf_library import Counter

    backend = get_backend()
    assert backend.database.is_sqlite
    return backend, [submit(Counter, n=Int(1)).pk for _ in range(ROWS)]
