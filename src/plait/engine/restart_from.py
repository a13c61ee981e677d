"""Fix and continue: a new work chain that starts at a step of one that failed.

When step 7 of a long work chain excepts because of a bug in the user's
code, fix the code and call ``plait.restart(pk)`` (or ``plait process restart
PK``).  A *new* process of the same class, imported from the current code,
starts at the checkpoint taken before the failed step (or before
``from_step``), with the context that checkpoint saved.  The children that
finished before that point are not run again: the context holds their nodes,
exactly as if the new chain had run them.

Provenance stays truthful: a process has one caller, so the reused children
keep their call link from the old chain and the new chain gets none to them.
The new node records, as attributes (fixed once stored, and filterable with
the QueryBuilder as ``attributes.restarted_from``):

* ``restarted_from``: the pk of the old process, ``restarted_from_uuid`` its uuid;
* ``restarted_from_step``: the step it started at (the name in the current code);
* ``restart_reused``: the pks of the old chain's children that its context reuses;
* ``restart_changed_inputs``: the input ports given anew (their nodes are linked as inputs as usual).

The old node is not touched.

A calculation job restarts only from its parse stage (``from_step="parse"``,
the default for a job): a new calculation job node of the same class and
inputs starts at ``parse`` with the old job's working directory, scheduler
verdict and exit status, and parses the old ``retrieved`` folder with the
parser of the current code.  The job is not run again.  The retrieved
``FolderData`` keeps its one creator, the old job: the new node refers to it
with the attribute ``restart_retrieved`` (its pk) instead of an output link,
and its parser reads it as ``self.retrieved`` as usual.

How far the code may change: step bodies may change freely; steps may be
added or removed *after* the restart point; a step that ran before the
restart point, or the step restarted from, must still exist under its name,
or be mapped to its new name with ``step_map={"old": "new"}`` (``--map
OLD=NEW``).  Anything else is refused with :class:`RestartError`, naming the
step and what differs.  The saved context is used as it is: a node it refers
to must still exist.

A durable workflow (``@plait.workflow``) has no steps and no saved
coroutine: it restarts *from the top*, as a new workflow node of the same
function imported from the current code, and replays.  The launches the old
run recorded and that finished ok, in launch order from launch 0 up to the
first one that did not (failed, excepted, killed or still running), are
offered for reuse: while the new run launches the same class with the same
inputs at the same position, it gets the recorded child's outputs at once
and runs nothing.  The first launch that differs (the fixed code launches
something else, or ``inputs=`` changed what it launches) runs anew, and so
does every launch after it: only the prefix of matching launches is reused,
since what follows a changed launch usually depends on it.  ``from_step``
is then a launch position: ``from_step="2"`` offers only launches 0 and 1
(so launch 2 runs again although it finished ok, e.g. after fixing a
calcfunction that returned a wrong value); a step name is refused, a
workflow has none.  ``restart_reused`` lists the offered children in launch
order (the child reused at launch ``i`` is ``restart_reused[i]``); they keep
their one call link, from the old workflow, exactly as a work chain's reused
children do.  The replay of the new node (after a park, a crash or a pause)
offers the same launches again, up to the first position it launched itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plait.engine.calcjob import CalcJob
from plait.engine.checkpoint import CHECKPOINT_VERSION, decode
from plait.engine.durable import DurableWorkflowProcess
from plait.engine.lifecycle import EngineError, call_index, encode_call_key
from plait.engine.process import _backend
from plait.engine.resolve import load_process_class
from plait.engine.workchain import _CALL, WorkChain, _name
from plait.orm import ProcessNode, ProcessState, load_node

__all__ = ["PARSE_STAGE", "RestartError", "RestartPlan", "plan_restart", "restart"]

#: the one stage a calculation job restarts from
PARSE_STAGE = "parse"

#: the states a process may be restarted from (a finished one only with a non-zero exit status)
RESTARTABLE = (ProcessState.EXCEPTED, ProcessState.KILLED, ProcessState.FINISHED)


class RestartError(EngineError):
    """The process cannot be restarted as asked (its state, a missing step, a context that does not fit)."""


class RestartPlan:
    """Where a restart starts: the old checkpoint, the step, the position in the current outline."""

    def __init__(
        self,
        old: ProcessNode,
        cls: type[WorkChain] | type[CalcJob] | type[DurableWorkflowProcess],
        step: str,
        checkpoint: dict[str, Any],
        pc: int,
        before: list[str],
        launches: list[int] | None = None,
    ) -> None:
        self.old = old
        self.cls = cls
        #: the step the new chain starts at (its name in the current code); "" for a durable workflow
        self.step = step
        #: the old checkpoint (its ctx is reused as it is)
        self.checkpoint = checkpoint
        #: the index of that step in the current outline's program
        self.pc = pc
        #: the steps that ran before the checkpoint, in order (old names)
        self.before = before
        #: a durable workflow: the old run's children offered for reuse, in launch order (else None)
        self.launches = launches

    @property
    def is_replay(self) -> bool:
        """True for a durable workflow, which restarts from the top and replays."""
        return self.launches is not None

    def new_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint the new process starts from: for a chain, the old context at the step's
        position now; for a job, the old job's parse stage; none for a workflow (from the top)."""
        if issubclass(self.cls, DurableWorkflowProcess):
            return None
        if issubclass(self.cls, CalcJob):
            return {**self.checkpoint, "reused_outputs": self._job_outputs()}
        _, fingerprint = self.cls._program()
        return {
            "version": CHECKPOINT_VERSION,
            "kind": "workchain",
            "pc": self.pc,
            "outline": fingerprint,
            "ctx": dict(self.checkpoint.get("ctx", {})),
            "awaiting": [],
            "calls": 0,
        }

    def _job_outputs(self) -> dict[str, int]:
        """The old job's ``retrieved`` and ``remote_folder`` (the new job uses them, without links)."""
        from plait.orm import LinkType

        return {
            label: int(node.pk or 0)
            for label, _, node in self.old.get_outgoing((LinkType.CREATE,))
            if label in ("retrieved", "remote_folder")
        }

    def reused(self) -> list[int]:
        """The pks of the old chain's children made before the checkpoint (reused, not run again);
        for a durable workflow the children offered, in launch order (``[i]``: launch ``i``)."""
        if self.launches is not None:
            return list(self.launches)
        if issubclass(self.cls, CalcJob):
            return sorted(self._job_outputs().values())
        calls = int(self.checkpoint.get("calls", 0))
        return sorted(
            child["node_id"]
            for child in _backend().get_children(self.old.pk)
            if child["call_key"] and call_index(child["call_key"]) < calls
        )


