"""Process nodes: the record of a calculation or workflow that ran (or runs).

A process node's *content* (inputs, process type) is fixed when it is
created; its *state* (``processes`` row: state, paused, exit status,
checkpoint, lease) changes as the engine runs it.  Only the engine writes
the state; :meth:`ProcessNode.refresh` re-reads it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, cast

from plait.orm.node import LinkType, Node, _backend, check_json

__all__ = [
    "CalcFunctionNode",
    "CalcJobNode",
    "CalculationNode",
    "ProcessNode",
    "ProcessState",
    "WorkChainNode",
    "WorkFunctionNode",
    "WorkflowNode",
]


class ProcessState(enum.StrEnum):
    """The states of a process; ``paused`` is a flag beside them, not a state."""

    CREATED = "created"
    RUNNING = "running"
    WAITING = "waiting"
    FINISHED = "finished"
    EXCEPTED = "excepted"
    KILLED = "killed"

    @property
    def is_terminal(self) -> bool:
        return self in (ProcessState.FINISHED, ProcessState.EXCEPTED, ProcessState.KILLED)


_PROCESS_FIELDS = (
    "state",
    "paused",
    "exit_status",
    "exit_message",
    "exception",
    "process_label",
    "status",
    "lease_owner",
    "lease_expires",
    "submitted",
    "caller_id",
    "call_key",
    "checkpoint_seq",
)


class ProcessNode(Node):
    """Base of every process node."""

    node_type = "process.process"
    #: link type used for inputs of this kind of process
    input_link_type = LinkType.INPUT_WORK

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._process: dict[str, Any] = {"state": "created", "paused": False, "process_label": ""}
        self._process_type: str | None = None

    def _init_loaded(self, row: Mapping[str, Any]) -> None:
        """Take the process state from ``row["process"]`` when the caller read it in the same query.

        A query that loads many process nodes (``QueryBuilder`` projecting ``*``) joins the
        ``processes`` table and hands each node its process row there (None when the node has
        none), so loading a thousand process nodes is one query, not a thousand and one.
        Without that key the row is read now, as :meth:`refresh` does.
        """
        self._process_type = row.get("process_type")
        self._process = {}
        if "process" in row:
            if row["process"] is not None:
                self._set_process_row(dict(row["process"]))
        else:
            self.refresh()

    def refresh(self) -> ProcessNode:
        """Re-read the process state from the database (it changes while the process runs)."""
        if self._pk is not None:
            row = _backend().get_process(self._pk)
            if row is not None:
                self._set_process_row(row)
        return self

    def _set_process_row(self, row: dict[str, Any]) -> None:
        self._process = {key: row[key] for key in _PROCESS_FIELDS}
        self._process_row = row  # the whole row (checkpoint included), for the engine

    @property
    def _process_row(self) -> dict[str, Any]:
        return self.__dict__.get("_process_row_data") or {}

    @_process_row.setter
    def _process_row(self, row: dict[str, Any]) -> None:
        self.__dict__["_process_row_data"] = row

    def _row(self, now: Any) -> dict[str, Any]:
        row = super()._row(now)
        row["process_type"] = self._process_type
        return row

    def _compute_hash(self) -> str:
        return self._node_hash or super()._compute_hash()

    def set_runtime_attributes(self, **values: Any) -> None:
        """Record facts learnt while the process runs (job id, remote folder...) as attributes.

        Only the engine calls this, and only before the process terminates:
        a terminated process node is as immutable as any other node.  The
        change is written with the process's next state commit
        (:meth:`flush_runtime_changes`), not on its own.
        """
        self._check_running()
        for key, value in values.items():
            check_json(value, f"attribute '{key}'")
            self._attributes[key] = value
        self._dirty.add("attributes")

    def set_runtime_files(self, files: Mapping[str, bytes]) -> None:
        """Record files made while the process runs (a job's exact inputs and script); engine only.

        The content goes to the file repository at once; the node's file list
        is written with the next state commit.
        """
        if not self.is_stored:
            for relpath, data in files.items():
                self.put_object_from_bytes(relpath, data)
            return
        self._check_running()
        repository = _backend().repository
        for relpath, data in files.items():
            self._files[self._clean_relpath(relpath)] = [repository.put_bytes(data), len(data)]
        self._dirty.add("files")

    def _check_running(self) -> None:
        if self.is_stored and ProcessState(self._process.get("state", "created")).is_terminal:
            self._check_mutable("attributes")

    @property
    def _dirty(self) -> set[str]:
        dirty = self.__dict__.get("_dirty_fields")
        if dirty is None:
            dirty = self.__dict__["_dirty_fields"] = set()
        return dirty

    def flush_runtime_changes(self) -> None:
        """Write runtime attributes and files (call inside the transaction of a state commit)."""
        dirty = self._dirty
        if self._pk is not None and dirty:
            _backend().update_node(self._pk, **{name: getattr(self, f"_{name}") for name in sorted(dirty)})
            dirty.clear()

    # -- state -------------------------------------------------------------------------
    @property
    def process_type(self) -> str | None:
        """Import path of the process class or function (``module:QualName``) or a plugin name."""
        return self._process_type

    @property
    def process_state(self) -> ProcessState:
        return ProcessState(self._process["state"])

    @property
    def process_label(self) -> str:
        return self._process.get("process_label") or ""

    @property
    def paused(self) -> bool:
        return bool(self._process.get("paused"))

    @property
    def exit_status(self) -> int | None:
        return self._process.get("exit_status")

    @property
    def exit_message(self) -> str | None:
        return self._process.get("exit_message")

    @property
    def exception(self) -> str | None:
        """The traceback of the exception that made the process excepted."""
        return self._process.get("exception")

    @property
    def process_status(self) -> str | None:
        """What the process is waiting for, in words (shown by ``plait process list``)."""
        return self._process.get("status")

    @property
    def is_terminated(self) -> bool:
        return self.process_state.is_terminal

    @property
    def is_finished(self) -> bool:
        return self.process_state is ProcessState.FINISHED

    @property
    def is_finished_ok(self) -> bool:
        return self.is_finished and self.exit_status == 0

    @property
    def is_failed(self) -> bool:
        return self.is_finished and self.exit_status != 0

    @property
    def is_excepted(self) -> bool:
        return self.process_state is ProcessState.EXCEPTED

    @property
    def is_killed(self) -> bool:
        return self.process_state is ProcessState.KILLED

    # -- caching (see plait.engine.caching) ----------------------------------------------
    #: attribute of a node created from the cache: the uuid of the node whose outputs it reused
    CACHED_FROM_KEY = "_plait_cached_from"
    #: extra that, when False, stops the node from serving as a cache (aiida-core: ``_aiida_valid_cache``)
    VALID_CACHE_KEY = "_plait_valid_cache"

    @property
    def cached_from(self) -> ProcessNode | None:
        """The node whose outputs this one reused from the cache, or None if it really ran."""
        uuid = self.get_attribute(self.CACHED_FROM_KEY, None)
        if uuid is None:
            return None
        from plait.orm.node import load_node

        return cast(ProcessNode, load_node(uuid=uuid))

    @property
    def is_created_from_cache(self) -> bool:
        """True if this node reused another's outputs instead of running (as aiida-core)."""
        return self.get_attribute(self.CACHED_FROM_KEY, None) is not None

    @property
    def is_valid_cache(self) -> bool:
        """Whether a new launch may reuse this node's outputs: finished ok and not marked invalid.

        Set it to False to stop the node serving (stored as an extra, so it is
        allowed on a finished node); failed, excepted and killed processes never serve.
        """
        return self.is_finished_ok and self.get_extra(self.VALID_CACHE_KEY, True) is not False

    @is_valid_cache.setter
    def is_valid_cache(self, valid: bool) -> None:
        if not isinstance(valid, bool):
            raise TypeError(f"is_valid_cache is True or False, not {valid!r}")
        if valid:
            self.delete_extra(self.VALID_CACHE_KEY)
        else:
            self.set_extra(self.VALID_CACHE_KEY, False)

    # -- provenance --------------------------------------------------------------------
    @property
    def caller(self) -> ProcessNode | None:
        """The workflow that called this process, if any."""
        found = self.get_incoming((LinkType.CALL_CALC, LinkType.CALL_WORK))
        # CALL links join process nodes only, so both ends load as ProcessNode
        return cast(ProcessNode, found[0][2]) if found else None

    @property
    def called(self) -> list[ProcessNode]:
        """The processes this one called, in the order it called them."""
        links = self.get_outgoing((LinkType.CALL_CALC, LinkType.CALL_WORK))
        return [cast(ProcessNode, n) for _, _, n in links]

    def called_descendants(self) -> list[ProcessNode]:
        result: list[ProcessNode] = []
        for child in self.called:
            result.append(child)
            result.extend(child.called_descendants())
        return result

    def get_report(self) -> list[dict[str, Any]]:
        """The log records of this process (``self.report`` messages and engine messages)."""
        return _backend().get_logs(self._pk) if self._pk is not None else []

    def get_checkpoints(self) -> list[dict[str, Any]]:
        """The step checkpoints kept for this process (while running, or after it failed)."""
        return _backend().get_checkpoints(self._pk) if self._pk is not None else []


class CalculationNode(ProcessNode):
    """A process that creates data (its outputs are CREATE links)."""

    node_type = "process.calculation"
    input_link_type = LinkType.INPUT_CALC


class WorkflowNode(ProcessNode):
    """A process that calls others and returns existing data (RETURN links)."""

    node_type = "process.workflow"
    input_link_type = LinkType.INPUT_WORK


class CalcFunctionNode(CalculationNode):
    node_type = "process.calcfunction"


class CalcJobNode(CalculationNode):
    """A calculation run as a job on a computer through its scheduler."""

    node_type = "process.calcjob"

    @property
    def job_id(self) -> str | None:
        return self.get_attribute("job_id")

    @property
    def remote_workdir(self) -> str | None:
        return self.get_attribute("remote_workdir")


class WorkFunctionNode(WorkflowNode):
    node_type = "process.workfunction"


class WorkChainNode(WorkflowNode):
    node_type = "process.workchain"
