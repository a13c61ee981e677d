"""The process lifecycle: the one writer of process rows.

Every write of a row of the ``processes`` table — creation, each state
change, the ``paused`` flag, the lease, the checkpoint, the status line —
goes through a function of this module.  Each is one conditional UPDATE
(or INSERT) that says what the row must still be for the write to happen:

* the **state** it may come from, taken from :data:`TRANSITIONS` (a write
  that would move a process out of a terminal state, or from ``created``
  straight to ``finished``, is refused with :class:`IllegalTransitionError`);
* the **holder**: a runner writes only rows whose lease it holds
  (``lease_owner`` = its owner id).  A runner that lost its lease — it was
  presumed dead and another took over, or the process was killed — gets
  :class:`LeaseLostError` and commits nothing more for that process
  (fencing);
* or **nobody**: control acting on a process that no live runner holds
  writes only if that is still so when it writes.

A refused write changes nothing, so two writers can never interleave half
moves.  After a write the process node's cached row is refreshed from the
values this module committed (:func:`_committed`), never patched elsewhere,
and the process's state bell is rung (:func:`_announce`, after the commit:
best effort, a lookup when nobody watches), which wakes :func:`plait.watch`.

Engine errors form one tree under :class:`EngineError`.  The control-flow
signals (:class:`KillSignal`, :class:`ProcessParked`) derive from
:class:`BaseException`, so a step's ``except Exception`` cannot swallow a
kill or a park.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plait.engine.bell import ring_state
from plait.orm import ProcessNode, ProcessState
from plait.storage.backend import ACTIVE_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from plait.storage import StorageBackend

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "ControlSignal",
    "EngineError",
    "IllegalTransitionError",
    "KillSignal",
    "LeaseLostError",
    "NotResumableError",
    "ProcessHeldError",
    "ProcessKilledError",
    "ProcessParked",
    "check_transition",
]

S = ProcessState

#: the legal moves: ``TRANSITIONS[a]`` holds every state a process in state ``a`` may be written to.
#: ``running -> running`` is a checkpoint within a state; terminal states lead nowhere.
TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    S.CREATED: frozenset({S.RUNNING, S.EXCEPTED, S.KILLED}),
    S.RUNNING: frozenset({S.RUNNING, S.WAITING, S.FINISHED, S.EXCEPTED, S.KILLED}),
    S.WAITING: frozenset({S.RUNNING, S.WAITING, S.FINISHED, S.EXCEPTED, S.KILLED}),
    S.FINISHED: frozenset(),
    S.EXCEPTED: frozenset(),
    S.KILLED: frozenset(),
}

assert {s.value for s in S if not TRANSITIONS[s]} == set(TERMINAL_STATES)


def _sources(target: ProcessState) -> tuple[str, ...]:
    return tuple(sorted(source.value for source, targets in TRANSITIONS.items() if target in targets))


#: ``_FROM[b]``: the states from which a process may be written to ``b``
_FROM: dict[ProcessState, tuple[str, ...]] = {state: _sources(state) for state in S}


# -- errors and signals --------------------------------------------------------------------------------


class EngineError(RuntimeError):
    """Base of the engine's errors (a ``RuntimeError``, so older ``except RuntimeError`` still works)."""


class IllegalTransitionError(EngineError):
    """A write would move a process along no edge of :data:`TRANSITIONS` (e.g. out of a terminal state)."""


class LeaseLostError(EngineError):
    """This runner no longer holds the process (another took it over, or it was killed): stop touching it."""


class ProcessKilledError(EngineError):
    """Raised by ``run``/``arun`` when the process it ran was killed."""


class ProcessHeldError(EngineError):
    """The process is held by another live interpreter (resume it there, or wait for its lease)."""


class NotResumableError(EngineError):
    """The process cannot be continued here (its class cannot be imported, or its checkpoint not read)."""


class ControlSignal(BaseException):
    """Base of the engine's control-flow signals; not an ``Exception``, so user code cannot catch it."""