def _failed_step(pk: int) -> str | None:
    """The step the process was in when it ended (kept in the extras of its last end log line)."""
    step = None
    for log in _backend().get_logs(pk):
        extra = log.get("extra") or {}
        if isinstance(extra, Mapping) and extra.get("step") and log.get("level") in ("ERROR", "WARNING"):
            step = str(extra["step"])
    return step


def plan_restart(
    pk: int | ProcessNode, from_step: str | None = None, step_map: Mapping[str, str] | None = None
) -> RestartPlan:
    """Check that process ``pk`` can be restarted at ``from_step`` (None: the step that failed).

    Raises:
        RestartError: the process is active or finished ok, is not a work chain, has no checkpoint
            before that step, or the current outline lacks a step the saved context came from.
    """
    old = pk if isinstance(pk, ProcessNode) else load_node(pk)
    if not isinstance(old, ProcessNode):
        raise RestartError(f"node {old.pk} is a {type(old).__name__}, not a process")
    old_pk = int(old.pk or 0)
    state = old.process_state
    if state not in RESTARTABLE or (state is ProcessState.FINISHED and not old.exit_status):
        what = "finished ok" if state is ProcessState.FINISHED else f"{state.value}"
        if not old.is_terminated:
            what += " (not terminated: kill it first, or play it if it is paused)"
        raise RestartError(
            f"process {old.pk} is {what}: only an excepted, killed or failed (non-zero exit status) "
            "process can be restarted"
        )
    try:
        cls = load_process_class(old)
    except ImportError as exc:
        raise RestartError(f"cannot restart process {old.pk}: {exc}") from exc
    if issubclass(cls, CalcJob):
        return _plan_parse(old, cls, from_step)
    if issubclass(cls, DurableWorkflowProcess):
        return _plan_replay(old, cls, from_step, step_map)
    if not issubclass(cls, WorkChain):
        raise RestartError(
            f"process {old.pk} is a {cls.__name__}: only work chains restart from a step, "
            "calculation jobs from their parse stage and durable workflows from the top"
        )
    mapping = dict(step_map or {})
    history = _backend().get_checkpoints(old.pk)
    # the ready points: the start, and each checkpoint that waits for no child;
    # the step that ran after a point is the step of the next checkpoint (or the failed step)
    start = {"version": CHECKPOINT_VERSION, "pc": 0, "ctx": {}, "awaiting": [], "calls": 0}
    points: list[tuple[dict[str, Any], str | None, list[str]]] = []  # (checkpoint, next step, steps before)
    rows = [(row["data"], row["step"]) for row in history]
    if not history or history[0]["seq"] != 0:  # seq 0: a restarted chain's own start
        rows.insert(0, (start, None))
    failed = _failed_step(old_pk)
    for index, (data, _) in enumerate(rows):
        if data.get("awaiting"):
            continue
        following = rows[index + 1][1] if index + 1 < len(rows) else failed
        before = [str(step) for _, step in rows[1 : index + 1] if step]
        points.append((data, following, before))
    if from_step is None:
        chosen = points[-1]  # the last point the chain reached
        if chosen[1] is None:  # e.g. killed while parked in the database: no step was running
            ran = sorted({p[1] for p in points if p[1]})
            raise RestartError(
                f"process {old.pk} records no step where it ended: give the step to restart from "
                f"(--from STEP; steps it reached: {', '.join(ran) or 'none'})"
            )
    else:
        matches = [point for point in points if point[1] in (from_step, _reverse(mapping, from_step))]
        if not matches:
            ran = sorted({p[1] for p in points if p[1]})
            raise RestartError(
                f"process {old.pk} has no checkpoint before step '{from_step}' (steps it reached: "
                f"{', '.join(ran) or 'none'})"
            )
        chosen = matches[-1]
    checkpoint, old_step, before = chosen
    assert old_step is not None
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise RestartError(f"the checkpoint of process {old.pk} has version {checkpoint.get('version')}")
    step = mapping.get(old_step, old_step)
    program, _ = cls._program()
    names = [_name(op[1]) for op in program if op[0] == _CALL]
    positions = [index for index, op in enumerate(program) if op[0] == _CALL and _name(op[1]) == step]
    if not positions:
        raise RestartError(
            f"cannot restart process {old.pk} at step '{step}': the outline of {cls.__name__} has no such "
            f"step now (its steps: {', '.join(dict.fromkeys(names))}); map a renamed step with --map "
            f"{old_step}=NEW"
        )
    if len(positions) > 1:
        old_pc = int(checkpoint.get("pc", -1))
        if old_pc not in positions:
            raise RestartError(
                f"step '{step}' appears {len(positions)} times in the outline of {cls.__name__}: the "
                "restart point is ambiguous"
            )
        positions = [old_pc]
    missing = sorted({s for s in before if mapping.get(s, s) not in names})
    if missing:
        raise RestartError(
            f"cannot restart process {old.pk} at step '{step}': its saved context was made by step(s) "
            f"{', '.join(missing)}, which the outline of {cls.__name__} no longer has (map renamed steps "
            "with --map OLD=NEW)"
        )
    for key, value in checkpoint.get("ctx", {}).items():
        try:
            decode(value, load_node)
        except Exception as exc:
            raise RestartError(
                f"the saved context of process {old.pk} does not load any more (ctx.{key}: {exc})"
            ) from exc
    return RestartPlan(old, cls, step, checkpoint, positions[0], before)


