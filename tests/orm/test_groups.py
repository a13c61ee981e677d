"""Groups: storing, unique labels (also under races), membership in bulk, loading; SQLite and PostgreSQL."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import delete, event, text

from plait.orm import (
    Dict,
    Group,
    Int,
    ModificationNotAllowed,
    NotExistentError,
    StoringNotAllowed,
    Str,
    load_group,
    load_node,
)
from plait.orm.node import store_nodes
from plait.storage import get_backend
from plait.storage.backend import StorageBackend
from plait.storage.schema import nodes as nodes_table


def _stored(*values: int) -> list[Int]:
    return [Int(v).store() for v in values]


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements the backend's engine sends while the block runs (an executemany counts once)."""
    seen: list[str] = []
    engine = get_backend().database.engine

    def _record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _record)


# -- storing and loading --------------------------------------------------------------------------


def test_store_and_load_by_label_pk_and_uuid(any_profile):
    group = Group(label="relaxations", description="batch 7", extras={"batch": 7}).store()
    assert group.pk is not None and group.is_stored and group.type_string == "core"
    assert group.ctime is not None and group.time == group.ctime and group.ctime.tzinfo is not None
    assert group.user_email == "user@localhost"
    for identifier in ("relaxations", group.pk, str(group.pk), group.uuid, group.uuid[:8]):
        loaded = load_group(identifier)
        assert loaded == group and loaded.pk == group.pk
        assert (loaded.label, loaded.description, loaded.extras) == ("relaxations", "batch 7", {"batch": 7})
    assert load_group(label="relaxations") == Group.get(label="relaxations") == Group.get(pk=group.pk)
    assert load_group(uuid=group.uuid[:6]) == group
    assert group.store() is group  # storing again changes nothing


def test_a_label_is_found_before_a_pk_of_the_same_digits(any_profile):
    first = Group("first").store()
    numbered = Group(str(first.pk + 1)).store()  # labelled like the pk of the next group
    other = Group("other").store()
    assert other.pk == first.pk + 2
    assert load_group(str(first.pk + 1)) == numbered  # the label wins for a string
    assert load_group(first.pk + 1) == numbered  # and the int is the pk, which is also this group
    assert load_group(str(first.pk)) == first  # no such label: the digits are a pk


def test_load_errors_name_the_identifier(any_profile):
    Group("one").store()
    with pytest.raises(NotExistentError, match="no group with label, pk or uuid 'nope' in profile"):
        load_group("nope")
    with pytest.raises(NotExistentError, match="no group with pk 999"):
        load_group(999)
    with pytest.raises(NotExistentError, match="no group with label 'nope'"):
        Group.get(label="nope")
    with pytest.raises(ValueError, match="exactly one of identifier, pk, uuid, label"):
        load_group("one", pk=1)
    with pytest.raises(ValueError, match="got none"):
        load_group()
    with pytest.raises(TypeError, match="not a float"):
        load_group(1.5)  # type: ignore[arg-type]


def test_an_ambiguous_uuid_prefix_is_refused(any_profile):
    first, second = Group("a"), Group("b")
    first._uuid = "abcd0000-0000-4000-8000-000000000001"
    second._uuid = "abcd0000-0000-4000-8000-000000000002"
    first.store()
    second.store()
    with pytest.raises(LookupError, match="uuid prefix 'abcd0000' matches more than one group"):
        load_group("abcd0000")
    assert load_group("abcd0000-0000-4000-8000-000000000002") == second


@pytest.mark.parametrize(
    ("label", "error", "match"),
    [
        ("", ValueError, "cannot be empty"),
        ("   ", ValueError, "cannot be empty"),
        (" padded", ValueError, "begins or ends with white space"),
        ("x" * 256, ValueError, "256 characters long"),
        (5, TypeError, "not a int"),
    ],
)
def test_bad_labels_are_refused_before_storing(label, error, match):
    with pytest.raises(error, match=match):
        Group(label)


def test_extras_must_be_json():
    with pytest.raises(StoringNotAllowed, match="extra 'when' of group 'g'"):
        Group("g", extras={"when": object()})


def test_a_taken_label_is_a_clear_error_and_stores_nothing(any_profile):
    first = Group("taken").store()
    with pytest.raises(
        StoringNotAllowed, match=rf"a group labelled 'taken' exists already \(pk {first.pk}\)"
    ):
        Group("taken", description="another").store()
    assert [row["description"] for row in get_backend().list_groups()] == [""]