class KillSignal(ControlSignal):
    """A kill reached the process: unwind to the runner, which records it killed."""


class ProcessParked(ControlSignal):
    """The runner let go of the process: its state is committed and it waits in the database.

    A daemon worker parks a work chain that waits for children, and a paused
    process: whichever worker claims it later continues from the checkpoint.
    """


def encode_call_key(caller_pk: int, index: int) -> str:
    """The key of the ``index``-th call a process makes: ``caller_pk:index``, stable over re-runs."""
    return f"{caller_pk}:{index}"


def call_index(call_key: str) -> int:
    """The index of a call key made by :func:`encode_call_key` (the one place that decodes it)."""
    return int(call_key.rsplit(":", 1)[1])


def check_transition(current: ProcessState | str, target: ProcessState | str, pk: int | None = None) -> None:
    """Raise :class:`IllegalTransitionError` unless ``current -> target`` is in :data:`TRANSITIONS`."""
    current, target = ProcessState(current), ProcessState(target)
    if target not in TRANSITIONS[current]:
        who = f"process {pk}" if pk is not None else "a process"
        raise IllegalTransitionError(f"{who} cannot go from {current.value} to {target.value}")


# -- helpers ------------------------------------------------------------------------------------------------


def _pk(node: ProcessNode) -> int:
    pk = node.pk
    if pk is None:
        raise EngineError(f"{node!r} is not stored: it has no process row")
    return pk


def _backend() -> StorageBackend:
    from plait.storage import get_backend

    return get_backend()


def _committed(node: ProcessNode | None, values: Mapping[str, Any]) -> None:
    """Refresh a node's cached process row from what was just committed."""
    if node is None:
        return
    cached = node._process
    for key, value in values.items():
        if not key.startswith("_") and key not in ("checkpoint", "mtime"):
            cached[key] = value
    if "checkpoint" in values or "checkpoint_seq" in values:
        row = node.__dict__.setdefault("_process_row_data", {})
        row.update({k: values[k] for k in ("checkpoint", "checkpoint_seq") if k in values})


def _refusal(
    pk: int, owner: str | None, target: str | None, row: Mapping[str, Any] | None = None
) -> EngineError:
    """Why a conditional write changed nothing: the row was gone, terminal, or held by someone else.

    ``row``: the row as read after the refusal, if the caller has it already.
    """
    if row is None:
        row = _backend().get_process(pk)
    if row is None:
        return EngineError(f"process {pk} does not exist")
    if owner is not None and row["lease_owner"] != owner:
        holder = row["lease_owner"] or "nobody"
        return LeaseLostError(f"process {pk} is no longer held by {owner} (held by {holder}, {row['state']})")
    if target is not None:
        try:
            check_transition(row["state"], target, pk)
        except IllegalTransitionError as exc:
            return exc
    return EngineError(f"process {pk} changed while it was written ({row['state']})")


def lease_expiry(seconds: float) -> float:
    return time.time() + seconds


# -- creation ------------------------------------------------------------------------------------------------


def insert(
    row: Mapping[str, Any],
    *,
    caller: int | None = None,
    caller_owner: str | None = None,
    checkpoint_step: str | None = None,
) -> None:
    """Insert a new process row (inside the caller's transaction, with the node and its links).

    A row that carries a ``checkpoint`` (a work chain restarted from a step of another, see
    :mod:`plait.engine.restart_from`) starts from it, and the checkpoint is also written to the
    history as seq 0 with ``checkpoint_step`` (the step that ran before it), so the new process
    can itself be restarted from there.

    With ``caller_owner``, the calling process must still be active and held
    by that owner, checked in the same transaction: a caller that was killed,
    or whose runner lost its lease, launches nothing (raises
    :class:`LeaseLostError` or :class:`IllegalTransitionError`, and the
    caller's transaction rolls back).
    """
    if row["state"] != S.CREATED.value:
        check_transition(S.CREATED, row["state"])
    backend = _backend()
    if caller is not None and caller_owner is not None:
        if not backend.update_process(caller, expect_owner=caller_owner, expect_states=ACTIVE_STATES):
            now = backend.get_process(caller)
            if now is not None and now["lease_owner"] == caller_owner and now["state"] == S.KILLED.value:
                raise KillSignal(f"process {caller} was killed: it launches nothing more")
            raise _refusal(caller, caller_owner, "running", now)
    backend.insert_process(row)
    if row.get("checkpoint") is not None:
        backend.add_checkpoint(row["node_id"], 0, checkpoint_step, row["checkpoint"])


