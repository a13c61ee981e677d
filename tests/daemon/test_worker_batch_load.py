"""A daemon worker rebuilds what it has just claimed in a batch: one read transaction for all the
rows, one commit that moves the never-started ones to ``running`` (instead of a round trip and a
commit each: that per-process overhead was most of the time to park 10,000 parents).

In-process, with the worker's own methods against a real SQLite profile; no daemon is started.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from plait import submit
from plait.daemon.worker import Worker
from plait.engine import lifecycle
from plait.engine.placement import Daemon
from plait.engine.runner import Runner
from plait.orm import Int, ProcessState
from plait.storage import get_backend
from wf_library import Counter


class _Statements:
    """Counts the begins and commits of the profile's engine while in the ``with`` block."""

    def __init__(self) -> None:
        self.engine = get_backend().database.engine
        self.begins = self.commits = 0

    def _begin(self, _conn) -> None:
        self.begins += 1

    def _commit(self, _conn) -> None:
        self.commits += 1

    def __enter__(self) -> _Statements:
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "commit", self._commit)


def _give_runner(worker: Worker) -> None:
    """(on the running loop) Give ``worker`` a daemon runner (30 s leases), without a daemon."""
    loop = asyncio.get_running_loop()
    worker.runner = Runner(loop, owner=worker.worker_id, lease_seconds=30.0, placement=Daemon())


def test_claimed_processes_are_rebuilt_in_one_read_and_started_in_one_commit(any_profile):
    pks = [submit(Counter, n=Int(2)).pk for _ in range(12)]
    worker = Worker(slots=50)

    async def main():
        _give_runner(worker)
        claimed = lifecycle.claim_runnable(worker.worker_id, 30.0, 50)
        assert sorted(claimed) == sorted(pks)
        with _Statements() as counted:
            loaded = worker._load_claimed(claimed)
        return claimed, loaded, counted

    claimed, loaded, counted = asyncio.run(main())
    assert [pk for pk, _, _ in loaded] == claimed
    assert all(process is not None and exc is None for _, process, exc in loaded), loaded
    # one shared read transaction and one write transaction: not two reads and a commit a process
    assert counted.commits == 1, counted.commits
    assert counted.begins == 2, counted.begins
    rows = {pk: get_backend().get_process(pk) for pk in pks}
    assert {row["state"] for row in rows.values()} == {"running"}
    assert {row["lease_owner"] for row in rows.values()} == {worker.worker_id}
    # each process's cached row says so too: its runner does not commit `running` a second time
    assert {process.node.process_state for _, process, _ in loaded} == {ProcessState.RUNNING}


def test_a_claimed_process_that_another_owner_took_meanwhile_is_not_started_by_the_batch():
    pks = [submit(Counter, n=Int(2)).pk for _ in range(3)]
    worker = Worker(slots=50)

    async def main():
        _give_runner(worker)
        claimed = lifecycle.claim_runnable(worker.worker_id, 30.0, 50)
        # the lease of one is lost (presumed dead, taken over) between the claim and the rebuild
        lifecycle.take_lease(pks[1], "someone-else", 30.0, force=True)
        return worker._load_claimed(claimed)

    loaded = {pk: process for pk, process, _ in asyncio.run(main())}
    states = {pk: get_backend().get_process(pk)["state"] for pk in pks}
    assert states == {pks[0]: "running", pks[1]: "created", pks[2]: "running"}
    # its own first commit then meets the refusal (and the runner lets go of it), as before
    assert loaded[pks[1]].node.process_state is ProcessState.CREATED


def test_the_reads_of_a_batch_do_not_grow_with_its_size(any_profile):
    """The nodes, process rows and inputs of a claimed batch are read in a fixed number of queries
    (three), not a few per process, and one UPDATE starts them all; each process still gets its
    own inputs."""
    pks = [submit(Counter, n=Int(i + 1)).pk for i in range(12)]
    worker = Worker(slots=50)
    engine = get_backend().database.engine
    selects: list[str] = []
    updates: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        verb = statement.lstrip().upper()
        if verb.startswith("SELECT"):
            selects.append(statement)
        elif verb.startswith("UPDATE"):
            updates.append(statement)

    async def main():
        _give_runner(worker)
        claimed = lifecycle.claim_runnable(worker.worker_id, 30.0, 50)
        event.listen(engine, "before_cursor_execute", count)
        try:
            return worker._load_claimed(claimed)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    loaded = asyncio.run(main())
    assert len(selects) == 3, "\n".join(selects)
    assert len(updates) == 1, "\n".join(updates)
    assert {get_backend().get_process(pk)["state"] for pk in pks} == {"running"}
    by_pk = {pk: process for pk, process, _ in loaded}
    assert {pk: by_pk[pk].inputs["n"].value for pk in pks} == {pk: i + 1 for i, pk in enumerate(pks)}


def test_a_claimed_pk_with_no_node_is_reported_without_stopping_the_batch():
    pks = [submit(Counter, n=Int(2)).pk for _ in range(2)]
    worker = Worker(slots=50)

    async def main():
        _give_runner(worker)
        return worker._load_claimed([pks[0], 10**9, pks[1]])

    loaded = asyncio.run(main())
    assert [pk for pk, _, _ in loaded] == [pks[0], 10**9, pks[1]]
    assert loaded[0][1] is not None and loaded[2][1] is not None
    assert loaded[1][1] is None and "no node with pk 1000000000" in str(loaded[1][2])