def test_get_or_create(any_profile):
    made, created = Group.get_or_create("fresh", description="new")
    assert created and made.is_stored and made.description == "new"
    again, created = Group.get_or_create("fresh", description="ignored")
    assert not created and again == made and again.description == "new"


# -- relabel, description, extras, delete ---------------------------------------------------------


def test_relabel_describe_and_extras_are_written_at_once(any_profile):
    group = Group("old").store()
    group.label = "new"
    group.description = "what it holds"
    group.set_extra("tags", ["a", "b"])
    group.set_extra("n", 1)
    group.delete_extra("n")
    group.delete_extra("never-there")
    loaded = load_group(group.pk)
    assert (loaded.label, loaded.description, loaded.extras) == ("new", "what it holds", {"tags": ["a", "b"]})
    assert loaded.get_extra("tags") == ["a", "b"] and loaded.get_extra("n", 0) == 0
    with pytest.raises(NotExistentError):
        load_group("old")
    with pytest.raises(StoringNotAllowed, match="extra 'bad' of group 'new'"):
        group.set_extra("bad", float("nan"))


def test_relabel_to_a_taken_label_changes_nothing(any_profile):
    Group("a").store()
    second = Group("b").store()
    with pytest.raises(
        StoringNotAllowed, match="cannot relabel group 'b' to 'a': a group labelled 'a' exists"
    ):
        second.label = "a"
    assert second.label == "b" and load_group(second.pk).label == "b"
    with pytest.raises(ValueError, match="cannot be empty"):
        second.label = ""


def test_an_unstored_group_is_relabelled_in_memory_and_refuses_membership():
    group = Group("draft")
    group.label = "final"
    assert group.label == "final" and group.pk is None
    assert group.count() == 0 and list(group.nodes) == [] and group.is_empty
    with pytest.raises(ModificationNotAllowed, match="cannot add nodes to group 'final': it is not stored"):
        group.add_nodes([])
    with pytest.raises(ModificationNotAllowed, match="cannot delete group 'final'"):
        group.delete()


def test_delete_keeps_the_nodes(any_profile):
    group = Group("doomed").store()
    members = _stored(1, 2)
    group.add_nodes(members)
    group.delete()
    assert group.pk is None
    with pytest.raises(NotExistentError):
        load_group("doomed")
    assert [load_node(n.pk).value for n in members] == [1, 2]
    assert get_backend().count_group_nodes(members[0].pk) == 0  # no membership row outlives the group
    again = Group("doomed").store()  # the label is free again
    assert again.count() == 0


# -- membership -----------------------------------------------------------------------------------


def test_add_remove_count_clear(any_profile):
    group = Group("members").store()
    a, b, c = _stored(1, 2, 3)
    group.add_nodes(a)
    group.add_nodes([a, b])  # a twice: a no-op
    group.add_nodes((b, c))
    assert group.count() == 3 and len(group.nodes) == 3 and not group.is_empty
    assert [n.pk for n in group.nodes] == sorted([a.pk, b.pk, c.pk])
    group.remove_nodes(b)
    group.remove_nodes([b])  # not a member any more: ignored
    assert [n.value for n in group.nodes] == [1, 3]
    group.clear()
    assert group.count() == 0 and group.is_empty and list(group.nodes) == []
    assert load_node(a.pk).value == 1  # clearing removes membership only


def test_nodes_come_back_as_their_classes(any_profile):
    from plait import calcfunction, run_get_node

    @calcfunction
    def double(x):
        return x * 2

    processes = [run_get_node(double, x=Int(i))[1] for i in range(3)]
    group = Group("mixed").store()
    group.add_nodes([Dict({"k": 1}).store(), Str("s").store(), *processes])
    with _statements() as seen:
        loaded = list(group.nodes)
    assert [type(n).__name__ for n in loaded] == ["CalcFunctionNode"] * 3 + ["Dict", "Str"]
    assert [n.process_state.value for n in loaded[:3]] == ["finished"] * 3
    assert [n.exit_status for n in loaded[:3]] == [0] * 3 and loaded[3].value == {"k": 1}
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len([s for s in selects if "FROM processes" in s]) == 1  # not a query per process node
    assert len(selects) <= 3  # list()'s len(), the page of node rows, their process rows


def test_indexing_and_slicing(any_profile):
    group = Group("ordered").store()
    members = _stored(10, 11, 12, 13)
    group.add_nodes(members)
    view = group.nodes
    assert view[0].value == 10 and view[-1].value == 13
    assert [n.value for n in view[1:3]] == [11, 12] and [n.value for n in view[::2]] == [10, 12]
    assert view[5:] == []
    with pytest.raises(IndexError, match="index 4 out of range"):
        view[4]
    assert [*view.pks()] == [n.pk for n in members]