def waiting_status(pks: Sequence[int | str]) -> str:
    """The status line of a process that waits for ``pks``."""
    count = len(pks)
    return f"waiting for {count} process{'es' if count > 1 else ''}: {', '.join(map(str, pks))}"


# -- transitions of a held process ------------------------------------------------------------------------


def commit(
    node: ProcessNode,
    owner: str | None,
    state: ProcessState,
    *,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_seq: int | None = None,
    step: str | None = None,
    keep_history: bool = True,
    drop_history: bool = False,
    within: Callable[[], None] | None = None,
    **fields: Any,
) -> list[int]:
    """Commit ``state`` (with its checkpoint and ``fields``) for the process ``owner`` holds.

    ``within`` runs first inside the same transaction (outputs, runtime
    attributes).  A terminal state releases the lease, deletes the
    checkpoint history if ``drop_history`` (a process that finished ok), and releases the
    parents parked on this process; the returned list holds those parents
    (ring the work bell for them).

    Raises:
        LeaseLostError: ``owner`` does not hold the process any more (nothing was written).
        IllegalTransitionError: the process is in a state that cannot go to ``state``.
    """
    woken, _ = _commit_state(
        node,
        owner,
        state,
        None,
        checkpoint=checkpoint,
        checkpoint_seq=checkpoint_seq,
        step=step,
        keep_history=keep_history,
        drop_history=drop_history,
        within=within,
        fields=fields,
    )
    return woken


def commit_waiting(
    node: ProcessNode,
    owner: str | None,
    children: Sequence[int],
    *,
    park: bool,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_seq: int | None = None,
    step: str | None = None,
    keep_history: bool = True,
    within: Callable[[], None] | None = None,
) -> bool:
    """Commit ``waiting`` for ``children`` (the status line names them), as :func:`commit` does.

    ``park``: the runner parks waiting processes (a daemon worker), so the same UPDATE also
    releases the process to wait in the database for those of ``children`` still active, as
    :func:`park` does; True when it was parked.  With none active (or without ``park``) it is
    committed waiting and stays held: the caller waits for the children itself.

    Raises:
        LeaseLostError, IllegalTransitionError: as :func:`commit` (nothing was written).
    """
    if park and owner is None:
        raise EngineError(f"process {_pk(node)} has no lease owner: only a held process can be parked")
    _, parked = _commit_state(
        node,
        owner,
        S.WAITING,
        children if park else None,
        checkpoint=checkpoint,
        checkpoint_seq=checkpoint_seq,
        step=step,
        keep_history=keep_history,
        drop_history=False,
        within=within,
        fields={"status": waiting_status(children)},
    )
    return parked


