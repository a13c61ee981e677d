"""``processes.waits_on_children`` stays equal to "has a row in ``process_waits``", under concurrency too.

The daemon's claim reads the flag (through ``ix_processes_runnable``) instead of probing the waits
of every parked process, so a flag left set with no wait behind it would park its process forever.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from plait import submit
from plait.orm import Int
from plait.storage import get_backend
from plait.storage.schema import processes

OWNER = "host:1:worker:test"


def _parked_parent_of_two_ended_children() -> tuple[int, int, int]:
    """A parent parked on two children that have just ended (their waits not yet released)."""
    from wf_library import Counter

    backend = get_backend()
    parent, first, second = (submit(Counter, n=Int(1)).pk for _ in range(3))
    with backend.transaction() as conn:
        conn.execute(
            processes.update()
            .where(processes.c.node_id == parent)
            .values(state="running", lease_owner=OWNER, lease_expires=2e9)
        )
    assert backend.park(parent, OWNER, [first, second], "waiting for two") is True
    with backend.transaction() as conn:
        conn.execute(
            processes.update().where(processes.c.node_id.in_([first, second])).values(state="finished")
        )
    return parent, first, second


def _flag(pk: int) -> bool:
    with get_backend().database.read() as conn:
        return bool(
            conn.execute(select(processes.c.waits_on_children).where(processes.c.node_id == pk)).scalar_one()
        )


def test_the_last_child_to_end_clears_its_parents_flag(any_profile):
    backend = get_backend()
    parent, first, second = _parked_parent_of_two_ended_children()
    assert _flag(parent) and backend.claim_runnable(OWNER, 30, 10) == []
    assert backend.release_waits_on(first) == []
    assert _flag(parent)
    assert backend.release_waits_on(second) == [parent]
    assert not _flag(parent)
    assert backend.claim_runnable(OWNER, 30, 10) == [parent]


def test_two_children_ending_at_once_leave_their_parent_runnable(postgres_profile):
    """Each child's transaction still sees the other's wait; neither may leave the flag set.

    Both transactions delete their child's wait and look for what is left before either commits
    (a barrier holds them open), as two workers ending the children at the same moment do.  On
    SQLite one writer at a time makes this interleaving impossible.
    """
    backend = get_backend()
    parent, first, second = _parked_parent_of_two_ended_children()
    barrier = threading.Barrier(2, timeout=20)
    woken: list[list[int]] = []
    errors: list[BaseException] = []

    def end(child: int) -> None:
        try:
            with backend.transaction():
                woken.append(backend.release_waits_on(child))
                barrier.wait()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(child,)) for child in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert woken == [[], []]  # neither saw the last wait go: the flag is what wakes the parent
    assert not _flag(parent)
    assert backend.claim_runnable(OWNER, 30, 10) == [parent]


def test_the_daemons_housekeeping_clears_a_flag_with_no_wait_behind_it(any_profile):
    """A crash between a child's commit and the clearing of its parent's flag (PostgreSQL)."""
    backend = get_backend()
    parent, _, _ = _parked_parent_of_two_ended_children()
    with backend.transaction() as conn:  # the waits went, the flag stayed
        conn.exec_driver_sql("DELETE FROM process_waits")
    assert _flag(parent) and backend.claim_runnable(OWNER, 30, 10) == []
    backend.clear_stale_waits()
    assert not _flag(parent)
    assert backend.claim_runnable(OWNER, 30, 10) == [parent]