def test_bad_members_are_refused_with_the_reason(any_profile):
    group = Group("strict").store()
    stored = Int(1).store()
    with pytest.raises(ValueError, match=r"cannot add nodes to group 'strict': 1 node\(s\) are not stored"):
        group.add_nodes([stored, Int(2)])
    with pytest.raises(TypeError, match="item 1 is a int, not a node"):
        group.add_nodes([stored, 5])  # type: ignore[list-item]
    assert group.count() == 0  # nothing of a refused call is added


def test_a_deleted_node_is_refused_and_nothing_is_added(any_profile):
    group = Group("ghosts").store()
    alive, gone = _stored(1, 2)
    with get_backend().transaction() as conn:
        conn.execute(delete(nodes_table).where(nodes_table.c.id == gone.pk))
    with pytest.raises(NotExistentError, match=rf"no node with pk {gone.pk} in profile .*nothing added"):
        group.add_nodes([alive, gone])
    assert group.count() == 0


def test_a_group_deleted_elsewhere_refuses_new_members(any_profile):
    stale = Group("gone").store()
    load_group("gone").delete()  # as another process would
    with pytest.raises(NotExistentError, match="cannot add nodes to group 'gone': it no longer exists"):
        stale.add_nodes(_stored(1))
    reused = Group("source").store()  # on SQLite it gets the deleted group's pk
    with pytest.raises(NotExistentError, match="it no longer exists"):
        stale.add_nodes_from(reused)
    for change in (
        lambda: setattr(stale, "label", "renamed"),
        lambda: setattr(stale, "description", "changed"),
        lambda: stale.set_extra("k", 1),
        lambda: stale.remove_nodes([]),
        stale.clear,
        stale.delete,
    ):
        with pytest.raises(NotExistentError, match="group 'gone': it no longer exists"):
            change()
    assert load_group("source").label == "source" and load_group("source").description == ""


def test_deleting_a_node_removes_it_from_its_groups(any_profile):
    group = Group("shrinks").store()
    keep, drop = _stored(1, 2)
    group.add_nodes([keep, drop])
    with get_backend().transaction() as conn:
        conn.execute(delete(nodes_table).where(nodes_table.c.id == drop.pk))
    assert group.count() == 1 and [n.pk for n in group.nodes] == [keep.pk]


def test_add_nodes_from_another_group(any_profile):
    source, target = Group("source").store(), Group("target").store()
    a, b, c = _stored(1, 2, 3)
    source.add_nodes([a, b])
    target.add_nodes([b, c])
    assert target.add_nodes_from(source) == 1  # b was there already
    assert [n.value for n in target.nodes] == [1, 2, 3] and source.count() == 2


def test_list_groups_counts_and_filters(any_profile):
    empty, full = Group("empty").store(), Group("full").store()
    Group("tool-made", type_string="tool.auto").store()
    node = Int(1).store()
    full.add_nodes([node, Int(2).store()])
    rows = {r["label"]: r for r in get_backend().list_groups()}
    assert {k: r["count"] for k, r in rows.items()} == {"empty": 0, "full": 2, "tool-made": 0}
    assert [r["label"] for r in get_backend().list_groups(type_string="tool.auto")] == ["tool-made"]
    assert [r["id"] for r in get_backend().list_groups(node_id=node.pk)] == [full.pk]
    assert empty.count() == 0


# -- a big group, in bulk -------------------------------------------------------------------------

BIG = 20_000