def _plan_parse(old: ProcessNode, cls: type[CalcJob], from_step: str | None) -> RestartPlan:
    """A calculation job restarts at its parse stage, from the last checkpoint taken there."""
    if from_step not in (None, PARSE_STAGE):
        raise RestartError(
            f"process {old.pk} is a calculation job ({cls.__name__}): it restarts only from "
            f"'{PARSE_STAGE}', not '{from_step}'"
        )
    history = [row["data"] for row in _backend().get_checkpoints(int(old.pk or 0))]
    at_parse = [data for data in history if data.get("stage") == PARSE_STAGE and data.get("retrieved")]
    if not at_parse:
        # the history holds parse-stage checkpoints only; the process row has the last one taken
        reached = (old._process_row.get("checkpoint") or {}).get("stage") or "none"
        raise RestartError(
            f"calculation job {old.pk} never reached its parse stage with retrieved files (the last "
            f"stage it checkpointed: {reached}): it cannot be parsed again"
        )
    checkpoint = at_parse[-1]
    try:
        load_node(int(checkpoint["retrieved"]))
    except Exception as exc:
        raise RestartError(f"the retrieved folder of calculation job {old.pk} does not load: {exc}") from exc
    return RestartPlan(old, cls, PARSE_STAGE, checkpoint, 0, [])


