"""Durable async workflows: ``@workflow`` on an ``async def`` makes a process that survives crashes.

::

    @plait.workflow
    async def fan_out(n: Int) -> ...:
        results = await asyncio.gather(*(plait.call(square, x=i) for i in range(n.value)))
        return {"total": total(*results)}

Inputs and outputs come from the signature, exactly as for process functions
(:mod:`plait.engine.process_function`); the node is a ``WorkFunctionNode``
whose ``process_type`` names the function and whose attribute
``durable_workflow`` is True (queryable), with CALL links to every child.

Inside the function, ``await plait.call(child, **inputs)`` runs ``child`` as a
recorded child and returns its outputs (the single ``result`` node, or the
dict of outputs).  Each launch gets the call key ``workflow_pk:index`` in the
order launches are *started*; ``asyncio.gather`` of coroutines created in
order starts them in order, so the sequence is deterministic.

Resume is replay: the function runs again from the top, and each launch whose
key was recorded returns that child (finished: its outputs at once;
unfinished: it is waited for) instead of launching anew, through the same
mechanism as work chain children (``Process._reuse_recorded_call``).  A
replayed launch of a different class or different inputs raises
:class:`NonDeterminismError`, naming the position and both launches.

Cost: before a replay, every recorded launch (child node and process row, the
stored hashes of its inputs, its outputs if it finished ok) is read in a few
queries whatever their number (``_read_recorded``); the replay is served from
that.  Launches are queued and checked and submitted in the database thread,
one batch per loop turn and in launch order (``_submit_queued``), so nothing of
it runs on the event loop and children start while the batch goes on; outputs
of children that ended together are read in one go (``_read_queued``).

What must be deterministic: the sequence of launches (class and inputs at
each position).  What need not be: logging, pure computation, timing.

Waiting: while its calls wait for unfinished children, the workflow commits
``waiting``, and where the host parks waiting processes (``parks_waiting``, as for a
work chain): a daemon worker parks it (lease released, no slot held, woken
by the last child), so the coroutine is dropped and the next claim replays it;
in a script the calls wait in memory.  ``await plait.sleep(seconds)`` is a
durable timer: its wake time is committed (the ``wake_at`` column and the
workflow's checkpoint) before the wait, and a replay waits only for the time
left.  A :class:`NonDeterminismError` pauses the workflow (its message is
reported and is the paused status); playing it replays from the top again.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from plait.engine.exit_code import ExitCode
from plait.engine.lifecycle import EngineError, ProcessParked, encode_call_key
from plait.engine.ports import flatten_nodes
from plait.engine.process_function import FunctionProcess, ProcessFunction, _nest
from plait.engine.resolve import resolve_process
from plait.orm import LinkType, Node, ProcessNode, ProcessState, WorkFunctionNode, load_node
from plait.orm.node import node_from_row

__all__ = ["DurableWorkflow", "NonDeterminismError", "call", "current_workflow", "sleep", "workflow"]

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: contextvars.ContextVar[DurableWorkflowProcess | None] = contextvars.ContextVar(
    "plait_durable_workflow", default=None
)

#: loop turns a waiting call lets pass before the workflow decides to park, so that the launches
#: started alongside it (an ``asyncio.gather``) are submitted first and the park waits for all
_SETTLE_TURNS = 3
_CHECKPOINT_VERSION = 1


class NonDeterminismError(EngineError):
    """A replayed durable workflow launched something else than it did before at a recorded position."""


def current_workflow() -> DurableWorkflowProcess | None:
    """The durable workflow whose coroutine is running in this task, or None."""
    return _CURRENT.get()


class DurableWorkflowProcess(FunctionProcess):
    """The process class generated for one ``@workflow`` function: runs the coroutine on the loop."""

    def __init__(self, inputs: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(inputs, **kwargs)
        #: ``{child pk: future}`` of the calls waiting for an unfinished child, not yet settled
        self._waits: dict[int, asyncio.Future[None]] = {}
        #: the task deciding whether to park for ``_waits``, and (while it commits) the future new
        #: launches wait for: launches made during its first loop turns join the same park
        self._settling: asyncio.Task[None] | None = None
        self._committing: asyncio.Future[None] | None = None
        self._parked = False
        self._diverged: NonDeterminismError | None = None
        #: ``{index: wake time}`` of the durable timers reached so far (kept in the checkpoint)
        self._sleeps: dict[str, float] = {}
        self._sleep_index = 0
        self._wake_event: asyncio.Event | None = None  # set by the placement while a timer waits
        #: ``{call key: what the recorded launch was}``, read in a few queries before a replay
        self._records: dict[str, _Recorded] = {}
        #: launch positions whose recorded child a restart offered from the old run (see restart_from)
        self._restart_offered: set[int] = set()
        #: launches waiting to be checked and submitted (in launch order) by ``_launcher``
        self._launch_queue: list[tuple[Any, Any, dict[str, Any], asyncio.Future[Any]]] = []
        self._launcher: asyncio.Task[None] | None = None
        #: children whose outputs are to be read (in one go) by ``_output_reader``
        self._output_queue: list[tuple[int, asyncio.Future[Any]]] = []
        self._output_reader: asyncio.Task[None] | None = None

    def _node_attributes(self, non_db: dict[str, Any]) -> dict[str, Any]:
        attributes = super()._node_attributes(non_db)
        attributes["durable_workflow"] = True
        return attributes

    # -- running ---------------------------------------------------------------------------------
    async def _execute(self) -> ExitCode | None:
        runner = self.runner
        assert runner is not None
        while True:
            try:
                result = await self._run_from_the_top()
            except NonDeterminismError as exc:
                if self._parked:
                    raise ProcessParked() from None
                # the user fixes the code and plays it (or restarts it): pause, through the lifecycle
                await runner.call_db(self, self.report, f"paused: {exc}")
                await runner.pause_process(self, f"non-determinism: {exc}")  # a daemon parks it here
                await runner.call_db(self, self._prepare_replay)
                continue
            if self._parked:
                raise ProcessParked()  # the coroutine swallowed the park: it still waits in the database
            return await runner.call_db(self, self._register_result, result)

    async def _run_from_the_top(self) -> Any:
        """Run the function once from the top (a first run and a replay are the same thing)."""
        args, kwargs = self._function_arguments()
        runner = self.runner
        if self.node.get_attribute("restarted_from", None) is not None and runner is not None:
            await runner.call_db(self, self._offer_restart_launches)
        if self._recorded_children:  # a replay: what was launched, read at once, not launch by launch
            assert runner is not None
            await runner.call_db(self, self._read_recorded)
        token = _CURRENT.set(self)
        try:
            return await self._func(*args, **kwargs)
        finally:
            _CURRENT.reset(token)

    def _prepare_replay(self) -> None:
        """(thread) Before an in-memory replay: every recorded launch is matched again from launch 0."""
        from plait.storage import get_backend

        self._call_counter = 0
        self._sleep_index = 0
        self._diverged = None
        self._records = {}  # read again by the replay, with the children recorded now
        self._recorded_children = {
            row["call_key"]: row["node_id"] for row in get_backend().get_children(self.pk) if row["call_key"]
        }

    def _restore(self, checkpoint: dict[str, Any] | None) -> None:
        """A workflow resumes from the top; its checkpoint holds only the wake times of its timers."""
        if checkpoint:
            self._sleeps = {str(k): float(v) for k, v in checkpoint.get("sleeps", {}).items()}

    def request_pause(self) -> None:
        super().request_pause()
        if self._wake_event is not None:
            self._wake_event.set()  # a sleeping workflow looks at the pause at once

    async def _before_launch(self) -> None:
        """Wait while a park is decided, then refuse to go on if it parked or diverged."""
        runner = self.runner
        assert runner is not None
        while self._committing is not None:
            await asyncio.shield(self._committing)
        runner.check_safe_point(self)  # a launch is a safe point: a kill or a pause takes effect here
        if self._pause_requested and not self._parked:
            await runner.pause_process(self)
        if self._parked:
            raise ProcessParked()
        if self._diverged is not None:
            raise self._diverged

    async def _launch(self, process: Any, inputs: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
        runner = self.runner
        assert runner is not None
        await self._before_launch()
        # checked and submitted in the database thread, in launch order, with the launches started
        # in the same loop turns (an ``asyncio.gather``): the call keys follow the launch order
        future: asyncio.Future[tuple[ProcessNode, Any]] = runner.loop.create_future()
        self._launch_queue.append((process, inputs, kwargs, future))
        if self._launcher is None:
            self._launcher = runner.loop.create_task(self._submit_queued(), name=f"plait-launch-{self.pk}")
        child, outputs = await future
        if outputs is not _UNREAD:
            return outputs  # recorded finished ok: read with the replay's other launches
        assert child.pk is not None
        if not child.is_terminated:
            await self._wait_for(child.pk)
        return await self._child_outputs(child.pk)

    async def _submit_queued(self) -> None:
        """Check and submit the queued launches, one batch (one database-thread call) at a time."""
        runner = self.runner
        assert runner is not None
        batch: list[tuple[Any, Any, dict[str, Any], asyncio.Future[Any]]] = []
        try:
            while self._launch_queue:
                batch, self._launch_queue = self._launch_queue, []
                results = await runner.call_db(self, self._submit_batch, [item[:3] for item in batch])
                for (*_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except BaseException as exc:  # a cancellation or a database error: every queued launch sees it
            for *_, future in batch + self._launch_queue:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            self._launch_queue = []
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
        finally:
            self._launcher = None

    def _submit_batch(self, batch: list[tuple[Any, Any, dict[str, Any]]]) -> list[Any]:
        """(thread) Check each launch against its record and submit it: ``(child node, outputs)``
        each (outputs ``_UNREAD`` unless recorded finished ok), or the exception it raised."""
        runner = self.runner
        assert runner is not None
        results: list[Any] = []
        for process, inputs, kwargs in batch:
            try:
                runner.check_safe_point(self)  # killed meanwhile: launch nothing more
                if self._diverged is not None:
                    raise self._diverged
                cls, merged = resolve_process(process, inputs, kwargs)
                try:
                    self._check_replay(cls, cls.prepare_inputs(merged))
                except NonDeterminismError as exc:
                    self._diverged = exc  # the launches after it stop too: nothing new is launched
                    raise
                key = encode_call_key(self.pk, self._call_counter)
                child = runner.submit_child(self, process, inputs, kwargs)
                record = self._records.get(key)
                outputs = _UNREAD
                if record is not None and record.node.pk == child.pk:
                    outputs = record.outputs
                results.append((child, outputs))
            except BaseException as exc:
                results.append(exc)
        return results

    async def _child_outputs(self, pk: int) -> Any:
        """The outputs of finished child ``pk``, read together with those the other launches wait for."""
        runner = self.runner
        assert runner is not None
        future: asyncio.Future[Any] = runner.loop.create_future()
        self._output_queue.append((pk, future))
        if self._output_reader is None:
            self._output_reader = runner.loop.create_task(
                self._read_queued(), name=f"plait-outputs-{self.pk}"
            )
        return await future

    async def _read_queued(self) -> None:
        runner = self.runner
        assert runner is not None
        batch: list[tuple[int, asyncio.Future[Any]]] = []
        try:
            while self._output_queue:
                await asyncio.sleep(0)  # the children that ended in this loop turn join the batch
                batch, self._output_queue = self._output_queue, []
                # a read, not the workflow's own step: a kill or pause may interrupt the wait for it
                found = await runner.call_db(None, self._read_outputs, [pk for pk, _ in batch])
                for pk, future in batch:
                    if not future.done():
                        if isinstance(found[pk], BaseException):
                            future.set_exception(found[pk])
                        else:
                            future.set_result(found[pk])
                batch = []
        except BaseException as exc:
            for _, future in batch + self._output_queue:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            self._output_queue = []
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
        finally:
            self._output_reader = None

    def _read_outputs(self, pks: list[int]) -> dict[int, Any]:
        """(thread) ``{pk: outputs}`` of finished children (an :class:`EngineError` for one that did
        not finish ok), in a few queries whatever their number."""
        from plait.storage import get_backend

        backend = get_backend()
        rows = {row["node_id"]: row for chunk in _chunks(pks) for row in backend.list_processes(pks=chunk)}
        ok = [pk for pk in pks if pk in rows and _finished_ok(rows[pk])]
        outputs, _ = _links_of(backend, ok, ok=ok, inputs=False)
        found: dict[int, Any] = {}
        for pk in pks:
            row = rows.get(pk)
            if row is None:
                found[pk] = EngineError(f"child process {pk} of {self.process_label_string()} was deleted")
            elif pk in outputs:
                found[pk] = _shaped(outputs[pk])
            else:
                found[pk] = self._not_ok(row["process_label"], pk, row["state"], row["exit_status"])
        return found

    def _not_ok(self, label: str, pk: int, state: str, exit_status: int | None) -> EngineError:
        return EngineError(
            f"child {label} (process {pk}) of durable workflow "
            f"{self.process_label_string()} ended {ProcessState(state).value}"
            + (f" with exit status {exit_status}" if exit_status else "")
        )

    def _read_recorded(self) -> None:
        """(thread) Before a replay: every recorded launch (class, input hashes, outputs if finished ok)
        in a few queries, so that the replay serves its launches from memory."""
        from plait.storage import get_backend

        backend = get_backend()
        wanted = dict(self._recorded_children)
        rows = {row["node_id"]: row for row in backend.get_children(self.pk)}
        for pk in wanted.values():
            if pk not in rows:  # offered by another node (a restart): not among this node's children
                row = backend.get_process(pk)
                if row is not None:
                    rows[pk] = row
        pks = [pk for pk in wanted.values() if pk in rows]
        node_rows = _node_rows(backend, pks)
        ok = [pk for pk in pks if pk in node_rows and _finished_ok(rows[pk])]
        outputs, hashes = _links_of(backend, pks, ok=ok)
        self._records = {}
        for key, pk in wanted.items():
            if pk not in node_rows:
                continue
            node = node_from_row({**node_rows[pk], "process": rows[pk]})
            if not isinstance(node, ProcessNode):
                continue
            self._records[key] = _Recorded(
                node, hashes.get(pk, {}), _shaped(outputs[pk]) if pk in outputs else _UNREAD
            )

    async def _wait_for(self, pk: int) -> None:
        """Wait for child ``pk``: parked with the other waiting calls, or in memory."""
        runner = self.runner
        assert runner is not None
        future: asyncio.Future[None] = runner.loop.create_future()
        self._waits[pk] = future
        if self._settling is None:
            self._settling = runner.loop.create_task(self._settle(), name=f"plait-durable-{self.pk}")
        await future  # raises ProcessParked if the workflow parked
        await runner.wait_for_children(self, [pk])
        if not self._waits and self._settling is None and self.node.process_state is ProcessState.WAITING:
            await runner.call_db(self, self._commit_running)

    async def _settle(self) -> None:
        """Commit waiting for every call that waits now, and park if the host parks (a daemon)."""
        runner = self.runner
        assert runner is not None
        parked = False
        error: BaseException | None = None
        try:
            while True:
                for _ in range(_SETTLE_TURNS):
                    await asyncio.sleep(0)
                launcher = self._launcher
                if launcher is None:
                    break
                await asyncio.wait([launcher])  # launches being submitted join the same park
            self._committing = runner.loop.create_future()
            parked = await runner.call_db(self, self._commit_waiting, list(self._waits))
        except BaseException as exc:  # a kill or a lost lease: every waiting call sees it
            error = exc
        waits, self._waits = self._waits, {}
        self._parked = self._parked or parked
        self._settling = None
        committing, self._committing = self._committing, None
        if committing is not None:
            committing.set_result(None)
        for future in waits.values():
            if future.done():
                continue
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            elif parked:
                future.set_exception(ProcessParked())
            else:
                future.set_result(None)

    def _commit_waiting(self, pks: list[int]) -> bool:
        """(thread) Commit waiting for ``pks``; True when the host parked the workflow in that commit."""
        if self._kill_message is not None or self._pause_requested:
            return False  # the kill or pause that interrupts the workflow now writes its row
        return self._commit_waiting_for(pks)

    def _commit_running(self) -> None:
        self._commit(ProcessState.RUNNING, status=None)  # wake_at stays: when it was last due

    async def _sleep(self, seconds: float) -> None:
        runner = self.runner
        assert runner is not None
        await self._before_launch()
        key = str(self._sleep_index)
        self._sleep_index += 1
        wake_at = self._sleeps.get(key)
        if wake_at is None:
            wake_at = time.time() + float(seconds)
            self._sleeps[key] = wake_at
        elif wake_at <= time.time():
            return  # a replayed timer whose time has passed: nothing to wait for
        await runner.call_db(self, self._commit_sleep, wake_at)
        try:
            await runner.sleep_until(self, wake_at)
        except ProcessParked:
            self._parked = True  # the other calls of this attempt end with it
            for future in self._waits.values():
                if not future.done():
                    future.set_exception(ProcessParked())
            raise
        finally:
            self._wake_event = None
        await runner.call_db(self, self._commit_running)

    def _commit_sleep(self, wake_at: float) -> None:
        """(thread) Commit the wake time (column and checkpoint) before the wait starts."""
        checkpoint = {
            "version": _CHECKPOINT_VERSION,
            "kind": "durable_workflow",
            "sleeps": dict(self._sleeps),
        }
        status = f"sleeping until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(wake_at))}"
        self._commit(
            ProcessState.WAITING, checkpoint=checkpoint, keep_history=False, status=status, wake_at=wake_at
        )

    def _offer_restart_launches(self) -> None:
        """(thread) A restart of another workflow: its old run's launches join the recorded ones
        (:func:`plait.engine.restart_from.offer_reused_launches`), so matching launches reuse them."""
        from plait.engine.restart_from import offer_reused_launches

        self._restart_offered = offer_reused_launches(self)

    def _check_replay(self, cls: type[Any], inputs: dict[str, Any]) -> None:
        """(thread) Refuse a replayed launch that differs from the one recorded at its position.

        At a position a restart offered (:meth:`_offer_restart_launches`), a launch that differs
        is no non-determinism: the code was fixed there, so the reuse of the old run ends, and
        this launch and every later one run anew.
        """
        position = self._call_counter
        try:
            self._compare_with_recorded(cls, inputs)
        except NonDeterminismError:
            if position not in self._restart_offered:
                raise
            from plait.engine.restart_from import end_reuse

            end_reuse(self, position)

    def _compare_with_recorded(self, cls: type[Any], inputs: dict[str, Any]) -> None:
        """(thread) Raise :class:`NonDeterminismError` if this launch is not the one recorded at its position.

        Served from the records read before the replay (:meth:`_read_recorded`): the stored hashes
        of the recorded inputs are compared with those of the new inputs; only if they differ are
        the recorded inputs loaded and hashed again, so a stale stored hash never makes a false
        :class:`NonDeterminismError`.
        """
        key = encode_call_key(self.pk, self._call_counter)
        pk = self._recorded_children.get(key)
        if pk is None:
            return
        record = self._records.get(key)
        if record is None or record.node.pk != pk:
            loaded = load_node(pk)
            assert isinstance(loaded, ProcessNode)
            record = _Recorded(loaded, None, _UNREAD)
        recorded = record.node
        new_label = cls.process_label_string()
        differs = recorded.process_type != cls.process_type_string()
        if not differs:
            new = {k: v._compute_hash() for k, v in flatten_nodes(inputs, cls.spec().inputs).items()}
            differs = new != record.input_hashes
            if differs:  # confirm from the nodes themselves
                differs = new != {k: v._compute_hash() for k, v in _input_nodes(recorded)}
        if differs:
            raise NonDeterminismError(
                f"durable workflow {self.process_label_string()} (process {self.pk}): launch "
                f"{self._call_counter} was {recorded.process_label} (process {pk}) with its recorded inputs, "
                "the replay launches "
                f"{new_label} with other inputs or another class; launches must happen in the same order "
                "with the same inputs on every run (fix the code, then play the workflow)"
            )

    def _reuse_recorded_call(self, cls: type[Any]) -> ProcessNode | None:
        """(thread) The recorded child of this launch, from the records read before the replay."""
        key = encode_call_key(self.pk, self._call_counter)
        record = self._records.get(key)
        if (
            record is None
            or self._recorded_children.get(key) != record.node.pk
            or record.node.process_type != cls.process_type_string()
        ):
            return super()._reuse_recorded_call(cls)  # loads it (and says why it is not reused)
        del self._recorded_children[key]
        self._call_counter += 1
        return record.node


#: a recorded launch's outputs that were not read (it had not finished ok when the replay began)
_UNREAD: Any = object()


@dataclass
class _Recorded:
    """What a launch recorded before the replay was: its child, and what the replay compares."""

    node: ProcessNode
    #: ``{link label: stored hash}`` of its node inputs (None: compare with the loaded inputs)
    input_hashes: dict[str, str | None] | None
    #: its outputs shaped as ``plait.call`` returns them, or ``_UNREAD``
    outputs: Any


#: ids per IN list of the replay's queries (each query may hold two such lists)
_IDS_PER_QUERY = 2000


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[start : start + _IDS_PER_QUERY]


def _node_rows(backend: Any, pks: Iterable[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(pks))):
        found.update(backend.get_nodes(chunk))
    return found


def _finished_ok(row: Mapping[str, Any]) -> bool:
    return bool(row["state"] == ProcessState.FINISHED.value and row["exit_status"] == 0)


_OUTPUT_LINKS = frozenset({LinkType.CREATE.value, LinkType.RETURN.value})
_INPUT_LINKS = frozenset({LinkType.INPUT_CALC.value, LinkType.INPUT_WORK.value})


def _links_of(
    backend: Any, pks: list[int], *, ok: Iterable[int], inputs: bool = True
) -> tuple[dict[int, dict[str, Node]], dict[int, dict[str, str | None]]]:
    """``({pk: {label: output node}}, {pk: {label: stored input hash}})`` of processes ``pks`` in a
    few queries: outputs for those in ``ok`` (in link order, as ``get_outgoing`` gives them), input
    hashes for all (if ``inputs``)."""
    ok = set(ok)
    links: list[dict[str, Any]] = []
    for chunk in _chunks(pks):
        links.extend(backend.all_links(chunk))
    links.sort(key=lambda link: link["id"])
    wanted = set(pks)
    out_links = [link for link in links if link["link_type"] in _OUTPUT_LINKS and link["input_id"] in ok]
    in_links = [
        link for link in links if inputs and link["link_type"] in _INPUT_LINKS and link["output_id"] in wanted
    ]
    rows = _node_rows(
        backend, [link["output_id"] for link in out_links] + [link["input_id"] for link in in_links]
    )
    outputs: dict[int, dict[str, Node]] = {pk: {} for pk in ok}
    for link in out_links:
        outputs[link["input_id"]][link["label"]] = node_from_row(rows[link["output_id"]])
    hashes: dict[int, dict[str, str | None]] = {pk: {} for pk in pks} if inputs else {}
    for link in in_links:
        hashes[link["output_id"]][link["label"]] = rows[link["input_id"]]["node_hash"]
    return outputs, hashes


def _shaped(outputs: dict[str, Node]) -> Any:
    """A child's outputs as ``plait.call`` returns them: the ``result`` node alone, or the dict."""
    if list(outputs) == ["result"]:
        return outputs["result"]
    return _nest(outputs)