def test_a_big_group_is_filled_counted_and_read_in_bulk(any_profile):
    members = [Int(i) for i in range(BIG)]
    store_nodes(members)  # the backend's bulk insert
    group = Group("big").store()

    with _statements() as seen:
        group.add_nodes(members + members[:10])  # duplicates in one call count once
    inserts = [s for s in seen if s.lstrip().upper().startswith("INSERT") and "group_nodes" in s]
    assert len(inserts) == math.ceil(BIG / StorageBackend.ID_BATCH)  # one INSERT per batch, not per node
    assert len(seen) <= 2 * len(inserts) + 2  # and one existence check per batch

    assert group.count() == BIG and len(group.nodes) == BIG
    with _statements() as seen:
        values = [node.value for node in group.nodes]
    assert values == list(range(BIG))
    pages = [s for s in seen if "group_nodes" in s]
    assert len(pages) == BIG // group.nodes.PAGE + 1  # whole pages of rows, not a query per node

    group.add_nodes(members[:100])  # all members already: nothing changes
    assert group.count() == BIG
    with _statements() as seen:
        group.remove_nodes(members[::2])
    assert len([s for s in seen if s.lstrip().upper().startswith("DELETE")]) == math.ceil(
        (BIG // 2) / StorageBackend.ID_BATCH
    )
    assert group.count() == BIG // 2 and group.nodes[0].value == 1 and group.nodes[-1].value == BIG - 1

    copy = Group("big-copy").store()
    assert copy.add_nodes_from(group) == BIG // 2
    group.clear()
    assert group.count() == 0 and copy.count() == BIG // 2


# -- races ----------------------------------------------------------------------------------------

RACERS = 5
ROUNDS = 4

#: one racer: in each round waits for the go file, then stores a group of the round's label
RACER = r"""
import sys, time
from pathlib import Path

from plait.orm import Group, StoringNotAllowed
from plait.storage import get_backend

folder, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
get_backend().list_groups()  # the profile is open: the race is on the group row alone
for round_ in range(rounds):
    (folder / f"ready-{round_}-{me}").touch()
    go = folder / f"go-{round_}"
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(f"racer {me}: no go for round {round_}")
        time.sleep(0.0002)
    try:
        Group(f"race-{round_}", description=me).store()
        outcome = "stored"
    except StoringNotAllowed as exc:
        outcome = "refused: " + str(exc)
    (folder / f"out-{round_}-{me}").write_text(outcome)
    (folder / f"out-{round_}-{me}").rename(folder / f"done-{round_}-{me}")
"""


def _wait_for_files(folder: Path, pattern: str, count: int, racers: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 120
    while len(list(folder.glob(pattern))) < count:
        dead = [r for r in racers if r.poll() is not None and r.returncode != 0]
        if dead:
            _, stderr = dead[0].communicate()
            pytest.fail(f"a racer failed (exit {dead[0].returncode}):\n{stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {count} files {pattern}")
        time.sleep(0.005)


def test_processes_storing_one_label_at_once_make_one_group(any_profile, tmp_path):
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(i), str(ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(RACERS)
    ]
    try:
        for round_ in range(ROUNDS):
            _wait_for_files(tmp_path, f"ready-{round_}-*", RACERS, racers)
            (tmp_path / f"go-{round_}").touch()
            _wait_for_files(tmp_path, f"done-{round_}-*", RACERS, racers)
            outcomes = [p.read_text() for p in sorted(tmp_path.glob(f"done-{round_}-*"))]
            assert outcomes.count("stored") == 1, outcomes
            for outcome in outcomes:
                assert outcome == "stored" or (
                    outcome.startswith(f"refused: a group labelled 'race-{round_}' exists already")
                ), outcome
        for racer in racers:
            _, stderr = racer.communicate(timeout=60)
            assert racer.returncode == 0, stderr
            assert "IntegrityError" not in stderr
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert sorted(r["label"] for r in get_backend().list_groups()) == [f"race-{i}" for i in range(ROUNDS)]


def _wait_until_a_session_waits_for_a_lock(backend: StorageBackend) -> None:
    """Return once another PostgreSQL session of this database is blocked on a lock (at most 30 s)."""
    deadline = time.monotonic() + 30
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with backend.database.engine.connect() as conn:
            if conn.execute(query).scalar():
                return
        time.sleep(0.01)
    raise AssertionError("no session waited for the lock")


@pytest.mark.parametrize("what", ["store", "relabel"])
def test_a_label_committed_while_we_wait_is_refused_cleanly_on_postgresql(postgres_profile, what):
    """Our check runs before the other's commit, our write after it: a clear error, no IntegrityError."""
    backend = get_backend()
    other = None if what == "store" else Group("other").store()
    holding = threading.Event()
    failures: list[BaseException] = []

    def hold_the_label() -> None:
        try:
            with backend.transaction():
                Group("wanted").store()
                holding.set()
                _wait_until_a_session_waits_for_a_lock(backend)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
            holding.set()

    holder = threading.Thread(target=hold_the_label)
    holder.start()
    assert holding.wait(30)
    try:
        with pytest.raises(StoringNotAllowed, match="a group labelled 'wanted' exists already"):
            if other is None:
                Group("wanted").store()
            else:
                other.label = "wanted"
    finally:
        holder.join(60)
    assert not failures, failures
    assert sorted(r["label"] for r in backend.list_groups()) == sorted(
        ["wanted"] + ([] if other is None else ["other"])
    )
