"""delete_nodes: AiiDA's provenance rules, refusals, one transaction, nothing left dangling.

On SQLite and PostgreSQL (``any_profile``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select, text

import plait
from plait.orm import (
    CalcFunctionNode,
    DeletionRefusedError,
    Int,
    NotExistentError,
    WorkChainNode,
    delete_nodes,
    load_node,
)
from plait.orm.deletion import DELETION_RULES, deletion_link_types
from plait.storage import get_backend
from plait.storage.backend import utcnow
from plait.storage.schema import (
    broker_messages,
    comments,
    group_nodes,
    groups,
    links,
    logs,
    nodes,
    process_checkpoints,
    process_waits,
    processes,
)


class Graph:
    """Builds provenance graphs directly in storage (nodes, process rows, links) as the engine leaves them."""

    def __init__(self) -> None:
        self.backend = get_backend()
        self.pk: dict[str, int] = {}

    def data(self, *names: str) -> None:
        for name in names:
            self.pk[name] = Int(len(self.pk)).store().pk  # type: ignore[assignment]

    def process(self, name: str, cls: type = CalcFunctionNode, state: str = "finished") -> None:
        node = cls()
        node.store()
        self.backend.insert_process({"node_id": node.pk, "state": state, "process_label": name})
        self.pk[name] = node.pk

    def link(self, source: str, kind: str, target: str, label: str = "x") -> None:
        row = {"input_id": self.pk[source], "output_id": self.pk[target], "link_type": kind, "label": label}
        self.backend.insert_links([row])
        if kind.startswith("call_"):
            with self.backend.transaction() as conn:
                conn.execute(
                    processes.update()
                    .where(processes.c.node_id == self.pk[target])
                    .values(caller_id=self.pk[source])
                )

    def names(self, pks: set[int]) -> set[str]:
        by_pk = {pk: name for name, pk in self.pk.items()}
        return {by_pk[pk] for pk in pks}

    def stored(self) -> set[str]:
        return self.names(stored_pks() & set(self.pk.values()))


def stored_pks() -> set[int]:
    """The pk of every node in the database (each test starts from an empty one)."""
    with get_backend().transaction() as conn:
        return set(conn.execute(select(nodes.c.id)).scalars())


@pytest.fixture
def aiida_example(any_profile: str) -> Graph:
    """The graph of AiiDA's "Consistency" page: W0 calls W1 and W2, each calls one calculation.

    D1 is an input of W0, W1, C1; D2 of W0, W2, C2; C1 creates D3, C2 creates D4; W1 returns D3,
    W2 returns D4, W0 returns both.
    """
    g = Graph()
    g.data("D1", "D2")
    for name in ("W0", "W1", "W2"):
        g.process(name, WorkChainNode)
    g.process("C1")
    g.process("C2")
    g.link("W0", "call_work", "W1")
    g.link("W0", "call_work", "W2")
    g.link("W1", "call_calc", "C1")
    g.link("W2", "call_calc", "C2")
    for target in ("W0", "W1"):
        g.link("D1", "input_work", target, "a")
    g.link("D1", "input_calc", "C1", "a")
    for target in ("W0", "W2"):
        g.link("D2", "input_work", target, "b")
    g.link("D2", "input_calc", "C2", "b")
    g.data("D3", "D4")
    g.link("C1", "create", "D3", "result")
    g.link("C2", "create", "D4", "result")
    g.link("W1", "return", "D3", "result")
    g.link("W2", "return", "D4", "result")
    g.link("W0", "return", "D3", "r1")
    g.link("W0", "return", "D4", "r2")
    return g


WORKFLOW = {"W0", "W1", "W2", "C1", "C2", "D3", "D4"}


def test_the_rules_are_aiidas_delete_rules():
    assert {name for name, rule in DELETION_RULES.items() if rule.toggleable} == {
        "create_forward",
        "call_calc_forward",
        "call_work_forward",
    }
    forward, backward = deletion_link_types()
    assert sorted(forward) == ["call_calc", "call_work", "create", "input_calc", "input_work"]
    assert sorted(backward) == ["call_calc", "call_work", "create", "return"]
    forward, _ = deletion_link_types(create_forward=False, call_calc_forward=False, call_work_forward=False)
    assert sorted(forward) == ["input_calc", "input_work"]


@pytest.mark.parametrize(
    ("target", "rules", "expected"),
    [
        ("W0", {}, WORKFLOW),  # the whole workflow; its inputs stay
        ("D3", {}, WORKFLOW),  # an output: its creator, the callers, then everything they called
        ("W1", {}, WORKFLOW),  # a sub-workflow drags its caller, and so its sibling
        ("W1", {"call_work_forward": False}, {"W0", "W1", "C1", "D3"}),
        ("W0", {"call_work_forward": False, "call_calc_forward": False, "create_forward": False}, {"W0"}),
        ("C1", {"create_forward": False}, {"C1", "W1", "W0", "W2", "C2"}),
        ("D1", {}, WORKFLOW | {"D1"}),  # an input: every process that used it, and on from there
        ("C2", {"call_work_forward": False}, {"C2", "W2", "W0", "D4"}),
    ],
)
def test_what_goes_with_a_node(aiida_example, target, rules, expected):
    g = aiida_example
    pks, deleted = delete_nodes([g.pk[target]], **rules)
    assert g.names(pks) == expected and deleted is False
    assert g.stored() == set(g.pk)  # a dry run deletes nothing

    pks, deleted = delete_nodes([g.pk[target]], dry_run=False, **rules)
    assert g.names(pks) == expected and deleted is True
    assert g.stored() == set(g.pk) - expected
    assert_nothing_dangles()


def test_a_process_left_behind_forgets_its_deleted_caller(aiida_example):
    g = aiida_example
    off = {"call_work_forward": False, "call_calc_forward": False, "create_forward": False}
    delete_nodes([g.pk["W0"]], dry_run=False, **off)
    w1 = load_node(g.pk["W1"])
    assert w1.caller is None and g.backend.get_process(g.pk["W1"])["caller_id"] is None
    assert [label for label, _, _ in load_node(g.pk["D3"]).get_incoming()] == ["result", "result"]
    assert_nothing_dangles()


def test_cycles_of_logical_provenance_end(any_profile):
    g = Graph()
    g.data("D")
    g.process("W", WorkChainNode)
    g.link("D", "input_work", "W")
    g.link("W", "return", "D")  # a workflow that returns its own input
    assert g.names(delete_nodes([g.pk["W"]])[0]) == {"W"}  # its input stays
    assert g.names(delete_nodes([g.pk["D"]])[0]) == {"D", "W"}


def test_a_process_that_is_not_terminated_is_never_deleted(any_profile):
    g = Graph()
    g.data("D", "E")
    g.process("C", state="finished")
    g.process("R", state="running")
    g.process("X", state="waiting")
    g.link("D", "input_calc", "C")
    g.link("D", "input_calc", "R")
    g.link("D", "input_calc", "X")
    for dry_run in (True, False, lambda pks: False):
        with pytest.raises(DeletionRefusedError) as refused:
            delete_nodes([g.pk["D"]], dry_run=dry_run)
        message = str(refused.value)
        assert f"process {g.pk['R']} is running" in message and f"process {g.pk['X']} is waiting" in message
        assert g.names(refused.value.nodes) == {"D", "C", "R", "X"}
        assert refused.value.active == {g.pk["R"]: "running", g.pk["X"]: "waiting"}
    assert g.stored() == set(g.pk)
    assert delete_nodes([g.pk["E"]], dry_run=False) == ({g.pk["E"]}, True)  # the rest may go


def test_bad_requests_are_refused_before_anything_is_deleted(any_profile):
    g = Graph()
    g.data("D")
    with pytest.raises(NotExistentError, match="no node with pk 987654, 987655"):
        delete_nodes([g.pk["D"], 987655, 987654], dry_run=False)
    with pytest.raises(ValueError, match=r"unknown deletion rule 'create_fwd'.*create_forward"):
        delete_nodes([g.pk["D"]], create_fwd=False)
    with pytest.raises(ValueError, match="'input_calc_forward' is fixed to True"):
        delete_nodes([g.pk["D"]], dry_run=False, input_calc_forward=False)
    with pytest.raises(ValueError, match="must be True or False"):
        delete_nodes([g.pk["D"]], create_forward="no")
    with pytest.raises(TypeError, match=r"not a single int: use \["):
        delete_nodes(g.pk["D"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a node pk is an int"):
        delete_nodes([str(g.pk["D"])])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="dry_run must be"):
        delete_nodes([g.pk["D"]], dry_run="yes")  # type: ignore[arg-type]
    assert g.stored() == {"D"}
    assert delete_nodes([g.pk["D"]], input_calc_forward=True, return_forward=False)[0] == {g.pk["D"]}
    assert delete_nodes([], dry_run=False) == (set(), True)


def test_the_callable_sees_the_set_and_may_stop(any_profile):
    g = Graph()
    g.data("D")
    g.process("C")
    g.link("D", "input_calc", "C")
    seen: list[set[int]] = []
    assert delete_nodes([g.pk["D"]], dry_run=lambda pks: seen.append(pks) or True)[1] is False
    assert g.names(seen[0]) == {"D", "C"} and g.stored() == {"D", "C"}
    assert delete_nodes([g.pk["D"]], dry_run=lambda pks: False) == (set(seen[0]), True)
    assert g.stored() == set()


def test_a_set_that_grew_after_it_was_confirmed_is_not_deleted(any_profile):
    g = Graph()
    g.data("D")
    g.process("C")
    g.link("D", "input_calc", "C")

    def confirm_while_someone_uses_d(pks: set[int]) -> bool:
        g.process("Late")  # another calculation takes D as input before the deletion starts
        g.link("D", "input_calc", "Late")
        return False

    with pytest.raises(DeletionRefusedError, match=r"changed since they were listed \(1 more, 0 fewer"):
        delete_nodes([g.pk["D"]], dry_run=confirm_while_someone_uses_d)
    assert g.stored() == {"D", "C", "Late"}


def _decorate(backend, pks: list[int], process_pks: list[int]) -> None:
    """A row in every table that points at nodes: logs, checkpoints, waits, groups, comments, messages."""
    now = utcnow()
    with backend.transaction() as conn:
        group = conn.execute(
            insert(groups).returning(groups.c.id),
            {"uuid": str(uuid.uuid4()), "label": f"g-{uuid.uuid4().hex[:8]}", "ctime": now, "extras": {}},
        ).scalar_one()
        conn.execute(insert(group_nodes), [{"group_id": group, "node_id": pk} for pk in pks])
        conn.execute(
            insert(comments),
            [
                {
                    "uuid": str(uuid.uuid4()),
                    "node_id": pk,
                    "ctime": now,
                    "mtime": now,
                    "user_email": "a@b",
                    "content": "c",
                }
                for pk in pks
            ],
        )
        for pk in process_pks:
            backend.insert_log(pk, "REPORT", "a report")
            backend.add_checkpoint(pk, 1, "step", {"version": 1})
            backend.post_message("notification", None, pk, {"state": "finished"})
        conn.execute(
            insert(process_waits),
            [{"parent_id": a, "child_id": b} for a, b in itertools.pairwise(process_pks)],
        )


def _counts(backend) -> dict[str, int]:
    tables = (
        nodes,
        links,
        processes,
        process_checkpoints,
        logs,
        process_waits,
        group_nodes,
        comments,
        broker_messages,
    )
    with backend.transaction() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}


def assert_nothing_dangles() -> None:
    """Every row that points at a node points at a node that exists."""
    backend = get_backend()
    checks = {
        "links.input_id": "SELECT COUNT(*) FROM links WHERE input_id NOT IN (SELECT id FROM nodes)",
        "links.output_id": "SELECT COUNT(*) FROM links WHERE output_id NOT IN (SELECT id FROM nodes)",
        "processes.node_id": "SELECT COUNT(*) FROM processes WHERE node_id NOT IN (SELECT id FROM nodes)",
        "processes.caller_id": "SELECT COUNT(*) FROM processes WHERE caller_id IS NOT NULL "
        "AND caller_id NOT IN (SELECT id FROM nodes)",
        "process_checkpoints": "SELECT COUNT(*) FROM process_checkpoints "
        "WHERE process_id NOT IN (SELECT id FROM nodes)",
        "logs": "SELECT COUNT(*) FROM logs WHERE node_id NOT IN (SELECT id FROM nodes)",
        "process_waits": "SELECT COUNT(*) FROM process_waits WHERE parent_id NOT IN (SELECT id FROM nodes) "
        "OR child_id NOT IN (SELECT id FROM nodes)",
        "group_nodes": "SELECT COUNT(*) FROM group_nodes WHERE node_id NOT IN (SELECT id FROM nodes)",
        "comments": "SELECT COUNT(*) FROM comments WHERE node_id NOT IN (SELECT id FROM nodes)",
        "broker_messages": "SELECT COUNT(*) FROM broker_messages WHERE process_id IS NOT NULL "
        "AND process_id NOT IN (SELECT id FROM nodes)",
    }
    with backend.transaction() as conn:
        dangling = {name: conn.execute(text(sql)).scalar_one() for name, sql in checks.items()}
    assert dangling == dict.fromkeys(checks, 0)


@pytest.fixture
def decorated(aiida_example: Graph) -> Iterator[Graph]:
    g = aiida_example
    processes_ = [g.pk[n] for n in ("W0", "W1", "W2", "C1", "C2")]
    _decorate(g.backend, list(g.pk.values()), processes_)
    yield g


def test_everything_pointing_at_the_deleted_nodes_goes_with_them(decorated):
    g = decorated
    before = _counts(g.backend)
    pks, _ = delete_nodes([g.pk["W0"]], dry_run=False)
    assert g.names(pks) == WORKFLOW
    after = _counts(g.backend)
    assert after["nodes"] == before["nodes"] - 7 == 2
    assert after["links"] == 0  # every link of the example touches the workflow
    assert after["processes"] == after["process_checkpoints"] == after["logs"] == 0
    assert after["process_waits"] == after["broker_messages"] == 0
    assert after["group_nodes"] == after["comments"] == 2  # D1 and D2 keep theirs
    assert_nothing_dangles()


def test_a_failure_midway_deletes_nothing(decorated, monkeypatch):
    """A delete that fails late in the cascade (a trigger), then a crash after the DELETE: both roll back."""
    g = decorated
    before = _counts(g.backend)
    last_link = max(link["id"] for link in g.backend.all_links(g.pk.values()))
    with g.backend.transaction() as conn:
        if g.backend.database.is_sqlite:
            conn.execute(
                text(
                    f"CREATE TRIGGER fail_midway BEFORE DELETE ON links WHEN old.id = {last_link} "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION plait_test_fail_midway() RETURNS trigger AS $$ BEGIN "
                    f"IF OLD.id = {last_link} THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN OLD; "
                    "END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER fail_midway BEFORE DELETE ON links FOR EACH ROW "
                    "EXECUTE FUNCTION plait_test_fail_midway()"
                )
            )
    with pytest.raises(Exception, match="injected failure"):
        delete_nodes([g.pk["W0"]], dry_run=False)
    assert _counts(g.backend) == before
    with g.backend.transaction() as conn:
        conn.execute(text("DROP TRIGGER fail_midway" + ("" if g.backend.database.is_sqlite else " ON links")))

    def fail_after_the_delete(conn):
        assert (
            conn.execute(select(func.count()).select_from(nodes)).scalar_one() == 2
        )  # deleted, not committed
        raise RuntimeError("crash after the DELETE")

    monkeypatch.setattr(g.backend, "_end_deletion", fail_after_the_delete)
    with pytest.raises(RuntimeError, match="crash after the DELETE"):
        delete_nodes([g.pk["W0"]], dry_run=False)
    assert _counts(g.backend) == before
    assert g.stored() == set(g.pk)
    monkeypatch.undo()
    assert g.names(delete_nodes([g.pk["W0"]], dry_run=False)[0]) == WORKFLOW


def _bulk_calculations(count: int, *, chained: bool) -> list[int]:
    """``count`` calculations ``x -> calc -> r`` as bulk rows; ``chained``: each takes the previous ``r``
    as its input (a chain ``count`` calculations deep) instead of its own ``x``. Returns the node pks,
    three per calculation (x, calc, r)."""
    backend = get_backend()
    now = utcnow()

    def row(node_type: str) -> dict:
        return {
            "uuid": str(uuid.uuid4()),
            "node_type": node_type,
            "process_type": None,
            "label": "",
            "description": "",
            "ctime": now,
            "mtime": now,
            "attributes": {},
            "extras": {},
            "files": {},
            "node_hash": None,
            "computer_id": None,
        }

    rows = []
    for _ in range(count):
        rows += [row("data.core.int"), row("process.calcfunction"), row("data.core.int")]
    with backend.transaction() as conn:
        pks = backend.insert_nodes(rows)
        calcs = pks[1::3]
        conn.execute(
            insert(processes),
            [
                {
                    "node_id": pk,
                    "state": "finished",
                    "process_label": "f",
                    "mtime": now,
                    "node_type": "process.calcfunction",
                    "ctime": now,
                }
                for pk in calcs
            ],
        )
        links = []
        for index, calc in enumerate(calcs):
            source = pks[3 * index - 1] if chained and index else pks[3 * index]
            links.append({"input_id": source, "output_id": calc, "link_type": "input_calc", "label": "x"})
            links.append(
                {"input_id": calc, "output_id": pks[3 * index + 2], "link_type": "create", "label": "r"}
            )
        backend.insert_links(links)
    return pks


def test_a_deep_chain_is_walked_in_the_database(any_profile):
    """A chain 3,000 calculations deep (9,000 nodes), deleted from its first input."""
    pks = _bulk_calculations(3_000, chained=True)
    spare_inputs = set(pks[3::3])  # the unused first inputs of every calculation but the first
    doomed = set(pks) - spare_inputs
    assert delete_nodes([pks[0]])[0] == doomed
    assert delete_nodes([pks[0]], dry_run=False)[0] == doomed
    assert stored_pks() == spare_inputs
    assert_nothing_dangles()


def test_more_seeds_than_sqlite_binds_in_one_statement(any_profile):
    """33,000 seeds at once, every node of 11,000 calculations (SQLite binds at most 32,766 parameters
    in one statement)."""
    pks = _bulk_calculations(11_000, chained=False)
    seeds = list(pks)
    assert delete_nodes(seeds)[0] == set(pks)
    assert delete_nodes(seeds, dry_run=False)[0] == set(pks)
    assert not stored_pks() & set(pks)
    assert_nothing_dangles()


def test_a_real_workflow_run_is_deleted_whole():
    """Processes the engine ran: a workfunction calling two calcfunctions."""
    from plait import calcfunction, run_get_node, workfunction

    @calcfunction
    def add(x: Int, y: Int) -> Int:
        return x + y

    @workfunction
    def twice(x: Int, y: Int) -> Int:
        return add(add(x, y), y)

    x, y = Int(1).store(), Int(2).store()
    result, node = run_get_node(twice, x, y)
    assert result.value == 5
    pks, _ = delete_nodes([result.pk])
    called = {c.pk for c in node.called}
    middle = {n.pk for c in node.called for _, _, n in c.get_outgoing()}
    assert pks == {node.pk} | called | middle
    assert x.pk not in pks and y.pk not in pks
    delete_nodes([x.pk], dry_run=False)
    assert not stored_pks() & ({x.pk, node.pk} | called | middle) and y.pk in stored_pks()
    assert_nothing_dangles()
    assert plait.load_node(y.pk).value == 2