def _input_nodes(node: ProcessNode) -> list[tuple[str, Node]]:
    return [
        (label, value)
        for label, _, value in node.get_incoming((LinkType.INPUT_CALC, LinkType.INPUT_WORK))
        if isinstance(value, Node)
    ]


async def call(process: Any, inputs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run ``process`` as a recorded child of the running durable workflow and return its outputs.

    Returns the ``result`` output node when that is the only output, else the
    dict of outputs.  On replay, a launch already recorded at this position
    returns the recorded child's outputs without running it again.  Inside a
    workflow ``await plait.arun(process, ...)`` means the same.

    Raises:
        EngineError: not awaited inside a running ``@workflow`` function, or the child did not
            finish ok.
        NonDeterminismError: the replay launches another class or other inputs at a recorded position.
    """
    parent = _CURRENT.get()
    if parent is None or parent.runner is None:
        raise EngineError("plait.call() is awaited inside a running @plait.workflow function")
    return await parent._launch(process, inputs, kwargs)


async def sleep(seconds: float) -> None:
    """A durable timer: ``await plait.sleep(60)`` in a ``@workflow`` (or an async work chain step).

    The wake time is committed before the wait starts, so it survives a crash or
    a daemon restart: the replay reaches the same sleep and waits only for the
    time left.  A daemon worker parks the workflow until then (no slot held); a
    paused workflow does not wake until played; a kill ends it while it sleeps.

    Raises:
        ValueError: ``seconds`` is negative, not finite or not a number.
        EngineError: awaited outside a running workflow or async work chain step.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValueError(f"sleep(seconds): expected a finite number of seconds, got {seconds!r}")
    if seconds < 0:
        raise ValueError(f"sleep(seconds): seconds must not be negative, got {seconds!r}")
    parent = _CURRENT.get()
    if parent is not None and parent.runner is not None:
        await parent._sleep(seconds)
        return
    from plait.engine.context import current_process
    from plait.engine.workchain import WorkChain

    chain = current_process()
    if isinstance(chain, WorkChain):
        await chain.sleep(seconds)
        return
    raise EngineError(
        "plait.sleep() is awaited inside a running @plait.workflow function or an async work chain step"
    )


class DurableWorkflow(ProcessFunction):
    """What ``@workflow`` returns: launch it with ``plait.run``/``arun``/``submit`` like any process."""

    def run_get_node(self, *args: Any, **kwargs: Any) -> tuple[Any, ProcessNode]:
        from plait.engine.launch import run_get_node

        return run_get_node(self.process_class, self._bind(args, kwargs))

    def __repr__(self) -> str:
        func = self.__wrapped__
        return f"<workflow {func.__module__}.{func.__qualname__}>"


def workflow(func: F) -> F:
    """Decorate an ``async def`` as a durable workflow: resumed by replay, each launch recorded once.

    Raises:
        TypeError: ``func`` is not an ``async def``.
    """
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"@workflow decorates an async def; {func.__qualname__} is a plain function")
    wrapper = DurableWorkflow(func, WorkFunctionNode)
    wrapper.process_class = type(
        wrapper.process_class.__name__,
        (DurableWorkflowProcess,),
        {
            k: wrapper.process_class.__dict__[k]
            for k in ("_func", "_signature", "_var_keyword", "_var_positional", "_node_class")
        }
        | {"__module__": func.__module__, "__qualname__": func.__qualname__},
    )
    return wrapper  # type: ignore[return-value]
