"""The process: the unit the engine runs, records and resumes.

A :class:`Process` subclass (``WorkChain``, ``CalcJob``, the classes behind
``@calcfunction``) declares a spec; a launch validates the inputs against it
(nothing is stored if they are refused), stores the process node with its
input links, and then runs it.  Every state change is committed to the
process row *with* its checkpoint before anything is announced:

    created -> running -> (waiting <-> running)* -> finished | excepted | killed

``paused`` is a flag beside the state.  A process whose interpreter dies is
continued from its last checkpoint by :func:`plait.resume` (or by a daemon
worker once its lease has expired).

Process functions never wait: they run straight through in the calling
thread.  Work chains and calculation jobs do wait, and run as asyncio tasks
on a :class:`~plait.engine.runner.Runner`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from plait.engine import lifecycle
from plait.engine.checkpoint import AttributeDict
from plait.engine.exit_code import ExitCode, ExitCodesNamespace
from plait.engine.lifecycle import EngineError, LeaseLostError, ProcessKilledError, encode_call_key
from plait.engine.ports import (
    NAMESPACE_SEPARATOR,
    OutputValidationError,
    PortNamespace,
    extract_non_db,
    flatten_nodes,
)
from plait.engine.spec import ProcessSpec
from plait.orm import LinkType, Node, ProcessNode, ProcessState, WorkflowNode
from plait.orm.node import store_nodes

if TYPE_CHECKING:
    from plait.engine.builder import ProcessBuilder
    from plait.engine.host import ProcessHost

__all__ = ["LeaseLostError", "Process", "ProcessKilledError"]  # errors re-exported from lifecycle

#: the links that bring a process its inputs
INPUT_LINK_TYPES = (LinkType.INPUT_CALC, LinkType.INPUT_WORK)

LOGGER = logging.getLogger("plait.process")


def _backend():
    from plait.storage import get_backend

    return get_backend()


class _ExitCodesOfClass:
    """``Process.exit_codes``: the spec's exit codes, read on the class or on an instance (as aiida-core)."""

    def __get__(self, instance: Process | None, owner: type[Process]) -> ExitCodesNamespace:
        return owner.spec().exit_codes