def _commit_state(
    node: ProcessNode,
    owner: str | None,
    state: ProcessState,
    park_on: Sequence[int] | None,
    *,
    checkpoint: dict[str, Any] | None,
    checkpoint_seq: int | None,
    step: str | None,
    keep_history: bool,
    drop_history: bool,
    within: Callable[[], None] | None,
    fields: Mapping[str, Any],
) -> tuple[list[int], bool]:
    """The one commit of a held process's state: ``(parents woken, parked)``; see :func:`commit`."""
    backend = _backend()
    pk = _pk(node)
    values: dict[str, Any] = {"state": state.value, **fields}
    if checkpoint is not None:
        values["checkpoint"] = checkpoint
        values["checkpoint_seq"] = checkpoint_seq
    if state.is_terminal:
        values.update(lease_owner=None, lease_expires=None, status=None)
        values.setdefault("paused", False)
    woken: list[int] = []
    parked = False
    with backend.transaction():
        if within is not None:
            within()
        if park_on:
            assert owner is not None
            written = backend.park(
                pk,
                owner,
                park_on,
                values["status"],
                expect_states=_FROM[state],
                **{k: v for k, v in values.items() if k != "status"},
            )
            if written is None:
                raise _refusal(pk, owner, state.value)
            parked = written
        if not parked and not backend.update_process(
            pk, expect_owner=owner, expect_states=_FROM[state], **values
        ):
            raise _refusal(pk, owner, state.value)
        if checkpoint is not None and keep_history:
            backend.add_checkpoint(pk, checkpoint_seq or 0, step, checkpoint)
        if state.is_terminal:
            if drop_history:
                backend.delete_checkpoints(pk)
            if node._process.get("submitted"):  # only daemon children have parked parents
                woken = backend.release_waits_on(pk)
    if parked:
        values.update(lease_owner=None, lease_expires=None)
    _committed(node, values)
    _announce(pk)
    return woken, parked


def start_running(nodes: Sequence[ProcessNode], owner: str) -> list[ProcessNode]:
    """Move the ``created`` processes of ``nodes`` that ``owner`` holds to ``running``, in one transaction.

    For a worker that has just claimed and rebuilt a batch: one commit for all of them instead
    of one each (:func:`commit` does the same move for one process).  A process that is not
    ``created`` or not held by ``owner`` any more is left as it is (the caller's usual
    :func:`commit` then meets the refusal and its reason); returns the nodes that moved.
    """
    target = S.RUNNING
    values: dict[str, Any] = {"state": target.value}
    fresh = {_pk(node): node for node in nodes if node.process_state is S.CREATED}
    changed = set(
        _backend().update_held_processes(list(fresh), owner=owner, expect_states=_FROM[target], **values)
    )
    moved = [node for pk, node in fresh.items() if pk in changed]
    for node in moved:
        _committed(node, values)
        _announce(_pk(node))
    return moved


def end(
    node: ProcessNode,
    owner: str | None,
    state: ProcessState,
    *,
    log_level: str,
    log: str,
    within: Callable[[], None] | None = None,
    step: str | None = None,
    **fields: Any,
) -> bool:
    """Commit a terminal ``state`` and log why; False (and nothing written) if ``owner`` lost the process.

    ``step``: the work chain step the process was in, kept in the log line's extras (``{"step": ...}``),
    where a restart looks for the step that failed.
    """
    try:
        woken = commit(node, owner, state, keep_history=False, within=within, **fields)
    except (LeaseLostError, IllegalTransitionError):
        return False
    _backend().insert_log(_pk(node), log_level, log, {"step": step} if step else {})
    _ring(woken)
    return True


def except_(node: ProcessNode, owner: str | None, exc: BaseException, step: str | None = None) -> bool:
    """Mark a held process excepted with its traceback (outputs linked so far stay)."""
    text = "".join(traceback.format_exception(exc))
    return end(
        node,
        owner,
        S.EXCEPTED,
        log_level="ERROR",
        log=f"excepted: {type(exc).__name__}: {exc}",
        step=step,
        exception=text,
    )


def kill(node: ProcessNode, owner: str | None, message: str, step: str | None = None) -> bool:
    """Mark a held process killed; False if it had ended (or was taken) already."""
    return end(
        node, owner, S.KILLED, log_level="WARNING", log=f"killed: {message}", step=step, exit_message=message
    )