def _plan_replay(
    old: ProcessNode,
    cls: type[DurableWorkflowProcess],
    from_step: str | None,
    step_map: Mapping[str, str] | None,
) -> RestartPlan:
    """A durable workflow restarts from the top, offered the launches its old run finished ok."""
    name = f"durable workflow {old.process_label} (process {old.pk})"
    if step_map:
        raise RestartError(
            f"{name} has no steps, so there is nothing to map (--map): it restarts from the top and "
            "reuses its recorded launches up to the first one that differs"
        )
    offered = reusable_launches(old)
    if from_step is not None:
        if not from_step.strip().isdigit():
            raise RestartError(
                f"{name} has no step '{from_step}': a workflow has no steps, it restarts from the top; "
                f"--from takes a launch position there (0 to {len(offered)}: the launches before it "
                "are reused, that one and the later ones run again)"
            )
        position = int(from_step)
        if position > len(offered):
            raise RestartError(
                f"cannot restart {name} from launch {position}: only launches 0 to {len(offered) - 1} "
                f"finished ok in its run (--from takes 0 to {len(offered)})"
                if offered
                else f"cannot restart {name} from launch {position}: none of its launches finished ok "
                "(--from takes only 0)"
            )
        offered = offered[:position]
    return RestartPlan(old, cls, "", {}, 0, [], launches=offered)


def recorded_launches(node: ProcessNode) -> dict[int, int]:
    """``{launch position: child pk}`` of what durable workflow ``node`` launched or reused.

    Its own children by their call keys, and, when ``node`` is itself a
    restart, the children it was offered (``restart_reused``) at the
    positions before its own first launch.
    """
    own = {
        call_index(row["call_key"]): int(row["node_id"])
        for row in _backend().get_children(int(node.pk or 0))
        if row["call_key"]
    }
    offered: list[int] = []
    if node.get_attribute("restarted_from", None) is not None:
        offered = [int(pk) for pk in node.get_attribute("restart_reused", None) or []]
    first_own = min(own, default=len(offered))
    launches = dict(enumerate(offered[:first_own]))
    launches.update(own)
    return launches


def reusable_launches(node: ProcessNode) -> list[int]:
    """The children of durable workflow ``node`` a restart reuses, in launch order: from launch 0
    up to (not including) the first position with no child, or one that did not finish ok."""
    launches = recorded_launches(node)
    pks = sorted(set(launches.values()))
    rows: dict[int, dict[str, Any]] = {}
    for start in range(0, len(pks), _IDS_PER_QUERY):  # a few queries, whatever the fan-out
        chunk = pks[start : start + _IDS_PER_QUERY]
        rows.update({row["node_id"]: row for row in _backend().list_processes(pks=chunk)})
    reusable: list[int] = []
    for position in range(len(launches)):
        row = rows.get(launches.get(position, -1))
        if row is None or row["state"] != ProcessState.FINISHED.value or row["exit_status"] != 0:
            break
        reusable.append(int(row["node_id"]))
    return reusable


#: ids in one IN list of the queries above
_IDS_PER_QUERY = 2000


def _reverse(mapping: Mapping[str, str], new: str) -> str | None:
    for old, target in mapping.items():
        if target == new:
            return old
    return None


