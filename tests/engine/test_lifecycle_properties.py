"""Property tests of the process lifecycle: random histories of runners and control, against real rows.

A hypothesis state machine drives processes stored in the test's database
(tiny ``Raises`` work chains from ``tests/wf_library.py`` — their steps
never run here: the machine plays the runner's part) through random
sequences of what can happen to them:

* a runner holding a process steps it (commits ``running``/``waiting`` with
  a checkpoint), ends it (finished, excepted, killed), launches a child
  (submitted to the daemon, or run in place under its lease), parks it to
  wait for its children;
* a child ends, and the parent parked on it is released (then claimed again
  and continues: ``waiting -> running``);
* pause and play, held (``lifecycle.pause_held``/``play_held``) and unheld
  (``lifecycle.set_unheld``); kill, held (``lifecycle.kill``) and unheld
  (``lifecycle.end_unheld``);
* a runner crashes: its lease is released, or expires (the clock jumps past
  it); another runner takes the lease (``lifecycle.take_lease``) or a daemon
  worker claims it (``lifecycle.claim_runnable``);
* a stale runner, one that lost the lease, tries to write anyway.

A model tracks what each row must be.  After every step: each row equals
the model; a terminal row never changes again (byte for byte, ``mtime``
included); every change of state is an edge of :data:`TRANSITIONS`; and
:func:`check_transition` agrees with the table.  Each write by a runner
that does not hold the process must leave its row, its waits and its
checkpoints exactly as they were (fencing).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select

from plait.engine import lifecycle
from plait.engine.lifecycle import (
    TRANSITIONS,
    IllegalTransitionError,
    LeaseLostError,
    check_transition,
)
from plait.engine.process import Process
from plait.orm import ProcessState, load_node
from plait.storage import get_backend, schema
from plait.storage.schema import process_checkpoints, process_waits, processes
from wf_library import Raises

S = ProcessState
LIVE = 3600.0  # a live lease: far longer than any example runs
MAX_PROCESSES = 7
#: the tables a machine's example writes; emptied before each example so that claims see only its rows
TABLES = ("process_waits", "process_checkpoints", "links", "logs", "processes", "nodes")

_ROWS = select(processes)
_WAITS = select(process_waits.c.parent_id, process_waits.c.child_id)
_CHECKPOINTS = select(
    process_checkpoints.c.process_id, process_checkpoints.c.seq, process_checkpoints.c.step
).order_by(process_checkpoints.c.process_id, process_checkpoints.c.seq)

SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree; a failure prints its steps
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: its tracing is slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class Expected:
    """What the row of one process must be."""

    state: S
    owner: str | None = None
    live: bool = False  #: the lease has not expired (meaningful with an owner)
    paused: bool = False
    status: str | None = None
    seq: int = 0
    checkpoints: list[int] = field(default_factory=list)
    submitted: bool = False
    caller: int | None = None
    waits: set[int] = field(default_factory=set)
    final: dict[str, Any] | None = None  #: the whole row as it was when it became terminal

    @property
    def terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def unheld(self) -> bool:
        return self.owner is None or not self.live


def _empty_tables() -> None:
    with get_backend().transaction() as conn:
        for name in TABLES:
            conn.execute(delete(getattr(schema, name)))


def _read(pks: list[int]) -> tuple[dict[int, dict[str, Any]], dict[int, set[int]], dict[int, list[Any]]]:
    """The rows, waits and checkpoints (seq, step) of ``pks``: three queries in one read."""
    wanted = set(pks)
    rows: dict[int, dict[str, Any]] = {}
    waits: dict[int, set[int]] = {}
    checkpoints: dict[int, list[Any]] = {}
    with get_backend().database.read() as conn:  # the tables hold this example's rows only
        for row in conn.execute(_ROWS):
            if row.node_id in wanted:
                rows[row.node_id] = dict(row._mapping)
        for parent, child in conn.execute(_WAITS):
            if parent in wanted:
                waits.setdefault(parent, set()).add(child)
        for pk, seq, step in conn.execute(_CHECKPOINTS):
            if pk in wanted:
                checkpoints.setdefault(pk, []).append((seq, step))
    return rows, waits, checkpoints


def _load(pk: int, owner: str) -> Process:
    """What a runner that just took the lease holds: the process rebuilt from its row."""
    process = Raises._load(load_node(pk), None)
    process._owner = owner
    return process


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        _empty_tables()
        self.backend = get_backend()
        self.model: dict[int, Expected] = {}
        self.seen: dict[int, S] = {}  #: the state each row had when last looked at
        #: ``handles[owner][pk]``: the process object runner ``owner`` holds (or held) for ``pk``
        self.handles: dict[str, dict[int, Process]] = {}
        self._names = itertools.count()

    # -- helpers ---------------------------------------------------------------------------------------
    def new_runner(self) -> str:
        owner = f"runner-{next(self._names)}"
        self.handles[owner] = {}
        return owner

    def hold(self, owner: str, pk: int, process: Process | None = None) -> None:
        self.handles[owner][pk] = process if process is not None else _load(pk, owner)

    def all_handles(self) -> list[tuple[str, int]]:
        return sorted((owner, pk) for owner, held in self.handles.items() for pk in held)

    def holders(self) -> list[tuple[str, int]]:
        """Handles of the runner that holds the row now (its lease may have expired meanwhile)."""
        return [(o, pk) for o, pk in self.all_handles() if self.model[pk].owner == o]

    def stale(self) -> list[tuple[str, int]]:
        return [(o, pk) for o, pk in self.all_handles() if self.model[pk].owner != o]

    def snapshot(self, pk: int) -> tuple[Any, ...]:
        """Everything of a process that a write may change: its row, its waits, its checkpoints."""
        rows, waits, checkpoints = _read([pk])
        return rows.get(pk), waits.get(pk, set()), checkpoints.get(pk, [])

    def expect_refusal(self, pk: int, owner: str | None, target: S | None) -> type[Exception]:
        """The error a refused held write raises, in the order ``lifecycle._refusal`` decides it."""
        expected = self.model[pk]
        if owner is not None and expected.owner != owner:
            return LeaseLostError
        assert target is not None
        return IllegalTransitionError

    def may_write(self, pk: int, owner: str, target: S | None) -> bool:
        """Would a held write by ``owner`` (to ``target``, or of non-state columns) be accepted?"""
        expected = self.model[pk]
        if expected.owner != owner or expected.terminal:
            return False
        return target is None or target in TRANSITIONS[expected.state]

    def ended(self, pk: int, state: S) -> None:
        """The model of a process that was just ended (by its holder or unheld)."""
        expected = self.model[pk]
        expected.state = state
        expected.owner = None
        expected.live = False
        expected.paused = False
        expected.status = None
        for other in self.model.values():  # the waits on it are released
            other.waits.discard(pk)
        expected.final = _read([pk])[0][pk]

    def refused(self, before: tuple[Any, ...] | None, pk: int, what: str) -> None:
        """A refused write changed nothing (``before`` was taken when the refusal was expected)."""
        assert before is not None, f"{what} was refused, but the model expected it to be accepted"
        after = self.snapshot(pk)
        assert after == before, f"{what} was refused but changed process {pk}:\n{before}\n->\n{after}"

    # -- launching -------------------------------------------------------------------------------------
    @initialize(parked=st.booleans())
    def a_daemon_family(self, parked: bool) -> None:
        """Start from a daemon work chain that launched two children and waits for them (maybe parked)."""
        node = Raises(Raises.prepare_inputs({}))._store_new(state=S.CREATED, parent=None, submitted=True)
        self.model[node.pk] = Expected(S.CREATED, submitted=True)
        self.seen[node.pk] = S.CREATED
        self.claim(1)
        (owner,) = [o for o, held in self.handles.items() if node.pk in held]
        self._commit(owner, node.pk, S.RUNNING)
        self.rows_match_the_model()  # one move at a time, as the invariants see the rules' moves
        for _ in range(2):
            self._launch_child(owner, node.pk, submitted=True)
        self._commit(owner, node.pk, S.WAITING)
        if parked:
            self.rows_match_the_model()
            self._park(owner, node.pk)

    @precondition(lambda self: len(self.model) < MAX_PROCESSES)
    @rule(held=st.booleans())
    def launch(self, held: bool) -> None:
        """A top-level launch: submitted to the daemon (created, unheld), or run here (running, held)."""
        process = Raises(Raises.prepare_inputs({}))
        if held:
            owner = self.new_runner()
            node = process._store_new(state=S.RUNNING, parent=None, owner=owner, lease_seconds=LIVE)
            self.model[node.pk] = Expected(S.RUNNING, owner=owner, live=True)
            self.hold(owner, node.pk, process)
        else:
            node = process._store_new(state=S.CREATED, parent=None, submitted=True)
            self.model[node.pk] = Expected(S.CREATED, submitted=True)
        self.seen[node.pk] = self.model[node.pk].state

    @precondition(lambda self: len(self.model) < MAX_PROCESSES and self.all_handles())
    @rule(data=st.data(), submitted=st.booleans())
    def launch_child(self, data: st.DataObject, submitted: bool) -> None:
        """A runner (holder or stale) launches a child from a step: fenced by the caller's lease."""
        owner, parent = data.draw(st.sampled_from(self.all_handles()), label="caller handle")
        self._launch_child(owner, parent, submitted)

    def _launch_child(self, owner: str, parent: int, submitted: bool) -> None:
        caller = self.handles[owner][parent]
        accepted = self.may_write(parent, owner, None)
        event(f"launch_child: {'accepted' if accepted else 'refused'}")
        child = Raises(Raises.prepare_inputs({}))
        nodes_before = self.backend.count_nodes()
        before = None if accepted else self.snapshot(parent)
        try:
            if submitted:
                node = child._store_new(state=S.CREATED, parent=caller, submitted=True)
            else:
                node = child._store_new(state=S.RUNNING, parent=caller, owner=owner, lease_seconds=LIVE)
        except (LeaseLostError, IllegalTransitionError) as exc:
            assert not accepted, f"launch by the holder {owner} of {parent} refused: {exc!r}"
            assert isinstance(exc, self.expect_refusal(parent, owner, S.RUNNING)), exc
            assert self.backend.count_nodes() == nodes_before, "a refused launch stored nodes"
            self.refused(before, parent, f"launch of a child by stale {owner}")
            return
        assert accepted, f"{owner} launched child {node.pk} of {parent} without holding it"
        state = S.CREATED if submitted else S.RUNNING
        self.model[node.pk] = Expected(
            state,
            owner=None if submitted else owner,
            live=not submitted,
            submitted=submitted,
            caller=parent,
        )
        self.seen[node.pk] = state
        if not submitted:
            self.hold(owner, node.pk, child)

    # -- a runner that holds the process ----------------------------------------------------------------
    def _commit(self, owner: str, pk: int, target: S) -> None:
        process = self.handles[owner][pk]
        accepted = self.may_write(pk, owner, target)
        event(f"commit: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        status = "waiting for a child" if target is S.WAITING else None
        try:
            process._commit(target, checkpoint={"step": process._checkpoint_seq + 1}, status=status)
        except (LeaseLostError, IllegalTransitionError) as exc:
            assert not accepted, f"commit {target} by holder {owner} of {pk} refused: {exc!r}"
            assert isinstance(exc, self.expect_refusal(pk, owner, target)), exc
            self.refused(before, pk, f"commit {target.value} by {owner}")
            return
        assert accepted, f"{owner} committed {target.value} to {pk} without holding it ({self.model[pk]})"
        expected = self.model[pk]
        expected.state = target
        expected.status = status
        expected.seq += 1
        expected.checkpoints.append(expected.seq)
        assert process._checkpoint_seq == expected.seq

    @precondition(lambda self: self.holders())
    @rule(data=st.data(), to=st.sampled_from([S.RUNNING, S.WAITING]))
    def step(self, data: st.DataObject, to: S) -> None:
        """The holder commits a step with its checkpoint (``created -> waiting`` is refused)."""
        owner, pk = data.draw(st.sampled_from(self.holders()), label="holder")
        self._commit(owner, pk, to)

    @precondition(lambda self: self.stale())
    @rule(data=st.data(), to=st.sampled_from(list(S)))
    def stale_commit(self, data: st.DataObject, to: S) -> None:
        """A runner that lost the process commits anyway: refused, and nothing changes."""
        owner, pk = data.draw(st.sampled_from(self.stale()), label="stale handle")
        if to.is_terminal:
            self._end(owner, pk, to)
        else:
            self._commit(owner, pk, to)

    def _end(self, owner: str, pk: int, target: S) -> None:
        process = self.handles[owner][pk]
        accepted = self.may_write(pk, owner, target)
        event(f"end: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        if target is S.FINISHED:
            try:
                process._finish(None)
                done = True
            except (LeaseLostError, IllegalTransitionError) as exc:
                assert isinstance(exc, self.expect_refusal(pk, owner, target)), exc
                done = False
        elif target is S.EXCEPTED:
            done = lifecycle.except_(process.node, owner, RuntimeError("boom"))
        else:
            done = lifecycle.kill(process.node, owner, "killed by its runner")
        assert done == accepted, (owner, pk, target, self.model[pk])
        if not done:
            self.refused(before, pk, f"end {target.value} by {owner}")
            return
        expected = self.model[pk]
        if target is S.FINISHED and expected.seq:  # finished ok: the checkpoint history goes
            expected.checkpoints.clear()
        self.ended(pk, target)

    @precondition(lambda self: self.holders())
    @rule(data=st.data(), to=st.sampled_from([S.FINISHED, S.EXCEPTED, S.KILLED]))
    def end_held(self, data: st.DataObject, to: S) -> None:
        """The holder ends the process (``created -> finished`` is refused)."""
        owner, pk = data.draw(st.sampled_from(self.holders()), label="holder")
        self._end(owner, pk, to)

    def submitted_children(self, pk: int) -> list[int]:
        """The children a daemon parent may park on: the submitted ones (in-place children run inside it)."""
        return sorted(child for child, e in self.model.items() if e.caller == pk and e.submitted)

    def parkable(self) -> list[tuple[str, int]]:
        """Holders of a waiting process with submitted children, as the daemon placement parks them."""
        return [
            (o, pk)
            for o, pk in self.holders()
            if self.model[pk].state is S.WAITING and not self.model[pk].waits and self.submitted_children(pk)
        ]

    def stale_parkers(self) -> list[tuple[str, int]]:
        return [(o, pk) for o, pk in self.stale() if self.submitted_children(pk)]

    def _park(self, owner: str, pk: int) -> None:
        process = self.handles[owner][pk]
        expected = self.model[pk]
        children = self.submitted_children(pk)
        active = {c for c in children if not self.model[c].terminal}
        accepted = self.may_write(pk, owner, None) and bool(active)
        event(f"park: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        try:
            parked = lifecycle.park(process.node, owner, children, "waiting")
        except (LeaseLostError, IllegalTransitionError):
            parked = False
        assert parked == accepted, f"park of {pk} by {owner} = {parked}; model {expected}"
        if not parked:
            self.refused(before, pk, f"park by {owner}")
            return
        expected.waits |= active
        expected.owner = None
        expected.live = False
        expected.status = "waiting"

    @precondition(lambda self: self.parkable())
    @rule(data=st.data())
    def park(self, data: st.DataObject) -> None:
        """A worker's runner lets go of a waiting process to wait in the database for its children."""
        owner, pk = data.draw(st.sampled_from(self.parkable()), label="holder")
        self._park(owner, pk)

    @precondition(lambda self: self.stale_parkers())
    @rule(data=st.data())
    def stale_park(self, data: st.DataObject) -> None:
        """A runner that lost the process parks it: refused, no wait is written."""
        owner, pk = data.draw(st.sampled_from(self.stale_parkers()), label="stale handle")
        self._park(owner, pk)

    def step_parkers(self) -> list[tuple[str, int]]:
        """Handles (held or stale) of a process with submitted children, as a daemon step that waits."""
        return [(o, pk) for o, pk in self.all_handles() if self.submitted_children(pk)]

    @precondition(lambda self: self.step_parkers())
    @rule(data=st.data())
    def step_and_park(self, data: st.DataObject) -> None:
        """A daemon step ends waiting for its children: its checkpoint and its park in one commit
        (``lifecycle.commit_waiting``); parked only while some child is active, refused (nothing
        written, no wait) for a runner that lost the process."""
        owner, pk = data.draw(st.sampled_from(self.step_parkers()), label="handle")
        process = self.handles[owner][pk]
        children = self.submitted_children(pk)
        active = {c for c in children if not self.model[c].terminal}
        accepted = self.may_write(pk, owner, S.WAITING)
        event(f"step and park: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        seq = process._checkpoint_seq + 1
        try:
            parked = lifecycle.commit_waiting(
                process.node, owner, children, park=True, checkpoint={"step": seq}, checkpoint_seq=seq
            )
        except (LeaseLostError, IllegalTransitionError) as exc:
            assert not accepted, f"commit_waiting by holder {owner} of {pk} refused: {exc!r}"
            assert isinstance(exc, self.expect_refusal(pk, owner, S.WAITING)), exc
            self.refused(before, pk, f"commit_waiting by {owner}")
            return
        assert accepted, f"{owner} parked {pk} without holding it ({self.model[pk]})"
        assert parked == bool(active), f"parked={parked} with active children {active}"
        process._checkpoint_seq = seq
        expected = self.model[pk]
        expected.state = S.WAITING
        expected.status = lifecycle.waiting_status(children)
        expected.seq = seq
        expected.checkpoints.append(seq)
        if parked:
            expected.waits |= active
            expected.owner = None
            expected.live = False

    # -- control ---------------------------------------------------------------------------------------
    @precondition(lambda self: self.model)
    @rule(data=st.data(), held=st.booleans(), release=st.booleans(), reason=st.sampled_from([None, "why"]))
    def pause(self, data: st.DataObject, held: bool, release: bool, reason: str | None) -> None:
        if held and self.all_handles():
            owner, pk = data.draw(st.sampled_from(self.all_handles()), label="handle")
            accepted = self.may_write(pk, owner, None)
            event(f"pause: {'accepted' if accepted else 'refused'}")
            before = None if accepted else self.snapshot(pk)
            try:
                lifecycle.pause_held(self.handles[owner][pk].node, owner, reason, release=release)
            except (LeaseLostError, IllegalTransitionError) as exc:
                assert not accepted, f"pause by holder {owner} of {pk} refused: {exc!r}"
                assert isinstance(exc, LeaseLostError), exc
                self.refused(before, pk, f"pause by {owner}")
                return
            assert accepted, f"{owner} paused {pk} without holding it"
            expected = self.model[pk]
            expected.paused = True
            if reason:
                expected.status = f"paused: {reason}"
            if release:
                expected.owner, expected.live = None, False
            return
        pk = data.draw(st.sampled_from(sorted(self.model)), label="pk")
        self._unheld(pk, paused=True)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), held=st.booleans())
    def play(self, data: st.DataObject, held: bool) -> None:
        if held and self.all_handles():
            owner, pk = data.draw(st.sampled_from(self.all_handles()), label="handle")
            accepted = self.may_write(pk, owner, None)
            event(f"play: {'accepted' if accepted else 'refused'}")
            before = None if accepted else self.snapshot(pk)
            try:
                lifecycle.play_held(self.handles[owner][pk].node, owner, None)
            except (LeaseLostError, IllegalTransitionError) as exc:
                assert not accepted, f"play by holder {owner} of {pk} refused: {exc!r}"
                self.refused(before, pk, f"play by {owner}")
                return
            assert accepted, f"{owner} played {pk} without holding it"
            self.model[pk].paused = False
            self.model[pk].status = None
            return
        pk = data.draw(st.sampled_from(sorted(self.model)), label="pk")
        self._unheld(pk, paused=False, status=None)

    def _unheld(self, pk: int, **fields: Any) -> None:
        expected = self.model[pk]
        accepted = not expected.terminal and expected.unheld
        event(f"unheld: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        done = lifecycle.set_unheld(pk, **fields)
        assert done == accepted, f"set_unheld({pk}, {fields}) = {done}; model {expected}"
        if not done:
            self.refused(before, pk, f"set_unheld {fields}")
            return
        expected.paused = fields["paused"]
        if "status" in fields:
            expected.status = fields["status"]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), held=st.booleans())
    def kill(self, data: st.DataObject, held: bool) -> None:
        if held and self.all_handles():
            owner, pk = data.draw(st.sampled_from(self.all_handles()), label="handle")
            self._end(owner, pk, S.KILLED)
            return
        pk = data.draw(st.sampled_from(sorted(self.model)), label="pk")
        expected = self.model[pk]
        accepted = not expected.terminal and expected.unheld
        event(f"kill: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        done = lifecycle.end_unheld(pk, S.KILLED, log_level="WARNING", log="killed", exit_message="killed")
        assert done == accepted, f"end_unheld({pk}) = {done}; model {expected}"
        if not done:
            self.refused(before, pk, "end_unheld")
            return
        expected.waits.clear()  # its own waits are deleted
        self.ended(pk, S.KILLED)

    # -- runners that vanish, and those that take over ---------------------------------------------------
    @precondition(lambda self: any(e.owner is not None for e in self.model.values()))
    @rule(data=st.data(), how=st.sampled_from(["release", "release all", "expire"]))
    def crash(self, data: st.DataObject, how: str) -> None:
        """The holder vanishes: its lease is released (its worker was found dead) or expires."""
        pk = data.draw(
            st.sampled_from(sorted(pk for pk, e in self.model.items() if e.owner is not None)), label="pk"
        )
        expected = self.model[pk]
        if how == "release":  # the worker was found dead: its lease on this process is let go
            lifecycle.release(expected.owner, [pk])  # type: ignore[arg-type]
            expected.owner, expected.live = None, False
        elif how == "release all":  # ... or every lease it held
            owner = expected.owner
            lifecycle.release(owner)  # type: ignore[arg-type]
            for other in self.model.values():
                if other.owner == owner:
                    other.owner, other.live = None, False
        else:  # the clock jumps past the lease: write the expiry into the past (a test-only write)
            assert self.backend.update_process(pk, lease_expires=time.time() - LIVE)
            expected.live = False

    @precondition(lambda self: self.model)
    @rule(data=st.data(), force=st.booleans())
    def take_over(self, data: st.DataObject, force: bool) -> None:
        """Another runner takes the lease (resume): a free or expired one, or with ``force`` anyone's."""
        pk = data.draw(st.sampled_from(sorted(self.model)), label="pk")
        expected = self.model[pk]
        owner = self.new_runner()
        accepted = not expected.terminal and (force or expected.unheld)
        event(f"take_over: {'accepted' if accepted else 'refused'}")
        before = None if accepted else self.snapshot(pk)
        taken = lifecycle.take_lease(pk, owner, LIVE, force=force)
        assert taken == accepted, (
            f"take_lease({pk}, force={force}) = {taken} on {expected.state.value} held by {expected.owner} "
            f"(live={expected.live})"
        )
        if not taken:
            self.refused(before, pk, f"take_lease by {owner}")
            return
        expected.owner, expected.live = owner, True
        self.hold(owner, pk)

    @rule(limit=st.integers(min_value=1, max_value=3))
    def claim(self, limit: int) -> None:
        """A daemon worker claims the runnable: submitted, active, unpaused, unheld, waiting for none."""
        runnable = sorted(
            pk
            for pk, e in self.model.items()
            if e.submitted and not e.terminal and not e.paused and e.unheld and not e.waits
        )
        owner = self.new_runner()
        claimed = lifecycle.claim_runnable(owner, LIVE, limit)
        assert claimed == runnable[:limit], (claimed, runnable, limit)
        for pk in claimed:
            if self.model[pk].state is S.WAITING:
                event("claim: a parent whose children ended")
            self.model[pk].owner, self.model[pk].live = owner, True
            self.hold(owner, pk)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        """A runner renews its leases (also an expired one nobody took: it was alive after all)."""
        owner = data.draw(st.sampled_from(sorted(self.handles)), label="runner")
        mine = [pk for pk, e in self.model.items() if e.owner == owner and not e.terminal]
        assert lifecycle.renew(owner, LIVE) == len(mine)
        for pk in mine:
            self.model[pk].live = True

    @precondition(lambda self: any(e.terminal for e in self.model.values()))
    @rule(data=st.data(), write=st.sampled_from(["commit", "kill", "unheld", "end_unheld", "take", "force"]))
    def write_after_end(self, data: st.DataObject, write: str) -> None:
        """Any write to a terminal process, even one that names no holder, is refused."""
        pk = data.draw(st.sampled_from(sorted(p for p, e in self.model.items() if e.terminal)), label="pk")
        before = self.snapshot(pk)
        node = load_node(pk)
        if write == "commit":
            with pytest.raises(IllegalTransitionError):
                lifecycle.commit(node, None, S.RUNNING, checkpoint={"late": True}, checkpoint_seq=99)
        elif write == "kill":
            assert lifecycle.kill(node, None, "late") is False
        elif write == "unheld":
            assert lifecycle.set_unheld(pk, paused=True) is False
        elif write == "end_unheld":
            assert lifecycle.end_unheld(pk, S.EXCEPTED, log_level="ERROR", log="late") is False
        else:
            owner = self.new_runner()
            taken = lifecycle.take_lease(pk, owner, LIVE, force=write == "force")
            assert taken is False, f"take_lease(force={write == 'force'}) took terminal process {pk}"
        self.refused(before, pk, f"{write} of terminal process {pk}")

    # -- invariants ------------------------------------------------------------------------------------------
    @invariant()
    def rows_match_the_model(self) -> None:
        """Each row is as the model says (a terminal one as when it ended); moves follow TRANSITIONS."""
        rows, waits, checkpoints = _read(sorted(self.model))
        now = time.time()
        for pk, expected in self.model.items():
            row = rows[pk]
            self.moved_along_an_edge(pk, S(row["state"]))
            if expected.final is not None:
                assert row == expected.final, f"terminal process {pk} changed:\n{expected.final}\n->\n{row}"
                continue
            live = row["lease_expires"] is not None and row["lease_expires"] > now
            got = {
                "state": row["state"],
                "owner": row["lease_owner"],
                "live": live if row["lease_owner"] is not None else False,
                "paused": bool(row["paused"]),
                "status": row["status"],
                "seq": row["checkpoint_seq"],
                "submitted": bool(row["submitted"]),
                "caller": row["caller_id"],
                "waits": waits.get(pk, set()),
                "waits_on_children": bool(row["waits_on_children"]),
                "checkpoints": [seq for seq, _ in checkpoints.get(pk, [])],
            }
            want = {
                "state": expected.state.value,
                "owner": expected.owner,
                "live": expected.live if expected.owner is not None else False,
                "paused": expected.paused,
                "status": expected.status,
                "seq": expected.seq,
                "submitted": expected.submitted,
                "caller": expected.caller,
                "waits": expected.waits,
                "waits_on_children": bool(expected.waits),  # the claim's index reads this flag
                "checkpoints": expected.checkpoints,
            }
            diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
            assert not diff, f"process {pk}: (row, model) differ in {diff}"

    def moved_along_an_edge(self, pk: int, now: S) -> None:
        was = self.seen[pk]
        if now is not was:
            assert now in TRANSITIONS[was], f"process {pk} moved {was.value} -> {now.value}"
            check_transition(was, now, pk)
            self.seen[pk] = now

    @invariant()
    def check_transition_agrees_with_the_table(self) -> None:
        for current, target in itertools.product(S, S):
            legal = target in TRANSITIONS[current]
            try:
                check_transition(current, target)
                accepted = True
            except IllegalTransitionError:
                accepted = False
            assert accepted == legal, (current, target)


def test_lifecycle_state_machine(any_profile: str) -> None:
    # a PostgreSQL commit costs a round trip: half the examples there keep the test well under a minute
    chosen = SETTINGS if any_profile == "default" else settings(SETTINGS, max_examples=25)
    run_state_machine_as_test(LifecycleMachine, settings=chosen)


def test_transition_table_shape() -> None:
    """Terminal states lead nowhere, nothing leads back to created, and created cannot finish directly."""
    assert {s for s in S if not TRANSITIONS[s]} == {s for s in S if s.is_terminal}
    assert all(S.CREATED not in targets for targets in TRANSITIONS.values())
    assert S.FINISHED not in TRANSITIONS[S.CREATED]
    for current, target in itertools.product(S, S):
        if target not in TRANSITIONS[current]:
            with pytest.raises(IllegalTransitionError, match=f"{current.value} to {target.value}"):
                check_transition(current.value, target.value, 7)


# -- the machine's findings, one by one ---------------------------------------------------------------------


def _held(owner: str) -> Raises:
    """A top-level process run here: running, held by ``owner``."""
    process = Raises(Raises.prepare_inputs({}))
    process._store_new(state=S.RUNNING, parent=None, owner=owner, lease_seconds=LIVE)
    return process


def _ended() -> int:
    process = _held("runner-a")
    process._finish(None)
    assert process.node.refresh().process_state is S.FINISHED
    return process.pk


@pytest.mark.parametrize("force", [False, True], ids=["free", "force"])
def test_take_lease_refuses_a_terminal_process(force: bool) -> None:
    """A finished process has no lease to take: ``take_lease`` returns False and writes nothing."""
    pk = _ended()
    before = _read([pk])
    assert lifecycle.take_lease(pk, "runner-b", LIVE, force=force) is False
    assert _read([pk]) == before


def test_reserve_job_slot_leaves_a_terminal_process_alone() -> None:
    """A job killed while it waited for a slot: the reservation must not write its row."""
    pk = _ended()
    before = _read([pk])
    assert lifecycle.reserve_job_slot(pk, 1, None) is False
    assert _read([pk]) == before


def test_park_by_a_runner_that_lost_the_process_writes_nothing() -> None:
    """A runner that lost its waiting work chain parks it: no wait row, the new holder keeps it."""
    parent = _held("runner-a")
    child = Raises(Raises.prepare_inputs({}))
    child._store_new(state=S.CREATED, parent=parent, submitted=True)
    parent._commit(S.WAITING, checkpoint={"step": 1}, status="waiting")
    assert lifecycle.take_lease(parent.pk, "runner-b", LIVE, force=True)  # runner-a lost it
    before = _read([parent.pk])
    try:
        parked = lifecycle.park(parent.node, "runner-a", [child.pk], "waiting")
    except LeaseLostError:
        parked = False
    assert parked is False, "park by a runner that no longer holds the process reported success"
    assert _read([parent.pk]) == before


def test_park_with_nothing_to_wait_for_keeps_the_lease_inside_a_transaction() -> None:
    """``park`` finding every child ended returns False (keep running): the lease must stay held,
    also when the caller's transaction encloses it (the backend joins it instead of opening one)."""
    parent = _held("runner-a")
    child = Raises(Raises.prepare_inputs({}))
    child._store_new(state=S.CREATED, parent=parent, submitted=True)
    parent._commit(S.WAITING, checkpoint={"step": 1}, status="waiting")
    assert lifecycle.end_unheld(child.pk, S.KILLED, log_level="WARNING", log="killed")
    before = _read([parent.pk])
    assert lifecycle.park(parent.node, "runner-a", [child.pk], "waiting") is False
    assert _read([parent.pk]) == before
    with get_backend().transaction():
        assert lifecycle.park(parent.node, "runner-a", [child.pk], "waiting") is False
    after = _read([parent.pk])
    assert after == before, f"a park that keeps running released the process:\n{before}\n->\n{after}"
