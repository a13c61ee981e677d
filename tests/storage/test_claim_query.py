"""The SQLite claim query finds exactly the runnable processes, oldest first, as the plain one does."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from plait import submit
from plait.orm import Int
from plait.storage import get_backend
from plait.storage.backend import _CLAIM_CANDIDATES_SQLITE, _runnable, utcnow
from plait.storage.schema import process_waits, processes

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
            children = [pks[child] for child in dict.fromkeys(values["waits_on"]) if pks[child] != pk]
            fields["waits_on_children"] = bool(children)  # as the backend's wait methods write it
            conn.execute(processes.update().where(processes.c.node_id == pk).values(**fields))
            for child in children:
                conn.exec_driver_sql(
                    "INSERT INTO process_waits (parent_id, child_id) VALUES (?, ?)", (pk, child)
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
    # a parked process (waiting for children) is skipped by the index, not read to probe its waits
    assert all("waits_on_children=?" in p for p in created_no_lease), plan
    assert not any("process_waits" in p for p in plan), plan


def test_among_thousands_parked_and_queued_every_part_reads_the_runnable_index():
    """With the statistics of 2,000 parked parents and 2,000 queued children (as a daemon has them),
    each part of the claim reads ix_processes_runnable, the lease ranges too: ordered by the pk
    itself, SQLite walked ix_processes_state in pk order through every queued row instead."""
    backend = get_backend()
    assert backend.database.is_sqlite
    now = utcnow()
    kind = "process.workflow.workchain"
    row = {"node_type": kind, "label": "", "description": "", "ctime": now, "mtime": now, "attributes": {}}
    count = 2000
    with backend.transaction() as conn:
        pks = backend.insert_nodes(
            [{**row, "uuid": str(uuid.uuid4()), "extras": {}, "files": {}} for _ in range(2 * count)]
        )
        parents, children = pks[:count], pks[count:]
        fixed = {"process_label": "W", "submitted": True, "mtime": now, "node_type": kind, "ctime": now}
        conn.execute(
            insert(processes),
            [{**fixed, "node_id": p, "state": "waiting", "waits_on_children": True} for p in parents]
            + [{**fixed, "node_id": c, "state": "created", "waits_on_children": False} for c in children],
        )
        conn.execute(
            insert(process_waits),
            [{"parent_id": p, "child_id": c} for p, c in zip(parents, children, strict=True)],
        )
    backend.database.analyze()
    with backend.database.read() as conn:
        compiled = _CLAIM_CANDIDATES_SQLITE.compile(conn)
        params = compiled.construct_params({"now": time.time(), "limit": 25})
        positional = [params[name] for name in compiled.positiontup]
        plan = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(positional))]
        found = [r[0] for r in conn.execute(_CLAIM_CANDIDATES_SQLITE, {"now": time.time(), "limit": 25})]
    searches = [p for p in plan if p.startswith(("SEARCH", "SCAN processes"))]
    assert len(searches) == 9 and all("ix_processes_runnable" in p for p in searches), plan
    assert found == children[:25]


@pytest.fixture
def sqlite_processes():
    from wf_library import Counter

    backend = get_backend()
    assert backend.database.is_sqlite
    return backend, [submit(Counter, n=Int(1)).pk for _ in range(ROWS)]