def restart(
    pk: int | ProcessNode,
    from_step: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    step_map: Mapping[str, str] | None = None,
    submit: bool = False,
) -> ProcessNode:
    """Restart work chain ``pk`` at ``from_step`` (None: the step that failed) as a new process.

    A calculation job restarts at its parse stage (``from_step`` None or ``"parse"``).  A
    durable workflow restarts from the top, reusing the launches its old run finished ok up to the
    first that differs (``from_step``: a launch position, the launches before it are reused).

    ``inputs`` replace the old inputs of those ports (validated by the spec as at any launch).
    Without ``submit`` the new chain runs here until it ends and its node is returned
    (refreshed); with ``submit`` it is stored for the daemon and returned at once.

    Raises:
        RestartError: see :func:`plan_restart`.
        InputValidationError: the inputs, old and changed, are refused by the current spec
            (nothing stored).
    """
    plan = plan_restart(pk, from_step, step_map)
    old_inputs = plan.cls._load(plan.old, None)._inputs_raw  # the old inputs, as linked to the old node
    merged = {**old_inputs, **dict(inputs or {})}
    instance = plan.cls(plan.cls.prepare_inputs(merged))
    instance._restart_attributes = {
        "restarted_from": plan.old.pk,
        "restarted_from_uuid": plan.old.uuid,
        "restart_reused": plan.reused(),
        "restart_changed_inputs": sorted(inputs or {}),
    }
    if not plan.is_replay:  # a workflow has no step: it replays from the top
        instance._restart_attributes["restarted_from_step"] = plan.step
    if issubclass(plan.cls, CalcJob):
        from plait.engine.parser import get_parser_class

        get_parser_class.cache_clear()  # the parser of the current code, not the one seen before
        instance._restart_attributes["restart_retrieved"] = int(plan.checkpoint["retrieved"])
    node = instance._store_new(
        state=ProcessState.CREATED,
        parent=None,
        submitted=submit,
        checkpoint=plan.new_checkpoint(),
        checkpoint_step=plan.before[-1] if plan.before else None,
    )
    if submit:
        from plait.engine.bell import ring_work

        ring_work()
        return node
    from plait.engine.launch import resume

    _, node = resume(int(node.pk or 0))
    return node


# -- a restarted durable workflow's replay: the launches offered by the old run ---------------------
#
# durable.py matches each launch against ``_recorded_children`` ({call key: pk}), rebuilt from the
# workflow's own children before every attempt.  A restarted workflow's offered launches are another
# node's children: before each run from the top, DurableWorkflowProcess asks for them here (they go
# in at their positions, before the first position the new node launched itself); and at an offered
# position a launch that differs ends the reuse there (it and every later launch run anew) instead
# of being a non-determinism.  Nothing changes for a workflow that is not a restart.


def offer_reused_launches(process: DurableWorkflowProcess) -> set[int]:
    """(thread) Put the offered launches of restarted workflow ``process`` in its recorded children;
    returns their positions."""
    offered = [int(pk) for pk in process.node.get_attribute("restart_reused", None) or []]
    own = [call_index(row["call_key"]) for row in _backend().get_children(process.pk) if row["call_key"]]
    first_own = min(own, default=len(offered))
    positions: set[int] = set()
    for position, pk in enumerate(offered[:first_own]):
        process._recorded_children.setdefault(encode_call_key(process.pk, position), pk)
        positions.add(position)
    return positions


def end_reuse(process: DurableWorkflowProcess, position: int) -> None:
    """(thread) A launch differs from the offered one at ``position``: it and the later ones run anew."""
    offered = process._restart_offered
    recorded = process._recorded_children.get(encode_call_key(process.pk, position))
    for later in sorted(p for p in offered if p >= position):
        process._recorded_children.pop(encode_call_key(process.pk, later), None)
        offered.discard(later)
    node = load_node(recorded) if recorded is not None else None
    label = node.process_label if isinstance(node, ProcessNode) else "?"
    process.report(
        f"restart of process {process.node.get_attribute('restarted_from', None)}: launch {position} "
        f"differs from the old run's ({label}, process {recorded}: another class or other inputs now), "
        "so it and every launch after it run anew"
    )