class Process:
    """Base class of every process.  Subclasses override :meth:`define` and the run hooks."""

    #: the node class recording instances of this process
    _node_class: ClassVar[type[ProcessNode]] = WorkflowNode
    _spec_instance: ClassVar[ProcessSpec]

    # -- the spec ------------------------------------------------------------------------
    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        """Declare ports and exit codes; subclasses call ``super().define(spec)`` first."""
        spec.input_namespace("metadata", non_db=True, help="how to run and record the process")
        spec.input("metadata.label", valid_type=str, required=False, non_db=True, help="label of the node")
        spec.input("metadata.description", valid_type=str, required=False, non_db=True)
        spec.input(
            "metadata.call_link_label",
            valid_type=str,
            default="CALL",
            non_db=True,
            help="label of the link from the calling workflow",
        )
        spec.input(
            "metadata.disable_cache",
            valid_type=bool,
            required=False,
            non_db=True,
            help="run even if caching is on and an identical calculation finished (see plait.engine.caching)",
        )
        spec.exit_code(10, "ERROR_INVALID_OUTPUT", "the process returned an invalid output: {message}")
        spec.exit_code(
            11, "ERROR_MISSING_OUTPUT", "the process did not return the required output(s): {ports}"
        )

    @classmethod
    def spec(cls) -> ProcessSpec:
        """The frozen spec of this class, built on first use."""
        spec = cls.__dict__.get("_spec_instance")
        if spec is None:
            spec = ProcessSpec()
            cls.define(spec)
            if "metadata" not in spec.inputs:  # declared by Process.define: super() was not called
                raise TypeError(
                    f"{cls.__qualname__}.define(spec) must call super().define(spec) first (it declares "
                    "the ports every process has, such as metadata)"
                )
            spec.freeze()
            cls._spec_instance = spec
        return spec

    @classmethod
    def get_builder(cls) -> ProcessBuilder:
        """A builder to fill the inputs of this process attribute by attribute."""
        from plait.engine.builder import ProcessBuilder

        return ProcessBuilder(cls)

    @classmethod
    def process_type_string(cls) -> str:
        """How the node records this class: ``module:QualName`` (imported again on resume)."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def process_label_string(cls) -> str:
        return cls.__name__

    @classmethod
    def check_importable(cls) -> str | None:
        """Why this class cannot be imported by another interpreter, or None if it can."""
        if "<locals>" in cls.__qualname__:
            return f"{cls.__qualname__} is defined inside a function"
        if cls.__module__ == "__main__":
            return f"{cls.__qualname__} is defined in the __main__ script"
        return None

    # -- construction ----------------------------------------------------------------------
    def __init__(self, inputs: Mapping[str, Any], *, runner: ProcessHost | None = None) -> None:
        """``inputs`` must already be processed by the spec (see :meth:`prepare_inputs`)."""
        self.runner = runner
        self._inputs_raw = dict(inputs)
        self.inputs = _to_attribute_dict(self._inputs_raw, frozen=True)
        self.node: ProcessNode = None  # type: ignore[assignment]
        self._outputs: dict[str, Node] = {}
        self._pending_outputs: list[tuple[str, Node]] = []
        self._kill_message: str | None = None
        self._pause_requested = False
        self._owner: str | None = None
        self._call_counter = 0
        self._checkpoint_seq = 0
        self._step_name: str | None = None
        self._terminated = False
        self._on_terminated_called = False
        #: on resume: ``{call_key: pk}`` of the calls the interrupted attempt of the current step made
        self._recorded_children: dict[str, int] = {}
        #: set by the runner that found another holding the lease: write nothing more
        self._lease_lost = False
        #: what made the process except (re-raised by ``run``)
        self._exception: BaseException | None = None
        #: whether this launch may reuse a cached result (decided at store time; None: decide when run)
        self._use_cache: bool | None = None
        #: a restart of another process: ``restarted_from`` and friends, recorded on the new node
        self._restart_attributes: dict[str, Any] = {}

    #: whether :meth:`prepare_inputs` reads the storage (a calculation job loads its computer to check
    #: the job options): the runner then calls it in a thread, never on the event loop
    prepare_reads_storage: ClassVar[bool] = False

    @classmethod
    def prepare_inputs(cls, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate and normalise launch inputs.

        Raises:
            InputValidationError: naming each bad port and why; nothing is stored.
            TypeError: the class cannot be launched (a bare base class, a work chain without an
                outline); nothing is stored.
        """
        problem = cls._launch_problem()
        if problem:
            raise TypeError(f"cannot launch {cls.process_label_string()}: {problem}")
        return cls.spec().inputs.process(inputs, cls.process_label_string())

    @classmethod
    def _launch_problem(cls) -> str | None:
        """Why this class cannot be launched at all, or None; subclasses add their reasons."""
        if cls is Process:
            return "Process is a base class: launch a subclass (a WorkChain, a CalcJob, a calcfunction)"
        return None

    @property
    def pk(self) -> int:
        return self.node.pk  # type: ignore[return-value]

    #: the exit codes of the class, on the class too (``Child.exit_codes.ERROR_X`` in a handler's declaration)
    exit_codes = _ExitCodesOfClass()

    @property
    def metadata(self) -> AttributeDict:
        return self.inputs.get("metadata", AttributeDict())

    def __repr__(self) -> str:
        pk = self.node.pk if self.node is not None else "unstored"
        return f"<{type(self).__name__} pk={pk}>"

    # -- storing the node --------------------------------------------------------------------
    def _process_hash(self, input_nodes: Mapping[str, Node], non_db: Mapping[str, Any]) -> str:
        """The node's hash: what :mod:`plait.engine.caching` matches a new launch against."""
        from plait.engine.caching import hash_extras, hashed_options

        payload = json.dumps(
            [
                self.process_type_string(),
                sorted(
                    (label, node.node_hash or node._compute_hash()) for label, node in input_nodes.items()
                ),
                {k: v for k, v in non_db.items() if k != "metadata"},
                hashed_options(non_db.get("metadata", {}).get("options")),
                hash_extras(self),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.blake2b(payload.encode(), digest_size=32).hexdigest()

    def _node_attributes(self, non_db: dict[str, Any]) -> dict[str, Any]:
        """Attributes recorded on the process node; subclasses add theirs."""
        metadata = dict(non_db.get("metadata", {}))
        for key in ("label", "description", "call_link_label"):
            metadata.pop(key, None)
        attributes: dict[str, Any] = {}
        if metadata:
            attributes["metadata"] = metadata
        rest = {k: v for k, v in non_db.items() if k != "metadata"}
        if rest:
            attributes["non_db_inputs"] = rest
        attributes.update(self._restart_attributes)  # set by plait.engine.restart_from
        return attributes

    def _store_new(
        self,
        *,
        state: ProcessState,
        parent: Process | ProcessNode | None,
        submitted: bool = False,
        owner: str | None = None,
        lease_seconds: float = 0.0,
        checkpoint: dict[str, Any] | None = None,
        checkpoint_step: str | None = None,
    ) -> ProcessNode:
        """Store the inputs, the process node, its process row and links in one transaction.

        ``checkpoint``: where a restarted work chain starts (see :mod:`plait.engine.restart_from`).
        """
        spec = self.spec()
        input_nodes = flatten_nodes(self._inputs_raw, spec.inputs)
        non_db = extract_non_db(self._inputs_raw, spec.inputs)
        metadata = self._inputs_raw.get("metadata", {})
        node = self._node_class(label=metadata.get("label", ""), description=metadata.get("description", ""))
        node._process_type = self.process_type_string()
        for key, value in self._node_attributes(non_db).items():
            node._attributes[key] = value
        self._prepare_node(node)

        parent_process = parent if isinstance(parent, Process) else None
        parent_node = parent.node if isinstance(parent, Process) else parent
        if parent_node is not None and not isinstance(parent_node, WorkflowNode):
            raise EngineError(
                f"{type(parent_node).__name__} pk={parent_node.pk} is a calculation and cannot call "
                f"{self.process_label_string()}: only workflows (work chains, workfunctions) call processes"
            )
        call_key = None
        if parent_process is not None:
            call_key = encode_call_key(parent_process.pk, parent_process._call_counter)

        from plait.engine.caching import get_use_cache

        self._use_cache = get_use_cache(type(self), metadata)  # decided where the launch was made
        backend = _backend()
        row: dict[str, Any] = {
            "node_id": None,
            "state": state.value,
            "paused": False,
            "process_label": self.process_label_string(),
            "submitted": submitted,
            "lease_owner": owner,
            "lease_expires": time.time() + lease_seconds if owner else None,
            "caller_id": parent_node.pk if parent_node is not None else None,
            "call_key": call_key,
            "checkpoint_seq": 0,
        }
        if checkpoint is not None:
            row["checkpoint"] = checkpoint
        with backend.transaction():
            store_nodes(_unstored_once(input_nodes.values()))  # hashes of the inputs, then of the process
            node._node_hash = self._process_hash(input_nodes, non_db)
            store_nodes([node])
            row["node_id"] = node.pk
            # a caller that was killed, or whose runner lost it, launches nothing
            lifecycle.insert(
                row,
                caller=parent_process.pk if parent_process is not None else None,
                caller_owner=parent_process._owner if parent_process is not None else None,
                checkpoint_step=checkpoint_step,
            )
            link_type = self._node_class.input_link_type.value
            rows = [
                {"input_id": value.pk, "output_id": node.pk, "link_type": link_type, "label": label}
                for label, value in input_nodes.items()
            ]
            if parent_node is not None:
                call_type = (
                    LinkType.CALL_WORK if isinstance(node, WorkflowNode) else LinkType.CALL_CALC
                ).value
                rows.append(
                    {
                        "input_id": parent_node.pk,
                        "output_id": node.pk,
                        "link_type": call_type,
                        "label": metadata.get("call_link_label", "CALL"),
                    }
                )
            backend.insert_links(rows)
        if parent_process is not None:
            parent_process._call_counter += 1  # only once the call is recorded
        node._process = {
            k: v for k, v in row.items() if k not in ("node_id", "checkpoint_seq", "lease_expires")
        }
        self.node = node
        self._owner = owner
        return node

    def _reuse_recorded_call(self, cls: type[Process]) -> ProcessNode | None:
        """On resume: the child that this launch created before the crash, matched by call key.

        A step that was interrupted runs again from its start.  Each launch
        it makes gets the same call key (``parent_pk:index``) as in the
        interrupted attempt, so the child made then is returned instead of a
        duplicate.  A mismatch (the step launched something else) is logged
        and a new child is launched.
        """
        recorded = self._recorded_children
        key = encode_call_key(self.pk, self._call_counter)
        pk = recorded.pop(key, None)
        if pk is None:
            return None
        from plait.orm import load_node

        node = load_node(pk)
        if not isinstance(node, ProcessNode) or node.process_type != cls.process_type_string():
            LOGGER.warning("process %s: call %s differs from the recorded one; launching anew", self.pk, key)
            return None
        self._call_counter += 1
        return node

    async def _execute(self) -> ExitCode | None:
        """The hook the runner drives: run the process from where it stands to its end.

        Work chains run their outline, calculation jobs their tasks, process
        functions their function.  Returns the exit code (None: success).
        Raises whatever should make the process except.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _execute")

    def _prepare_node(self, node: ProcessNode) -> None:
        """Hook: set more on the new process node before it is stored (e.g. its computer)."""

    def _restore(self, checkpoint: dict[str, Any] | None) -> None:
        """Hook: continue from ``checkpoint`` (None: from the start).  Work chains and jobs override it."""

    # -- loading an existing process ---------------------------------------------------------
    @classmethod
    def _load(
        cls,
        node: ProcessNode,
        runner: ProcessHost | None,
        *,
        input_links: Sequence[tuple[str, LinkType, Node]] | None = None,
    ) -> Process:
        """Rebuild the process object of a stored node (inputs from its links).

        ``input_links``: the node's incoming input links (``(label, type, node)``, as
        ``node.get_incoming(INPUT_LINK_TYPES)`` gives them) when the caller read them already,
        for many processes at once.
        """
        spec = cls.spec()
        inputs: dict[str, Any] = {}
        if input_links is None:
            input_links = node.get_incoming(INPUT_LINK_TYPES)
        for label, _, value in input_links:
            parts = label.split("__")
            target = inputs
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        metadata = dict(node.get_attribute("metadata", {}))
        metadata["label"] = node.label
        metadata["description"] = node.description
        inputs["metadata"] = metadata
        _merge_nested(inputs, node.get_attribute("non_db_inputs", {}))  # beside node inputs of a namespace
        del spec  # inputs were validated when first launched
        process = cls(inputs, runner=runner)
        process.node = node
        process._checkpoint_seq = int(node._process.get("checkpoint_seq") or 0)
        if node.process_state is not ProcessState.CREATED:  # a process never started has no outputs yet
            for label, _, value in node.get_outgoing((LinkType.CREATE, LinkType.RETURN)):
                process._outputs[label.replace("__", NAMESPACE_SEPARATOR)] = value
        return process

    # -- outputs ---------------------------------------------------------------------------------
    def out(self, label: str, value: Node) -> None:
        """Register ``value`` as output ``label`` (dotted for namespaces).

        ``self.out("namespace", {"a": node, ...})`` fills the ports of a namespace.

        Raises:
            OutputValidationError: the output is not declared or has the wrong type.
            ValueError: the same output was registered already.
        """
        if isinstance(value, Mapping) and not isinstance(value, Node):
            self.out_many(value, f"{label}{NAMESPACE_SEPARATOR}")
            return
        self.spec().outputs.validate_output(label, value)
        if label in self._outputs:
            raise ValueError(f"output '{label}' of {self!r} was already registered")
        self._check_output_origin(label, value)
        self._outputs[label] = value
        self._pending_outputs.append((label, value))

    def out_many(self, outputs: Mapping[str, Any], prefix: str = "") -> None:
        """Register every node of a (nested) mapping as outputs."""
        for key, value in outputs.items():
            if isinstance(value, Mapping) and not isinstance(value, Node):
                self.out_many(value, f"{prefix}{key}{NAMESPACE_SEPARATOR}")
            else:
                self.out(f"{prefix}{key}", value)

    # -- exposed ports (spec.expose_inputs / expose_outputs) ------------------------------------------
    def exposed_inputs(
        self, process_class: type[Process], namespace: str | None = None, agglomerate: bool = True
    ) -> AttributeDict:
        """The inputs of this process that were exposed from ``process_class``: what to pass to it.

        With ``agglomerate`` the top level and every parent namespace of
        ``namespace`` are gathered too, outermost first, so a value in the
        inner namespace wins (as aiida-core).  Ports not given are left out
        (the child fills its own defaults).

        Raises:
            ValueError: ``process_class`` was not exposed in those namespaces, or this process has
                no input namespace ``namespace``.
        """
        from plait.engine.expose import exposed_names

        spec = self.spec()
        gathered: dict[str, Any] = {}
        owner = type(self).__name__
        for where, names in exposed_names(
            spec._exposed_inputs, process_class, namespace, agglomerate, "inputs", owner
        ):
            values: Any = self.inputs
            if where is not None:
                try:
                    spec.inputs.get_port(where)
                except KeyError:
                    raise ValueError(f"{owner} has no input namespace '{where}'") from None
                for part in where.split(NAMESPACE_SEPARATOR):
                    values = values.get(part) if isinstance(values, Mapping) else None
            if not isinstance(values, Mapping):
                continue  # an optional namespace that was not given
            for name in names:
                if name in values:
                    value = values[name]  # a namespace of the read-only inputs: a mutable copy
                    gathered[name] = _to_attribute_dict(value) if isinstance(value, ReadOnlyInputs) else value
        return _to_attribute_dict(gathered)  # nested mappings copied: the caller may change them

    def exposed_outputs(
        self,
        node: ProcessNode,
        process_class: type[Process],
        namespace: str | None = None,
        agglomerate: bool = True,
    ) -> AttributeDict:
        """The outputs of ``node`` (a finished ``process_class``) that this process exposed, nested
        under the namespace they were exposed into: ``self.out_many(self.exposed_outputs(...))``.

        Raises:
            ValueError: ``process_class`` was not exposed in those namespaces.
        """
        from plait.engine.expose import exposed_names

        owner = type(self).__name__
        found = exposed_names(
            self.spec()._exposed_outputs, process_class, namespace, agglomerate, "outputs", owner
        )
        produced: dict[str, Any] = {}
        for label, _, value in node.get_outgoing((LinkType.CREATE, LinkType.RETURN)):
            parts = label.split("__")
            target = produced
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        placed: dict[str, str | None] = {}  # top-level output name -> innermost namespace exposing it
        for where, names in found:
            for name in names:
                if name in produced:
                    placed[name] = where
        result: dict[str, Any] = {}
        for name, where in placed.items():
            target = result
            for part in where.split(NAMESPACE_SEPARATOR) if where else ():
                target = target.setdefault(part, {})
            target[name] = produced[name]
        return _to_attribute_dict(result)

    def _check_output_origin(self, label: str, value: Node) -> None:
        if isinstance(self.node, WorkflowNode) and not value.is_stored:
            raise OutputValidationError(
                f"output '{label}': a workflow returns data that exists already and cannot create it; "
                "create the node with a calcfunction (which records how it was made) and return that"
            )
        if not isinstance(self.node, WorkflowNode) and value.is_stored:
            raise OutputValidationError(
                f"output '{label}': a calculation creates its outputs, but this {type(value).__name__} is "
                "already stored (it was created elsewhere); return a new node, or use a workfunction to "
                "return existing data"
            )

    def _flush_outputs(self) -> None:
        """Store new output nodes and link every pending output (inside the caller's transaction)."""
        if not self._pending_outputs:
            return
        store_nodes(_unstored_once(value for _, value in self._pending_outputs))
        link_type = (LinkType.RETURN if isinstance(self.node, WorkflowNode) else LinkType.CREATE).value
        _backend().insert_links(
            [
                {
                    "input_id": self.node.pk,
                    "output_id": value.pk,
                    "link_type": link_type,
                    "label": label.replace(NAMESPACE_SEPARATOR, "__"),
                }
                for label, value in self._pending_outputs
            ]
        )
        self._pending_outputs.clear()

    @property
    def outputs(self) -> dict[str, Node]:
        """The outputs registered so far, by dotted label."""
        return dict(self._outputs)

    def nested_outputs(self) -> dict[str, Any]:
        """The outputs as a nested dict (``{"a": {"b": node}}`` for label ``a.b``)."""
        result: dict[str, Any] = {}
        for label, value in self._outputs.items():
            parts = label.split(NAMESPACE_SEPARATOR)
            target = result
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        return result

    # -- reporting --------------------------------------------------------------------------------
    def report(self, message: str, *args: Any) -> None:
        """Record a message on the process node (``plait process report PK`` shows them).

        The line is also logged on ``plait.report`` as it happens: on a
        script's stderr, or in a daemon worker's log (see :mod:`plait.engine.report_log`).
        """
        from plait.engine.report_log import log_report

        text = message % args if args else message
        log_report(self.pk, type(self).__name__, self._step_name, text)
        lifecycle.report(self.pk, self._owner, "REPORT", text, {"step": self._step_name})  # fenced

    # -- state transitions (each through the lifecycle module, the one writer of process rows) ----------
    def _commit(
        self,
        state: ProcessState,
        *,
        checkpoint: dict[str, Any] | None = None,
        keep_history: bool = True,
        **fields: Any,
    ) -> None:
        """Commit a transition (and its checkpoint, and pending outputs) in one transaction.

        Raises:
            LeaseLostError: this runner no longer holds the process (nothing was written).
            IllegalTransitionError: the process is in a state that cannot go to ``state``.
        """
        seq = None
        if checkpoint is not None:
            seq = self._checkpoint_seq + 1
        woken = lifecycle.commit(
            self.node,
            self._owner,
            state,
            checkpoint=checkpoint,
            checkpoint_seq=seq,
            step=self._step_name,
            keep_history=keep_history,
            drop_history=bool(self._checkpoint_seq)
            and state is ProcessState.FINISHED
            and fields.get("exit_status") == 0,
            within=self._flush_in_commit,
            **fields,
        )
        if seq is not None:
            self._checkpoint_seq = seq
        if state.is_terminal:
            self._terminated = True
        lifecycle._ring(woken)
        if state.is_terminal:
            self._call_on_terminated()

    def _commit_waiting_for(self, pks: list[int], *, checkpoint: dict[str, Any] | None = None) -> bool:
        """Commit ``waiting`` for the processes ``pks`` (and the checkpoint, and pending outputs).

        Where the host parks waiting processes (a daemon worker), the same commit releases this
        one to wait in the database: True then, and the caller stops running it.  False: it
        waits for ``pks`` here (none is still active, or the host does not park).

        Raises:
            LeaseLostError, IllegalTransitionError: as :meth:`_commit`.
        """
        seq = None if checkpoint is None else self._checkpoint_seq + 1
        parked = lifecycle.commit_waiting(
            self.node,
            self._owner,
            pks,
            park=self.runner is not None and self.runner.parks_waiting,
            checkpoint=checkpoint,
            checkpoint_seq=seq,
            step=self._step_name,
            within=self._flush_in_commit,
        )
        if seq is not None:
            self._checkpoint_seq = seq
        return parked

    def _flush_in_commit(self) -> None:
        self._flush_outputs()
        self.node.flush_runtime_changes()

    def _finish(self, result: ExitCode | None) -> ExitCode:
        """Validate the outputs, link them and commit the finished state."""
        exit_code = result if isinstance(result, ExitCode) else ExitCode(0)
        if exit_code.status == 0:
            missing = self.spec().outputs.missing_outputs(set(self._outputs))
            if missing:
                exit_code = self.exit_codes.ERROR_MISSING_OUTPUT.format(ports=", ".join(missing))
        self._commit(
            ProcessState.FINISHED,
            exit_status=exit_code.status,
            exit_message=exit_code.message,
            keep_history=False,
        )
        if exit_code.status:
            _backend().insert_log(
                self.pk, "ERROR", f"finished with exit status {exit_code.status}: {exit_code.message}", {}
            )
        return exit_code

    def _except(self, exc: BaseException) -> None:
        """Mark the process excepted with its traceback; outputs registered so far stay linked."""
        if lifecycle.except_(self.node, self._owner, exc, step=self._step_name):
            self._terminated = True
            self._call_on_terminated()

    def _killed(self, message: str) -> None:
        """Mark the process killed (a runner that lost it, or a process already ended, stays silent)."""
        if lifecycle.kill(self.node, self._owner, message, step=self._step_name):
            self._terminated = True
            self._call_on_terminated()

    def on_terminated(self) -> None:
        """Hook: called once, after the process was recorded finished, excepted or killed.

        Runs in a thread (never on the event loop), in the interpreter that
        ended the process: the one that ran it, or the runner that handled a
        kill of it.  Override it (calling ``super().on_terminated()``) to clean
        up; an exception it raises is logged and changes nothing, as the end is
        already recorded.  A process killed while no runner held it (a work
        chain parked in the database, one submitted that no worker took yet)
        runs it in the killer's interpreter, rebuilt from its last checkpoint
        (:func:`plait.engine.control.run_on_terminated_of_unheld`).
        """

    def _call_on_terminated(self) -> None:
        if self._on_terminated_called:
            return
        self._on_terminated_called = True
        try:
            self.on_terminated()
        except Exception:
            LOGGER.exception("the on_terminated hook of process %s raised", self.pk)

    async def _on_kill(self) -> None:
        """Hook run when the process is killed, before it is marked killed (calculation jobs cancel
        their job)."""

    # -- control -------------------------------------------------------------------------------------
    def request_kill(self, message: str = "killed by request") -> None:
        """Ask the process to stop; it is marked killed at its next safe point."""
        self._kill_message = message

    def request_pause(self) -> None:
        self._pause_requested = True


def _unstored_once(nodes: Iterable[Node]) -> list[Node]:
    """The unstored nodes among ``nodes``, each once: the same node given to two ports (or returned
    under two labels) is stored once and linked twice."""
    return list({id(node): node for node in nodes if not node.is_stored}.values())


class ReadOnlyInputs(AttributeDict):
    """``self.inputs`` of a running process: read like a dict or by attribute, never changed.

    The inputs are what was recorded (linked) at launch, so changing them in
    a step would make the provenance lie.  Any mutation raises TypeError
    saying where to keep values instead; ``copy.copy(self.inputs)`` (or
    ``dict(...)``) gives a mutable copy.
    """

    __slots__ = ()

    def _refuse(self, key: object) -> TypeError:
        return TypeError(
            f"the inputs are read-only (they were recorded when the process was launched): cannot "
            f"change '{key}'; keep values that change in self.ctx (e.g. self.ctx.inputs = "
            "AttributeDict(self.inputs))"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        raise self._refuse(key)

    def __setitem__(self, key: str, value: Any) -> None:
        raise self._refuse(key)

    def __delattr__(self, key: str) -> None:
        raise self._refuse(key)

    def __delitem__(self, key: str) -> None:
        raise self._refuse(key)


def _to_attribute_dict(values: Mapping[str, Any], where: str = "", *, frozen: bool = False) -> AttributeDict:
    """Nested ``AttributeDict`` of ``values``; ``frozen`` makes it (and every namespace in it) read-only."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and not isinstance(value, Node):
            data[key] = _to_attribute_dict(value, f"{where}{key}.", frozen=frozen)
        else:
            data[key] = value
    what = f"no input '{where}{{key}}' was given (given here: {{known}})"
    return (ReadOnlyInputs if frozen else AttributeDict)(data, what=what)


def _merge_nested(target: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Merge ``values`` into ``target``, namespace by namespace (a mapping does not replace a mapping)."""
    for key, value in values.items():
        existing = target.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict):
            _merge_nested(existing, value)
        else:
            target[key] = value


def describe_ports(namespace: PortNamespace, indent: int = 0) -> list[str]:
    """Human-readable port tree (used by the CLI and docs)."""
    lines = []
    for name, port in namespace.ports.items():
        pad = "  " * indent
        if isinstance(port, PortNamespace):
            lines.append(f"{pad}{name}/ {'(dynamic)' if port.dynamic else ''}".rstrip())
            lines.extend(describe_ports(port, indent + 1))
        else:
            kinds = ", ".join(t.__name__ for t in port.valid_type) if port.valid_type else "any"
            flag = "required" if port.required else "optional"
            lines.append(f"{pad}{name}: {kinds} ({flag}){' - ' + port.help if port.help else ''}")
    return lines
