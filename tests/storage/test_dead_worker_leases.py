"""``release_leases_of_dead_worker``: the supervisor frees a dead worker's leases at once, by host and pid."""

from __future__ import annotations

import time

from plait import submit
from plait.orm import Int
from plait.storage import get_backend


def test_frees_exactly_the_active_leases_of_that_host_and_pid(any_profile):
    from wf_library import Counter

    backend = get_backend()
    pks = [submit(Counter, n=Int(1)).pk for _ in range(7)]
    held, held_by_its_runner, other_pid, other_host, finished, like_host, other_worker = pks
    later = time.time() + 600
    owners = {
        held: "node_1:123:worker:aaaa",
        held_by_its_runner: "node_1:123:run:bbbb",  # any lease of the dead interpreter
        other_pid: "node_1:1234:worker:cccc",  # 123 is a prefix of 1234: must not match
        other_host: "node-2:123:worker:dddd",
        finished: "node_1:123:worker:aaaa",
        like_host: "nodex1:123:worker:eeee",  # "_" is not a wildcard here
        other_worker: "node_1:77:worker:ffff",
    }
    for pk, owner in owners.items():
        assert backend.take_lease(pk, owner, later)
    assert backend.update_process(finished, state="finished")
    backend.upsert_worker("node_1:123:worker:aaaa", "node_1", 123, {})
    backend.upsert_worker("node_1:1234:worker:cccc", "node_1", 1234, {})

    assert backend.release_leases_of_dead_worker("node_1", 123) == sorted([held, held_by_its_runner])

    rows = {row["id"]: row for row in backend.list_processes(pks=pks)}
    for pk in (held, held_by_its_runner):
        assert (rows[pk]["lease_owner"], rows[pk]["lease_expires"]) == (None, None)
    for pk in (other_pid, other_host, like_host, other_worker):
        assert rows[pk]["lease_owner"] == owners[pk]
    assert rows[finished]["lease_owner"] == owners[finished]  # a terminated process is left alone
    assert [w["id"] for w in backend.list_workers()] == ["node_1:1234:worker:cccc"]
    # free means runnable again, now, not when the lease would have expired
    assert sorted(backend.claim_runnable("node_1:999:worker:gggg", 30.0, 10)) == sorted(
        [held, held_by_its_runner]
    )
    assert backend.release_leases_of_dead_worker("node_1", 123) == []