def report(pk: int, owner: str | None, level: str, text: str, extra: Mapping[str, Any]) -> None:
    """Add a log line to a process: only while ``owner`` holds it (None: a process with no lease).

    Raises:
        LeaseLostError: ``owner`` no longer holds it (nothing was written).
    """
    backend = _backend()
    if owner is None:
        backend.insert_log(pk, level, text, extra)
        return
    with backend.transaction():
        if not backend.update_process(pk, expect_owner=owner):
            raise _refusal(pk, owner, None)
        backend.insert_log(pk, level, text, extra)


def set_status(pk: int, owner: str | None, node: ProcessNode | None = None, **fields: Any) -> bool:
    """Write non-state columns (``status``, ``job_stage``, ``paused``) of a held, active process."""
    ok = _backend().update_process(pk, expect_owner=owner, expect_states=ACTIVE_STATES, **fields)
    if ok:
        _committed(node, fields)
        _announce(pk)
    return ok


def pause_held(node: ProcessNode, owner: str, reason: str | None, *, release: bool) -> None:
    """Flag a held process paused (``reason`` becomes its status); ``release`` also lets go of the lease.

    Raises:
        LeaseLostError: the runner no longer holds it.
    """
    fields: dict[str, Any] = {"paused": True}
    if reason:
        fields["status"] = f"paused: {reason}"
    if release:
        fields.update(lease_owner=None, lease_expires=None)
    pk = _pk(node)
    if not set_status(pk, owner, node, **fields):
        raise _refusal(pk, owner, None)
    _backend().insert_log(pk, "WARNING" if reason else "REPORT", reason or "paused", {})


#: ``play_held(..., status=KEEP_STATUS)``: leave the status line as it is
KEEP_STATUS = "<keep>"


def play_held(node: ProcessNode, owner: str, status: str | None = KEEP_STATUS) -> None:
    """Clear the paused flag of a held process (and set ``status`` unless it is :data:`KEEP_STATUS`)."""
    fields: dict[str, Any] = {"paused": False}
    if status != KEEP_STATUS:
        fields["status"] = status
    pk = _pk(node)
    if not set_status(pk, owner, node, **fields):
        raise _refusal(pk, owner, None)
    _backend().insert_log(pk, "REPORT", "played", {})


# -- leases -------------------------------------------------------------------------------------------------


def take_lease(pk: int, owner: str, seconds: float, *, force: bool = False) -> bool:
    """Hold process ``pk`` (free, expired, or with ``force`` anyone's) for ``seconds``."""
    return _backend().take_lease(pk, owner, lease_expiry(seconds), force=force)


def renew(owner: str, seconds: float) -> int:
    """Extend every lease ``owner`` holds; returns how many it still holds."""
    return _backend().renew_leases(owner, lease_expiry(seconds))


def release(owner: str, pks: Sequence[int] | None = None) -> None:
    """Let go of the leases ``owner`` holds (all, or on ``pks``)."""
    _backend().release_leases(owner, pks)


def release_dead_interpreter(hostname: str, pid: int) -> list[int]:
    """Free every lease of interpreter ``pid`` of ``hostname``, known to be dead (its supervisor reaped
    it); returns the pks freed, and rings the work bell for them."""
    freed = _backend().release_leases_of_dead_worker(hostname, pid)
    _ring(freed)
    return freed


def claim_runnable(owner: str, seconds: float, limit: int) -> list[int]:
    """A daemon worker's claim: lease up to ``limit`` runnable processes."""
    return _backend().claim_runnable(owner, seconds, limit)


def park(node: ProcessNode, owner: str, children: Sequence[int], status: str) -> bool:
    """Release a held process to wait in the database for its active ``children`` (False: none active).

    Raises:
        LeaseLostError, IllegalTransitionError: ``owner`` does not hold it, or it has ended.
    """
    pk = _pk(node)
    parked = _backend().park(pk, owner, children, status)
    if parked is None:
        raise _refusal(pk, owner, "waiting")
    if parked:
        _committed(node, {"lease_owner": None, "lease_expires": None, "status": status})
        _announce(pk)
    return parked


