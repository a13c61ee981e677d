"""Calculation jobs: run a code on a computer through its scheduler, with provenance.

A :class:`CalcJob` subclass declares its inputs and outputs and writes the
input files in :meth:`CalcJob.prepare_for_submission`, returning a
:class:`CalcInfo` that says what else to copy into the job's folder, which
commands to run, and which files to retrieve.  The engine then runs five
tasks, each committed as a checkpoint when it is done:

``upload``
    make the job's folder on the computer, copy the prepared files, the
    files of input nodes and remote files into it, and write the job script;
    the folder becomes the ``remote_folder`` output.
``submit``
    wait for a slot if the computer caps its queued jobs
    (``max_queued_jobs``), then submit the script to the scheduler.
``update``
    wait until the scheduler reports the job finished — one batched query
    per computer for all jobs (:mod:`plait.engine.job_manager`).
``retrieve``
    copy the files to keep into a ``FolderData`` (the ``retrieved`` output),
    and read the job's exit-code file.
``parse``
    run the parser (in a thread) on the retrieved files.

Every task that talks to the computer is retried with exponential backoff
(``retry_initial_interval`` and ``retry_max_attempts`` of the computer).
When the attempts run out the process is *paused* with the reason on its
node instead of failing; ``plait process play`` retries that task.  Killing
a calculation job cancels its scheduler job.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import os
import posixpath
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from plait.engine import lifecycle
from plait.engine.checkpoint import CHECKPOINT_VERSION
from plait.engine.exit_code import ExitCode
from plait.engine.job_options import PreparedJobInputs, computer_of
from plait.engine.job_paths import check_calc_info_paths, check_option_paths
from plait.engine.monitors import (
    STOPPED_BY_MONITOR,
    CalcJobMonitorResult,
    CalcJobMonitors,
    stopped_exit_code,
    validate_monitors,
    watch_job,
)
from plait.engine.process import Process
from plait.engine.spec import ProcessSpec
from plait.orm import CalcJobNode, Dict, FolderData, Node, ProcessState, RemoteData, load_node
from plait.orm.code import Code
from plait.orm.computer import Computer
from plait.transports._local_files import walk_local_tree
from plait.transports.relative_paths import UnsafePathError

if TYPE_CHECKING:
    from plait.transports import BlockingTransport

__all__ = ["CalcInfo", "CalcJob", "CodeInfo", "RetrieveItem"]

SCRIPT_NAME = "_plait_submit.sh"
_GLOB = set("*?[")


#: an item of a retrieve list: a path or glob, or ``(source glob, target, depth)``
RetrieveItem = str | tuple[str, str, int | None]


@dataclass
class CodeInfo:
    """One command of the job: the code (default: the ``code`` input) and its arguments and files.

    ``cmdline_params`` are quoted when written into the script, so pass them
    as they should reach the program.
    """

    cmdline_params: list[str] = field(default_factory=list)
    stdin_name: str | None = None
    stdout_name: str | None = None
    stderr_name: str | None = None
    join_files: bool = False
    withmpi: bool | None = None
    code: Code | None = None
    #: run this executable (a path or a name looked up in PATH on the computer) instead of a code
    executable: str | None = None


@dataclass
class CalcInfo:
    """What :meth:`CalcJob.prepare_for_submission` tells the engine to do.

    Attributes:
        codes_info: the commands to run, one after the other.
        local_copy_list: ``(node, path in the node or "" for all its files, target path)``:
            files of stored nodes copied into the job folder.
        remote_copy_list: ``(absolute path on the computer, target path)``: copied on the computer.
        remote_symlink_list: ``(absolute path on the computer, link path)``: linked instead.
        retrieve_list: paths or globs (relative to the job folder) kept in ``retrieved``; an item
            may also be ``(source, target, depth)`` as in aiida-core: each match of ``source``
            (a path or glob, wildcards allowed in any part) is put in ``target`` under the last
            ``depth`` parts of its path (``None``: all of them; ``0``: at ``target`` itself).
        retrieve_temporary_list: the same, given to the parser only, then thrown away.
    """

    codes_info: list[CodeInfo] = field(default_factory=list)
    local_copy_list: list[tuple[Node, str, str]] = field(default_factory=list)
    remote_copy_list: list[tuple[str, str]] = field(default_factory=list)
    remote_symlink_list: list[tuple[str, str]] = field(default_factory=list)
    retrieve_list: list[RetrieveItem] = field(default_factory=list)
    retrieve_temporary_list: list[RetrieveItem] = field(default_factory=list)


def _check_resources(value: Any) -> str | None:
    from plait.schedulers import JobResources

    if not isinstance(value, dict):
        return f"resources must be a dict, got {type(value).__name__}"
    if not value:
        return None
    try:
        JobResources.from_dict(value)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _check_retrieve_list(value: Any) -> str | None:
    for item in value if isinstance(value, list) else []:
        try:
            _retrieve_key(item)
        except ValueError as exc:
            return str(exc)
    return None


class _Stage:
    UPLOAD, SUBMIT, UPDATE, RETRIEVE, PARSE = "upload", "submit", "update", "retrieve", "parse"


class CalcJob(Process):
    """Base class of calculation jobs.  Subclasses define inputs and ``prepare_for_submission``."""

    _node_class = CalcJobNode
    #: parser used when ``metadata.options.parser_name`` is not given (entry point name or module:Class)
    _default_parser: ClassVar[str | None] = None

    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        super().define(spec)
        spec.input(
            "code", valid_type=Code, required=False, help="the code to run (its computer runs the job)"
        )
        spec.input(
            "metadata.computer",
            valid_type=str,
            required=False,
            non_db=True,
            help="label of the computer when the code does not say (default: localhost)",
        )
        spec.input_namespace("metadata.options", non_db=True, help="how the job runs")
        option = spec.input
        option("metadata.options.resources", valid_type=dict, non_db=True, validator=_check_resources,
               default=lambda: {"num_machines": 1, "num_mpiprocs_per_machine": 1},
               help="num_machines, num_mpiprocs_per_machine... (default: one process)")  # fmt: skip
        option("metadata.options.max_wallclock_seconds", valid_type=int, required=False, non_db=True)
        option("metadata.options.queue_name", valid_type=str, required=False, non_db=True)
        option("metadata.options.account", valid_type=str, required=False, non_db=True)
        option("metadata.options.qos", valid_type=str, required=False, non_db=True)
        option("metadata.options.max_memory_kb", valid_type=int, required=False, non_db=True)
        option("metadata.options.withmpi", valid_type=bool, default=False, non_db=True)
        option("metadata.options.custom_scheduler_commands", valid_type=str, default="", non_db=True)
        option("metadata.options.environment_variables", valid_type=dict, default=lambda: {}, non_db=True)
        option("metadata.options.prepend_text", valid_type=str, default="", non_db=True)
        option("metadata.options.append_text", valid_type=str, default="", non_db=True)
        option("metadata.options.input_filename", valid_type=str, required=False, non_db=True)
        option("metadata.options.output_filename", valid_type=str, required=False, non_db=True)
        option(
            "metadata.options.scheduler_stdout", valid_type=str, default="_scheduler-stdout.txt", non_db=True
        )
        option(
            "metadata.options.scheduler_stderr", valid_type=str, default="_scheduler-stderr.txt", non_db=True
        )
        option("metadata.options.parser_name", valid_type=str, required=False, non_db=True)
        option("metadata.options.additional_retrieve_list", valid_type=list, default=lambda: [], non_db=True,
               validator=_check_retrieve_list)  # fmt: skip
        option("metadata.options.ignore_nonzero_exit_status", valid_type=bool, default=False, non_db=True,
               help="a code exiting non-zero is not an error by itself (let the parser decide)")  # fmt: skip
        spec.output("remote_folder", valid_type=RemoteData, help="the job's folder on the computer")
        spec.output("retrieved", valid_type=FolderData, help="the files kept from the job's folder")
        spec.exit_code(100, "ERROR_NO_RETRIEVED_FOLDER", "the files of the job could not be retrieved")
        spec.exit_code(110, "ERROR_SCHEDULER_JOB_FAILED", "the job failed in the scheduler: {reason}")
        spec.exit_code(111, "ERROR_SCHEDULER_OUT_OF_WALLTIME", "the job hit its wall-time limit: {reason}")
        spec.exit_code(112, "ERROR_SCHEDULER_OUT_OF_MEMORY", "the job ran out of memory: {reason}")
        spec.exit_code(113, "ERROR_SCHEDULER_NODE_FAILURE", "a node of the job failed: {reason}")
        spec.exit_code(120, "ERROR_CODE_FAILED", "the code exited with status {status}")
        spec.exit_code(
            300, "ERROR_MISSING_OUTPUT_FILES", "output files the parser needs are missing: {files}"
        )
        spec.exit_code(310, "ERROR_READING_OUTPUT_FILE", "an output file could not be read: {message}")
        spec.exit_code(320, "ERROR_INVALID_OUTPUT", "the output files hold invalid content: {message}")
        spec.input_namespace(
            "monitors",
            dynamic=True,
            valid_type=Dict,
            validator=validate_monitors,
            help="functions called while the job runs, able to stop it (see plait.engine.monitors)",
        )
        spec.exit_code(STOPPED_BY_MONITOR, "STOPPED_BY_MONITOR", "{message}")

    prepare_reads_storage = True  # check_job_options loads the computer and its scheduler

    @classmethod
    def prepare_inputs(cls, inputs: Any) -> dict[str, Any]:
        """The spec's validation, then the options checked by the computer's scheduler.

        Returns a :class:`~plait.engine.job_options.PreparedJobInputs`: the job made from it runs
        on the computer its options were checked against, without reading it again.

        Raises:
            InputValidationError: naming the port or ``metadata.options.<name>``; nothing is stored.
        """
        from plait.engine.job_options import check_job_options

        processed = PreparedJobInputs(super().prepare_inputs(inputs))
        processed.computer = check_job_options(cls.process_label_string(), processed)
        check_option_paths(cls.process_label_string(), processed)
        cls._check_parser_name(processed)
        return processed

    # -- to override -----------------------------------------------------------------------
    def prepare_for_submission(self, folder: Path) -> CalcInfo:
        """Write the input files into ``folder`` and say what to run and retrieve.

        Runs in a worker thread.  ``self.inputs`` holds the inputs, and
        ``self.options`` the ``metadata.options``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement prepare_for_submission(folder)")

    @classmethod
    def _launch_problem(cls) -> str | None:
        if cls is CalcJob:
            return "CalcJob is a base class: launch a subclass that implements prepare_for_submission(folder)"
        if cls.prepare_for_submission is CalcJob.prepare_for_submission:
            return f"{cls.__name__} must implement prepare_for_submission(folder)"
        return super()._launch_problem()

    @classmethod
    def _check_parser_name(cls, processed: dict[str, Any]) -> None:
        """Refuse, at launch, a parser that does not exist (it would only fail after the job ran).

        Raises:
            InputValidationError: naming ``metadata.options.parser_name`` and the known parsers.
        """
        from plait.engine.parser import get_parser_class
        from plait.engine.ports import InputValidationError

        name = processed.get("metadata", {}).get("options", {}).get("parser_name")
        if not name:
            return
        try:
            get_parser_class(name)
        except (ValueError, ImportError, AttributeError) as exc:
            raise InputValidationError(
                cls.process_label_string(), [("metadata.options.parser_name", str(exc))]
            ) from None

    # -- state --------------------------------------------------------------------------------
    def __init__(self, inputs: Any, **kwargs: Any) -> None:
        super().__init__(inputs, **kwargs)
        self._stage = _Stage.UPLOAD
        self._workdir: str | None = None
        self._job_id: str | None = None
        self._job_info: dict[str, Any] | None = None
        self._job_exit_status: int | None = None
        self._retrieved_pk: int | None = None
        self._temporary_folder: Path | None = None
        #: the computer the job runs on, read once: the one ``prepare_inputs`` checked the options against
        self._computer_cache: Computer | None = (
            inputs.computer if isinstance(inputs, PreparedJobInputs) else None
        )
        self._calc_info: CalcInfo | None = None
        self._sandbox: Path | None = None
        self._pool_key: tuple[str, str, str] | None = None
        self._status_updates: set[asyncio.Task[Any]] = set()
        #: the verdict of the monitor that stopped the job (checkpointed), see plait.engine.monitors
        self._monitor_result: CalcJobMonitorResult | None = None
        #: the job's monitors, made on first use (so a disabled one stays disabled across retries)
        self._monitors: CalcJobMonitors | None = None
        #: whether this run's upload commit already marked the job ``submitting`` (no ``max_queued_jobs``)
        self._slot_reserved = False

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.inputs.get("metadata", {}).get("options", {}))

    @property
    def job_exit_status(self) -> int | None:
        return self._job_exit_status

    @property
    def computer(self) -> Computer:
        if self._computer_cache is None:
            self._computer_cache = computer_of(self.inputs)
        return self._computer_cache

    def _prepare_node(self, node: Any) -> None:
        node._computer_id = self.computer.pk

    def _make_checkpoint(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "kind": "calcjob",
            "stage": self._stage,
            "workdir": self._workdir,
            "job_id": self._job_id,
            "job_info": self._job_info,
            "job_exit_status": self._job_exit_status,
            "retrieved": self._retrieved_pk,
            "monitor_result": self._monitor_result.to_json() if self._monitor_result else None,
        }

    def _restore(self, checkpoint: dict[str, Any] | None) -> None:
        if not checkpoint:
            return
        self._stage = checkpoint.get("stage", _Stage.UPLOAD)
        self._workdir = checkpoint.get("workdir")
        self._job_id = checkpoint.get("job_id")
        self._job_info = checkpoint.get("job_info")
        self._job_exit_status = checkpoint.get("job_exit_status")
        self._retrieved_pk = checkpoint.get("retrieved")
        if checkpoint.get("monitor_result"):
            self._monitor_result = CalcJobMonitorResult.from_json(checkpoint["monitor_result"])
        if self._retrieved_pk is not None:
            self._outputs["retrieved"] = load_node(self._retrieved_pk)
        # a job restarted at its parse stage (plait.engine.restart_from): the old job's outputs it
        # needs (remote_folder), which keep their one creator and are not linked again
        for label, pk in checkpoint.get("reused_outputs", {}).items():
            self._outputs.setdefault(label, load_node(pk))

    # -- the task sequence ---------------------------------------------------------------------
    async def _execute(self) -> ExitCode | None:
        runner = self.runner
        assert runner is not None
        if self._stage == _Stage.UPLOAD and self._workdir is None:  # not started: maybe in the cache
            from plait.engine.caching import reuse_cached_outputs

            if await runner.call_db(self, reuse_cached_outputs, self):
                return None  # finished ok with the source's outputs, without running
        while True:
            runner.check_safe_point(self)
            if self._stage == _Stage.UPLOAD:
                await self._retrying("upload", self._upload)
                # a computer with no cap on queued jobs has no slot to wait for: the commit that
                # records the upload also marks the job as submitting (one write, not two)
                uncapped = self.computer.options.get("max_queued_jobs") is None
                await self._advance(
                    _Stage.SUBMIT,
                    "waiting",
                    "uploaded; waiting to submit",
                    "submitting" if uncapped else "submit",
                )
                self._slot_reserved = uncapped
            elif self._stage == _Stage.SUBMIT:
                if not self._slot_reserved:  # capped, or resumed at this stage: reserve as it says
                    await self._wait_for_slot()
                await self._retrying("submit", self._submit)
                await self._advance(
                    _Stage.UPDATE,
                    "waiting",
                    f"submitted as job {self._job_id}; waiting for the scheduler",
                    "queued",
                )
            elif self._stage == _Stage.UPDATE:
                await self._retrying("update", self._update)
                stopped = stopped_exit_code(self)
                if stopped is not None and self._monitor_result and not self._monitor_result.retrieve:
                    return stopped  # a monitor stopped the job and wants nothing retrieved
                await self._advance(_Stage.RETRIEVE, "running", "job done; retrieving", "retrieve")
            elif self._stage == _Stage.RETRIEVE:
                await self._retrying("retrieve", self._retrieve)
                await self._advance(_Stage.PARSE, "running", "parsing", "parse")
            else:
                if "retrieved" not in self._outputs:
                    return self.exit_codes.ERROR_NO_RETRIEVED_FOLDER
                if self._temporary_folder is None and (await self._get_calc_info()).retrieve_temporary_list:
                    await self._retrying("retrieve", self._retrieve_temporary)
                stopped, monitored = stopped_exit_code(self), self._monitor_result
                if stopped is not None and monitored is not None and not monitored.parse:
                    return stopped
                try:
                    parsed = await runner.call_in_thread(self, self._parse)
                    if stopped is not None and monitored is not None and monitored.override_exit_code:
                        return stopped
                    return parsed
                finally:
                    if self._temporary_folder is not None:
                        await asyncio.to_thread(shutil.rmtree, self._temporary_folder, True)

    async def _advance(self, stage: str, state: str, status: str, job_stage: str) -> None:
        self._stage = stage
        await self.runner.call_db(  # type: ignore[union-attr]
            self, self._commit_stage, ProcessState(state), status, job_stage
        )
        await self.runner.after_checkpoint(self)  # type: ignore[union-attr]

    def _commit_stage(self, state: ProcessState, status: str, job_stage: str) -> None:
        # The history keeps the parse stage's checkpoint only: it is the one a restart reads
        # (plait.engine.restart_from), and the earlier stages' rows cost an INSERT each inside
        # the write transaction of every job.
        self._commit(
            state,
            checkpoint=self._make_checkpoint(),
            keep_history=self._stage == _Stage.PARSE,
            status=status,
            job_stage=job_stage,
        )

    async def _retrying(self, task: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run a task; on transport or scheduler errors retry with backoff, then pause until played."""
        from plait.schedulers import SchedulerError
        from plait.transports import TransportError

        options = self.computer.options
        attempts = int(options.get("retry_max_attempts") or 5)
        initial = float(options.get("retry_initial_interval") or 0.0)
        attempt, interval = 0, initial
        while True:
            try:
                await action()
                return
            except (TransportError, SchedulerError) as exc:
                attempt += 1
                if not getattr(exc, "retryable", True):
                    # trying again cannot help (a refused permission, a rejected option): say so at once
                    reason = f"{task} failed and cannot succeed on retry: {type(exc).__name__}: {exc}"
                    await self.runner.pause_process(self, reason=reason)  # type: ignore[union-attr]
                    attempt, interval = 0, initial
                    continue
                if attempt >= attempts:
                    reason = f"{task} failed {attempt} times; last error: {type(exc).__name__}: {exc}"
                    await self.runner.pause_process(self, reason=reason)  # type: ignore[union-attr]
                    attempt, interval = 0, initial
                    continue
                await self._report_async(
                    f"{task} failed (attempt {attempt} of {attempts}): {exc}; retrying in {interval:g} s"
                )
                await asyncio.sleep(interval)
                interval *= 2

    async def _report_async(self, message: str) -> None:
        await self.runner.call_db(self, self.report, message)  # type: ignore[union-attr]

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        computer = self.computer
        if self._pool_key is None:
            # the key holds the user's login name on the computer: read from the database once, off the loop
            self._pool_key = await self.runner.call_db(self, lambda: computer.pool_key)  # type: ignore[union-attr]
        async with self.runner.transport_pool.request(  # type: ignore[union-attr]
            self._pool_key,
            computer.get_transport,
            safe_interval=computer.safe_interval(),
            max_concurrent_operations=int(computer.options.get("max_concurrent_operations") or 8),
        ) as transport:
            yield transport

    @contextlib.contextmanager
    def blocking_transport(self) -> Iterator[BlockingTransport]:
        """(thread) A blocking view of the pooled connection to this job's computer.

        For code that runs in a thread while the job runs — a parser that must
        read a file left on the computer: the calls run on the runner's loop
        through the very connection the job used (no second SSH login to the
        same node).  Outside a runner (``Parser.parse_from_node``) a connection
        of its own is opened and closed.
        """
        from plait.transports import as_blocking

        runner = self.runner
        if runner is None or runner._on_loop_thread():
            with as_blocking(self.computer.get_transport()) as transport:
                yield transport
            return
        request = self._transport()
        transport = asyncio.run_coroutine_threadsafe(request.__aenter__(), runner.loop).result()
        try:
            yield as_blocking(transport, loop=runner.loop)
        finally:
            asyncio.run_coroutine_threadsafe(request.__aexit__(None, None, None), runner.loop).result()

    # -- upload ----------------------------------------------------------------------------------
    def _job_template(self, calc_info: CalcInfo) -> Any:
        from plait.schedulers import CodeRun, JobResources, JobTemplate

        options = self.options
        computer = self.computer
        resources = dict(options.get("resources") or {})
        if "num_mpiprocs_per_machine" not in resources and "tot_num_mpiprocs" not in resources:
            default = computer.options.get("default_mpiprocs_per_machine")
            if default:
                resources["num_mpiprocs_per_machine"] = default
        runs = []
        prepend = [computer.options.get("prepend_text") or "", options.get("prepend_text") or ""]
        append = [options.get("append_text") or "", computer.options.get("append_text") or ""]
        for info in calc_info.codes_info:
            code = info.code or self.inputs.get("code")
            if info.executable:
                executable, code_mpi = info.executable, None
            elif code is not None:
                prepend.append(code.prepend_text)
                append.insert(0, code.append_text)
                executable, code_mpi = code.get_executable(), code.with_mpi
            else:
                raise ValueError(
                    f"{type(self).__name__}: a CodeInfo has no code and no `code` input was given"
                )
            withmpi = (
                info.withmpi if info.withmpi is not None else (code_mpi or options.get("withmpi", False))
            )
            runs.append(
                CodeRun(
                    cmdline=[executable, *map(str, info.cmdline_params)],
                    stdin_name=info.stdin_name,
                    stdout_name=info.stdout_name,
                    stderr_name=info.stderr_name,
                    join_files=info.join_files,
                    withmpi=bool(withmpi),
                )
            )
        return JobTemplate(
            job_name=f"plait-{self.pk}",
            resources=JobResources.from_dict(resources),
            max_wallclock_seconds=options.get("max_wallclock_seconds"),
            queue_name=options.get("queue_name"),
            account=options.get("account"),
            qos=options.get("qos"),
            max_memory_kb=options.get("max_memory_kb"),
            custom_scheduler_commands=options.get("custom_scheduler_commands") or "",
            environment={str(k): str(v) for k, v in (options.get("environment_variables") or {}).items()},
            prepend_text="\n".join(t for t in prepend if t),
            append_text="\n".join(t for t in append if t),
            mpirun_command=list(
                computer.options.get("mpirun_command") or ["mpirun", "-np", "{tot_num_mpiprocs}"]
            ),
            code_runs=tuple(runs),
            scheduler_stdout=options.get("scheduler_stdout", "_scheduler-stdout.txt"),
            scheduler_stderr=options.get("scheduler_stderr", "_scheduler-stderr.txt"),
        )

    def _prepare_sandbox(self) -> tuple[Path, CalcInfo]:
        """(thread) Run prepare_for_submission into a fresh folder and add the job script."""
        sandbox = Path(tempfile.mkdtemp(prefix=f"plait-{self.pk}-"))
        try:
            calc_info = self.prepare_for_submission(sandbox)
            if not isinstance(calc_info, CalcInfo):
                raise TypeError(
                    f"{type(self).__name__}.prepare_for_submission returned "
                    f"{type(calc_info).__name__}, not CalcInfo"
                )
            check_calc_info_paths(type(self).__name__, calc_info)  # a plugin bug: the job excepts
            for item in [*calc_info.retrieve_list, *calc_info.retrieve_temporary_list]:
                _retrieve_key(item)  # a malformed item fails here, not after the job ran
            script = self.computer.get_scheduler().get_submit_script(self._job_template(calc_info))
            (sandbox / SCRIPT_NAME).write_text(script)
            self._stage_portable_codes(calc_info, sandbox)
            # the exact inputs the job got are part of its provenance
            files = {
                p.relative_to(sandbox).as_posix(): p.read_bytes()
                for p in sorted(sandbox.rglob("*"))
                if p.is_file()
            }
            self.node.set_runtime_files({f"raw_input/{k}": v for k, v in files.items()})
            _stage_local_copies(calc_info.local_copy_list, sandbox)
        except BaseException:
            shutil.rmtree(sandbox, ignore_errors=True)
            raise
        self._calc_info = calc_info
        return sandbox, calc_info

    def _stage_portable_codes(self, calc_info: CalcInfo, sandbox: Path) -> None:
        """(thread) Put the files of every portable code the job runs into its folder, executable."""
        from plait.orm.code import PortableCode

        used = (info.code or self.inputs.get("code") for info in calc_info.codes_info)
        codes = {id(c): c for c in used if c}
        for code in codes.values():
            if not isinstance(code, PortableCode):
                continue
            for relpath in code.list_file_paths():
                target = sandbox / relpath
                if target.exists():
                    raise ValueError(
                        f"{type(self).__name__}: the portable code '{code.label}' has a file '{relpath}' "
                        "that the calculation also writes"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                code.copy_file_to(relpath, target)
            executable = sandbox / code.filepath_executable
            executable.chmod(executable.stat().st_mode | 0o111)

    async def _upload(self) -> None:
        if self._sandbox is None:
            self._sandbox, _ = await self.runner.call_in_thread(self, self._prepare_sandbox)  # type: ignore[union-attr]
        sandbox = self._sandbox
        calc_info = self._calc_info
        assert calc_info is not None
        async with self._transport() as transport:
            if self._workdir is None:
                base = self.computer.work_dir
                if "{username}" in base:
                    base = base.replace("{username}", await transport.whoami())
                uuid = self.node.uuid
                self._workdir = posixpath.join(base, uuid[:2], uuid[2:4], uuid[4:])
            workdir = self._workdir
            if await transport.exists(workdir):
                # an earlier attempt was cut off: start from an empty folder, so that no partial
                # or temporary file of that attempt stays behind (the folder is this job's alone)
                await transport.rmtree(workdir)
            await transport.mkdir(workdir, parents=True, exist_ok=True)
            await transport.puttree(sandbox, workdir)
            for remote_source, target in calc_info.remote_copy_list:
                await _ensure_parent(transport, workdir, target)
                await transport.copy(remote_source, posixpath.join(workdir, target))
            for remote_source, target in calc_info.remote_symlink_list:
                await _ensure_parent(transport, workdir, target)
                link = posixpath.join(workdir, target)
                if await transport.exists(link):
                    await transport.remove(link)
                await transport.symlink(remote_source, link)
        await asyncio.to_thread(shutil.rmtree, sandbox, True)
        self._sandbox = None
        remote = RemoteData(remote_path=workdir, computer=self.computer)
        if "remote_folder" not in self._outputs:
            self.out("remote_folder", remote)
        self.node.set_runtime_attributes(remote_workdir=workdir)  # written with the next commit

    # -- submit ------------------------------------------------------------------------------------
    async def _wait_for_slot(self) -> None:
        """Mark the job ``submitting`` once its computer has fewer than ``max_queued_jobs`` queued.

        Counting and marking are one transaction (:func:`lifecycle.reserve_job_slot`), so runners
        sharing a computer never overshoot the cap.  Skipped when the upload's commit marked the
        job already (a computer without a cap, in the same run).
        """
        from plait.storage import get_backend

        cap = self.computer.options.get("max_queued_jobs")
        backend = get_backend()
        announced = False
        while not await self.runner.call_db(  # type: ignore[union-attr]
            self, lifecycle.reserve_job_slot, self.pk, self.computer.pk, cap
        ):
            if not announced:
                queued = await self.runner.call_db(  # type: ignore[union-attr]
                    self, backend.count_queued_jobs, self.computer.pk
                )
                status = (
                    f"waiting for a slot on {self.computer.label}: {queued} jobs queued "
                    f"(max_queued_jobs={cap})"
                )
                await self.runner.call_db(  # type: ignore[union-attr]
                    self,
                    functools.partial(
                        lifecycle.set_status,
                        self.pk,
                        self._owner,
                        self.node,
                        status=status,
                        job_stage="waiting_slot",
                    ),
                )
                announced = True
            await asyncio.sleep(max(0.05, float(self.computer.options.get("minimum_poll_interval") or 0.5)))
            self.runner.check_safe_point(self)  # type: ignore[union-attr]

    async def _submit(self) -> None:
        scheduler = self.computer.get_scheduler()
        async with self._transport() as transport:
            job_id = await scheduler.submit(transport, self._workdir, SCRIPT_NAME)
        self._job_id = job_id
        self.node.set_runtime_attributes(job_id=job_id)  # written with the next commit

    # -- update ------------------------------------------------------------------------------------
    async def _update(self) -> None:
        """Wait for the scheduler to report the job final; its state changes until then become the status.

        The final report is not written as a status of its own: the commit that ends this stage
        follows at once with its status, and a status write racing it could land after it.
        """
        assert self._job_id is not None
        loop = asyncio.get_running_loop()

        def on_update(info: Any) -> None:
            if info.state.is_final:
                return
            reason = f" ({info.reason})" if info.reason and info.reason != "None" else ""
            status = f"job {info.job_id}: {info.state.value} in {self.computer.scheduler_type}{reason}"
            update = functools.partial(lifecycle.set_status, self.pk, self._owner, None, status=status)
            task = loop.create_task(self.runner.call_db(None, update))  # type: ignore[union-attr]
            self._status_updates.add(task)
            task.add_done_callback(self._status_updates.discard)

        manager = self.runner.job_manager  # type: ignore[union-attr]
        info = await watch_job(self, manager.wait_for_job(self.computer, self._job_id, on_update))
        self._job_info = {
            "state": info.state.value,
            "raw_state": info.raw_state,
            "reason": info.reason,
            "failure": info.failure,
            "exit_code": info.exit_code,
        }

    # -- retrieve ------------------------------------------------------------------------------------
    async def _retrieve(self) -> None:
        from plait.schedulers import JobTemplate

        options = self.options
        calc_info = await self._get_calc_info()
        names = [
            *calc_info.retrieve_list,
            *options.get("additional_retrieve_list", []),
            options.get("scheduler_stdout", "_scheduler-stdout.txt"),
            options.get("scheduler_stderr", "_scheduler-stderr.txt"),
        ]
        target = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"plait-retrieve-{self.pk}-"))
        try:
            async with self._transport() as transport:
                listing: dict[str, dict[str, Any]] = {}
                for name in dict.fromkeys(_retrieve_key(item) for item in names):
                    await _retrieve_entry(transport, self._workdir, name, target, listing)
                exit_file = posixpath.join(self._workdir, JobTemplate.exit_code_file)  # type: ignore[arg-type]
                try:
                    text = (await transport.read_bytes(exit_file)).decode().strip()
                    self._job_exit_status = int(text) if text else None
                except Exception as exc:
                    from plait.transports import PathNotFoundError

                    if not isinstance(exc, PathNotFoundError):
                        raise
                    self._job_exit_status = None
            folder, links = await self.runner.call_in_thread(self, _store_folder, target)  # type: ignore[union-attr]
        finally:
            await asyncio.to_thread(shutil.rmtree, target, True)
        if links:
            await self._report_async(
                "retrieved symlinks are not stored (a link is not followed on this side): "
                + ", ".join(f"{path} -> {link}" for path, link in links)
            )
        self._retrieved_pk = folder.pk
        self._outputs["retrieved"] = folder
        self._pending_outputs.append(("retrieved", folder))

    async def _get_calc_info(self) -> CalcInfo:
        if self._calc_info is None:
            self._calc_info = await self.runner.call_in_thread(self, self._calc_info_again)  # type: ignore[union-attr]
        assert self._calc_info is not None
        return self._calc_info

    def _calc_info_again(self) -> CalcInfo:
        """(thread) On resume the retrieve list is recomputed by preparing the inputs again."""
        sandbox = Path(tempfile.mkdtemp(prefix=f"plait-{self.pk}-again-"))
        try:
            calc_info = self.prepare_for_submission(sandbox)
            check_calc_info_paths(type(self).__name__, calc_info)
            return calc_info
        finally:
            shutil.rmtree(sandbox, ignore_errors=True)

    async def _retrieve_temporary(self) -> None:
        target = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"plait-temporary-{self.pk}-"))
        calc_info = await self._get_calc_info()
        async with self._transport() as transport:
            listing: dict[str, dict[str, Any]] = {}
            for name in calc_info.retrieve_temporary_list:
                await _retrieve_entry(transport, self._workdir, _retrieve_key(name), target, listing)
        self._temporary_folder = target

    # -- parse -----------------------------------------------------------------------------------------
    def _parse(self) -> ExitCode | None:
        """(thread) Scheduler verdict, then the parser, then the code's exit status."""
        from plait.engine.parser import get_parser_class

        scheduler_code = self._scheduler_exit_code()
        parser_name = self.options.get("parser_name") or self._default_parser
        parsed: ExitCode | None = None
        if parser_name:
            parser = get_parser_class(parser_name)(self)
            kwargs = {}
            if self._temporary_folder is not None:
                kwargs["retrieved_temporary_folder"] = self._temporary_folder
            parsed = parser.parse(**kwargs)
            if parsed is not None and not isinstance(parsed, ExitCode):
                raise TypeError(
                    f"parser {parser_name} returned {type(parsed).__name__}: return None or an ExitCode"
                )
        if scheduler_code is not None:
            return scheduler_code
        if parsed is not None and parsed.status != 0:
            return parsed
        status = self._job_exit_status
        if status and not self.options.get("ignore_nonzero_exit_status"):
            return self.exit_codes.ERROR_CODE_FAILED.format(status=status)
        return None

    def _scheduler_exit_code(self) -> ExitCode | None:
        info = self._job_info or {}
        reason = f"{info.get('raw_state') or 'gone'} ({info.get('reason') or 'no reason given'})"
        failure = info.get("failure")
        if failure is None and self._job_exit_status is None:
            failure = self._failure_from_scheduler_output()
        if failure == "walltime":
            return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.format(reason=reason)
        if failure == "out_of_memory":
            return self.exit_codes.ERROR_SCHEDULER_OUT_OF_MEMORY.format(reason=reason)
        if failure == "node_failure":
            return self.exit_codes.ERROR_SCHEDULER_NODE_FAILURE.format(reason=reason)
        if info.get("state") == "failed" and self._job_exit_status is None:
            return self.exit_codes.ERROR_SCHEDULER_JOB_FAILED.format(reason=reason)
        if self._job_exit_status is None:
            return self.exit_codes.ERROR_SCHEDULER_JOB_FAILED.format(
                reason=f"{reason}; the job ended without writing its exit-code file (killed?)"
            )
        return None

    def _failure_from_scheduler_output(self) -> str | None:
        """(thread) The scheduler's reading of the retrieved scheduler stdout/stderr of a killed job."""
        retrieved = self._outputs.get("retrieved")
        if not isinstance(retrieved, FolderData):
            return None
        texts = []
        for option, default in (
            ("scheduler_stdout", "_scheduler-stdout.txt"),
            ("scheduler_stderr", "_scheduler-stderr.txt"),
        ):
            name = self.options.get(option, default)
            texts.append(
                retrieved.get_content(name, "rb").decode(errors="replace") if name in retrieved else ""
            )
        failure: str | None = self.computer.get_scheduler().failure_from_output(*texts)
        return failure

    # -- kill --------------------------------------------------------------------------------------------
    async def _on_kill(self) -> None:
        """Cancel the scheduler job, if one was submitted and may still run."""
        if self._job_id is None or self._stage not in (_Stage.UPDATE,):
            return
        message = await self._kill_scheduler_job()
        # the process is recorded killed (its lease released): this clean-up line is written as such
        await self.runner.call_db(  # type: ignore[union-attr]
            None, lifecycle.report, self.pk, None, "REPORT", message, {"step": "kill"}
        )

    async def _kill_scheduler_job(self) -> str:
        """Ask the scheduler to cancel the job; return what happened, in words (never raises)."""
        scheduler = self.computer.get_scheduler()
        try:
            async with self._transport() as transport:
                await scheduler.kill(transport, self._job_id)
            return f"cancelled scheduler job {self._job_id}"
        except Exception as exc:
            return f"could not cancel scheduler job {self._job_id}: {exc}"


# -- helpers ---------------------------------------------------------------------------------------------


def _stage_local_copies(copies: list[tuple[Node, str, str]], sandbox: Path) -> None:
    """(thread) Write the files of input nodes into the sandbox at their target paths."""
    for node, source, target in copies:
        if not node.is_stored:
            raise ValueError(f"local_copy_list: {node!r} is not stored")
        paths = node.list_file_paths()
        if source:
            selected = [p for p in paths if p == source or p.startswith(source.rstrip("/") + "/")]
            if not selected:
                raise FileNotFoundError(f"local_copy_list: {node!r} has no file '{source}'")
        else:
            selected = paths
        for path in selected:
            if source and path == source:
                relative = target
            else:
                relative = (
                    posixpath.join(target, path[len(source) :].lstrip("/"))
                    if source
                    else posixpath.join(target, path)
                )
            destination = sandbox / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            node.copy_file_to(path, destination)


async def _ensure_parent(transport: Any, workdir: str, target: str) -> None:
    parent = posixpath.dirname(target)
    if parent:
        await transport.mkdir(posixpath.join(workdir, parent), parents=True, exist_ok=True)


def _retrieve_key(item: Any) -> RetrieveItem:
    """A retrieve list item checked and made hashable (a JSON list becomes a tuple).

    Raises:
        ValueError: neither a path nor ``(source, target, depth)``.
    """
    if isinstance(item, str):
        return item
    if isinstance(item, (list, tuple)) and len(item) == 3:
        source, target, depth = item
        if (
            isinstance(source, str)
            and isinstance(target, str)
            and (depth is None or (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0))
        ):
            return (source, target, depth)
    raise ValueError(
        f"retrieve list item {item!r}: give a path or glob, or (source, target, depth) with depth an "
        "int >= 0 or None"
    )


async def _retrieve_entry(
    transport: Any, workdir: str | None, item: RetrieveItem, target: Path, listing: dict[str, dict[str, Any]]
) -> None:
    """Retrieve one item of a retrieve list: a path or glob, or ``(source, target, depth)``."""
    if isinstance(item, str):
        await _retrieve_item(transport, workdir, item, target, listing)
        return
    assert workdir is not None
    source, into, depth = item
    for relative in await _matches(transport, workdir, source, listing):
        parts = relative.split("/")
        kept = parts if depth is None else (parts[-depth:] if depth > 0 else [])
        local = posixpath.normpath(posixpath.join(into, *kept)) if (into or kept) else ""
        if local in ("", ".") or local.startswith("../") or posixpath.isabs(local):
            raise ValueError(f"retrieve list item {item!r}: '{relative}' would be put outside the folder")
        await _fetch(transport, posixpath.join(workdir, relative), target, target / local, listing)


async def _matches(
    transport: Any, workdir: str, pattern: str, listing: dict[str, dict[str, Any]]
) -> list[str]:
    """The paths (relative to ``workdir``) that ``pattern`` names; wildcards may be in any part."""
    found = [""]
    for part in [p for p in pattern.split("/") if p and p != "."]:
        following: list[str] = []
        for base in found:
            entries = await _listing(transport, posixpath.join(workdir, base) if base else workdir, listing)
            if _GLOB & set(part):
                names = sorted(name for name in entries if fnmatch.fnmatchcase(name, part))
            else:
                names = [part] if part in entries else []
            following.extend(posixpath.join(base, name) if base else name for name in names)
        found = following
    return [path for path in found if path]


async def _listing(transport: Any, remote_dir: str, listing: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The entries of ``remote_dir`` (empty if it is missing), listed once per retrieval."""
    if remote_dir not in listing:
        from plait.transports import NotADirectoryTransportError, PathNotFoundError

        try:
            listing[remote_dir] = await transport.listdir_with_attributes(remote_dir)
        except (PathNotFoundError, NotADirectoryTransportError):
            listing[remote_dir] = {}
    return listing[remote_dir]


async def _fetch(
    transport: Any, remote: str, root: Path, local: Path, listing: dict[str, dict[str, Any]]
) -> None:
    """Copy the file or folder ``remote`` to ``local`` below ``root`` (its parents made as needed)."""
    parent, name = posixpath.split(remote)
    attributes = (await _listing(transport, parent, listing)).get(name)
    if attributes is None:
        return
    if attributes.is_symlink:
        attributes = await transport.stat(remote)
    if local.parent != root:  # a file at the top of the target needs no folder made (nor a thread)
        await asyncio.to_thread(_make_local_parent, root, local)
    if attributes.is_dir:
        await transport.gettree(remote, local)
    elif attributes.is_file:
        await transport.get(remote, local)


def _make_local_parent(root: Path, local: Path) -> None:
    """(thread) Make the parents of ``local`` below ``root``, never through a symlink fetched earlier.

    Raises:
        UnsafePathError: a parent is a symlink (an earlier item of the retrieve list brought it).
    """
    current = root
    for part in local.parent.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePathError(
                f"retrieving '{local.relative_to(root)}' would go through the retrieved symlink "
                f"'{current.relative_to(root)}'; retrieve the folder it is in, or the file, not both"
            )
    os.makedirs(local.parent, exist_ok=True)


async def _retrieve_item(
    transport: Any, workdir: str | None, name: str, target: Path, listing: dict[str, dict[str, Any]]
) -> None:
    """Copy ``name`` (a path or a glob, relative to the job folder) from the computer into ``target``.

    ``listing`` caches one ``listdir_with_attributes`` per remote folder, so
    retrieving many files costs one listing plus one transfer each.
    """
    assert workdir is not None
    directory, pattern = posixpath.split(name)
    remote_dir = posixpath.join(workdir, directory) if directory else workdir
    entries = await _listing(transport, remote_dir, listing)
    if _GLOB & set(pattern):
        names = [item for item in entries if fnmatch.fnmatchcase(item, pattern)]
    else:
        names = [pattern] if pattern in entries else []
    for item in names:
        local = target / directory / item if directory else target / item
        await _fetch(transport, posixpath.join(remote_dir, item), target, local, listing)


def _store_folder(path: Path) -> tuple[FolderData, list[tuple[str, str]]]:
    """(thread) Store the files fetched into ``path`` as a ``FolderData``; symlinks are left out.

    A link that the remote side put into a retrieved folder would resolve on
    *this* machine (``../../../home/me/.ssh/id_rsa``), so it is never followed:
    it is not stored, and returned as ``(path, link target)`` for the job's report.
    """
    tree = walk_local_tree(path)
    folder = FolderData()
    for relpath in tree.files:
        folder.put_object_from_file(relpath, path / relpath)
    folder.store()
    return folder, tree.symlinks