def park_until(node: ProcessNode, owner: str, wake_at: float) -> None:
    """Release a held, waiting process until ``wake_at`` (a durable timer, committed already):
    the daemon's claim query takes it again at that time, not before.

    Raises:
        LeaseLostError, IllegalTransitionError: ``owner`` does not hold it, or it has ended.
    """
    pk = _pk(node)
    values: dict[str, Any] = {"lease_owner": None, "lease_expires": None, "wake_at": wake_at}
    if not _backend().update_process(pk, expect_owner=owner, expect_states=(S.WAITING.value,), **values):
        raise _refusal(pk, owner, "waiting")
    _committed(node, values)


def reserve_job_slot(pk: int, computer_id: int, cap: int | None) -> bool:
    return _backend().reserve_job_slot(pk, computer_id, cap)


# -- processes nobody holds ------------------------------------------------------------------------------


def set_unheld(pk: int, *, dead_owner: str | None = None, **fields: Any) -> bool:
    """Write columns of an active process that no live runner holds; False if one holds it now.

    ``dead_owner``: the holder the caller found dead (its lease not yet expired) counts as nobody.
    """
    ok = _backend().update_process(
        pk, expect_states=ACTIVE_STATES, expect_unheld=True, dead_owner=dead_owner, **fields
    )
    if ok:
        _announce(pk)
    return ok


def end_unheld(
    pk: int, state: ProcessState, *, log_level: str, log: str, dead_owner: str | None = None, **fields: Any
) -> bool:
    """End an active process that nobody holds (``state`` terminal); False if someone holds it now."""
    assert state.is_terminal
    backend = _backend()
    values = {"state": state.value, "lease_owner": None, "lease_expires": None, "status": None, **fields}
    values.setdefault("paused", False)
    with backend.transaction():
        if not backend.update_process(
            pk, expect_states=_FROM[state], expect_unheld=True, dead_owner=dead_owner, **values
        ):
            return False
        backend.delete_waits_of(pk)
        woken = backend.release_waits_on(pk)
    _announce(pk)
    backend.insert_log(pk, log_level, log, {})
    _ring(woken)
    return True


def end_abandoned(
    pk: int, caller: int, owner: str | None, state: ProcessState, *, log: str, **fields: Any
) -> bool:
    """End an active child of ``caller`` whoever holds it; only for ``owner``, the runner holding ``caller``.

    Used when a re-run step did not launch again a process function that the
    interrupted attempt had left unfinished.  Fenced: in one transaction the
    caller must still be held by ``owner`` (a runner that lost the caller to a
    takeover ends nothing); returns False when nothing was written.
    """
    assert state.is_terminal
    backend = _backend()
    values = {"state": state.value, "lease_owner": None, "lease_expires": None, "status": None, **fields}
    with backend.transaction():
        holder = backend.get_process(caller)
        if holder is None or holder["lease_owner"] != owner or holder["state"] not in ACTIVE_STATES:
            return False
        row = backend.get_process(pk)
        if row is None or row["caller_id"] != caller:
            return False
        if not backend.update_process(pk, expect_states=_FROM[state], **values):
            return False
        backend.insert_log(pk, "WARNING", log, {})
    _announce(pk)
    return True


def _announce(pk: int) -> None:
    """Ring process ``pk``'s state bell: its row changed and the change is committed.

    Best effort and cheap: :func:`plait.engine.bell.ring_state` never raises, never blocks and,
    with nobody watching and no broker running here, costs a dictionary look-up.  Inside an
    enclosing transaction it rings once that commits (a watcher told earlier would read the
    row as it was and wait for a bell already spent), and not at all if it rolls back.
    """
    _backend().after_commit(functools.partial(ring_state, pk))


def _ring(woken: list[int]) -> None:
    """Ring the work bell for parents made runnable (once committed, as :func:`_announce`)."""
    if woken:
        from plait.engine.bell import ring_work

        _backend().after_commit(ring_work)
