"""The conformance mixin every scheduler plugin's tests should subclass.

Usage, in a plugin package's tests (a fragment: ``MyScheduler`` is yours)::

    from plait.schedulers.testing import SchedulerConformance
    from plait.transports.contract import CommandResult

    class TestMyScheduler(SchedulerConformance):
        scheduler_class = MyScheduler
        job_ids = ("101", "102", "103")
        submit_output = CommandResult(0, "Submitted 101\\n", "")
        submitted_job_id = "101"
        kill_gone_output = CommandResult(1, "", "job 102: no such job\\n")

        def query_output(self, listed, missing):
            ...  # what the status tool prints when the ids in `listed` run and those in `missing` are gone

The tests need no scheduler: the plugin talks to a :class:`FakeTransport`
that plays the answers above, and the job script is run by a real ``bash``
in a temporary folder.  They check what the engine relies on (see
:mod:`plait.schedulers.contract`):

* the constructor: built as the engine builds it (``cls(**options)``), an
  unknown option refused by name;
* the script: ``#!/bin/bash`` first, then the header, with the queue and
  account, the resources and the wall time in it (the header changes when
  they change; :attr:`SchedulerConformance.expected_header_lines` must all be
  there), custom commands right after it, quoted environment and code lines,
  valid shell (``bash -n``); and, run for real, the exit-code file holding the
  first non-zero status of the codes, written before ``append_text``, even
  with awkward file names, and NOT written when the job is killed while its
  codes run;
* submit: the id parsed from the submit output, the command run in the job's
  folder, a script named like an option never taken for one, no id printed
  is a :class:`SchedulerOutputError` (never retried), a refusal a
  :class:`SchedulerError`;
* query: ONE command for many jobs, every asked id answered once and in
  order, every listed job read (not just the first), vanished jobs exactly
  ``JobInfo.vanished(id)``, an empty list runs nothing, an id the scheduler
  could never give is a ``ValueError`` before anything runs, a transport
  error passes through unwrapped;
* kill: one command naming the job, a job already gone is not an error, a
  bad id is a ``ValueError`` before anything runs;
* the probe of ``plait computer test``: the plugin can be probed and the
  probe answers from the scheduler's status output.

The test methods are synchronous (each runs its coroutine with
:func:`asyncio.run`), so the mixin needs no pytest plugin for asyncio, and
they fail with plain ``AssertionError``.  A test that needs a temporary
folder takes pytest's ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from plait.schedulers.contract import CodeRun, JobInfo, JobResources, JobState, JobTemplate, Scheduler
from plait.schedulers.errors import SchedulerError, SchedulerOutputError
from plait.schedulers.testing.transports import FakeTransport
from plait.transports.contract import CommandResult
from plait.transports.errors import TransportTimeoutError

__all__ = ["AWKWARD_NAME", "SchedulerConformance"]

#: A folder or file name that breaks any command line or script that forgets to quote it.
AWKWARD_NAME = "work dir 'single' \"double\" $HOME *"

_T = TypeVar("_T")


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coroutine)


def _answering(result: CommandResult) -> FakeTransport:
    return FakeTransport().on("", result.returncode, result.stdout, result.stderr)


class SchedulerConformance:
    """Mix into a ``Test...`` class; set the class attributes and define :meth:`query_output`.

    Attributes to set:
        scheduler_class: the plugin class under test.
        scheduler_options: keyword options for its constructor (default none).
        job_ids: at least three distinct ids the scheduler could hand out.
        invalid_job_id: an id the plugin must refuse (default ``"1; touch pwned"``).
        submit_output: what the submit command prints for an accepted job.
        submitted_job_id: the id the plugin must read from ``submit_output``.
        refused_submit_output: what the submit command prints when it refuses a job.
        kill_gone_output: what the kill command prints for a job that already left.
        script_environment: variables the scheduler sets when it starts a job
            (PBS's ``PBS_O_WORKDIR``); ``{workdir}`` in a value is the job's folder.
        expected_header_lines: lines the header of :meth:`full_template`'s
            script must hold (one machine, two MPI processes, one hour, queue
            ``conformq``, account ``conformacct``), in the plugin's notation.
        unsupported_template: template fields the scheduler cannot express
            (e.g. ``{"qos": "high"}`` for PBS); each must be refused by
            ``get_submit_script`` with a ``ValueError`` naming the field.
    """

    scheduler_class: ClassVar[type[Scheduler]]
    scheduler_options: ClassVar[Mapping[str, Any]] = {}
    job_ids: ClassVar[Sequence[str]] = ()
    invalid_job_id: ClassVar[str] = "1; touch pwned"
    submit_output: ClassVar[CommandResult]
    submitted_job_id: ClassVar[str]
    refused_submit_output: ClassVar[CommandResult] = CommandResult(1, "", "job refused: invalid queue\n")
    kill_gone_output: ClassVar[CommandResult] = CommandResult(0, "", "")
    script_environment: ClassVar[Mapping[str, str]] = {}
    expected_header_lines: ClassVar[Sequence[str]] = ()
    unsupported_template: ClassVar[Mapping[str, Any]] = {}

    # -- the hooks ------------------------------------------------------------------------------------
    def query_output(self, listed: Sequence[str], missing: Sequence[str]) -> CommandResult:
        """What the status command prints when asked for ``listed`` (running jobs) and ``missing`` (gone)."""
        raise NotImplementedError(f"{type(self).__name__} must define query_output(listed, missing)")

    def make_scheduler(self) -> Scheduler:
        """The plugin under test, built as the engine builds it: ``cls(**options)``."""
        return self.scheduler_class(**dict(self.scheduler_options))

    def full_template(self, **changes: Any) -> JobTemplate:
        """A template that sets what most schedulers express, with ``changes`` applied."""
        values: dict[str, Any] = {
            "job_name": "conformance",
            "resources": JobResources(num_machines=1, num_mpiprocs_per_machine=2),
            "max_wallclock_seconds": 3600,
            "queue_name": "conformq",
            "account": "conformacct",
            "custom_scheduler_commands": "# custom-line",
            "environment": {"PLAIT_VALUE": "$HOME 'quoted' *"},
            "prepend_text": "echo prepend-text",
            "append_text": "echo append-text",
        }
        values.update(changes)
        return JobTemplate(**values)

    # -- the constructor ----------------------------------------------------------------------------------
    def test_conformance_constructor(self) -> None:
        scheduler = self.make_scheduler()
        assert isinstance(scheduler, Scheduler)
        assert scheduler.plugin_name, "set plugin_name to the entry point name"
        assert "command_timeout" in scheduler.options
        try:
            self.scheduler_class(**{**self.scheduler_options, "no_such_option": 1})
        except ValueError as exc:
            assert "no_such_option" in str(exc)
        else:
            raise AssertionError("an unknown scheduler option was accepted")
        assert len(set(self.job_ids)) >= 3, "give at least three distinct job_ids"

    # -- the script ---------------------------------------------------------------------------------------
    def test_conformance_script_shape(self) -> None:
        scheduler = self.make_scheduler()
        template = self.full_template()
        script = scheduler.get_submit_script(template)
        lines = script.splitlines()
        assert lines[0] == "#!/bin/bash"
        header = scheduler._header(template)
        assert lines[1 : 1 + len(header)] == header, "the header follows the shebang"
        custom = lines.index("# custom-line")
        assert custom == 1 + len(header), "custom_scheduler_commands come right after the header"
        for expected in self.expected_header_lines:
            assert expected in header, f"{expected!r} is missing from the header {header}"
        assert f"export PLAIT_VALUE={shlex.quote(template.environment['PLAIT_VALUE'])}" in lines
        assert script.index("echo prepend-text") < script.index("echo append-text")
        self._bash_syntax(script)

    def test_conformance_header_follows_resources_and_wall_time(self) -> None:
        scheduler = self.make_scheduler()
        base = scheduler._header(self.full_template())
        more_procs = scheduler._header(
            self.full_template(resources=JobResources(num_machines=1, num_mpiprocs_per_machine=3))
        )
        longer = scheduler._header(self.full_template(max_wallclock_seconds=7200))
        assert more_procs != base, "the header does not change with the number of MPI processes"
        assert longer != base, "the header does not change with the wall time"

    def test_conformance_refuses_what_it_cannot_express(self) -> None:
        for name, value in self.unsupported_template.items():
            try:
                self.make_scheduler().get_submit_script(JobTemplate(**{name: value}))
            except ValueError as exc:
                assert name in str(exc), f"the refusal of {name}={value!r} does not name it: {exc}"
            else:
                raise AssertionError(f"{name}={value!r} was accepted though declared unsupported")

    def _run_script(self, workdir: Path, template: JobTemplate) -> subprocess.CompletedProcess[str]:
        script = self.make_scheduler().get_submit_script(template)
        (workdir / "job.sh").write_text(script)
        env = {**os.environ, **{k: v.format(workdir=workdir) for k, v in self.script_environment.items()}}
        return subprocess.run(
            ["bash", "job.sh"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
        )

    def test_conformance_exit_code_file(self, tmp_path: Path) -> None:
        workdir = tmp_path / AWKWARD_NAME
        workdir.mkdir()
        template = self.full_template(
            resources=JobResources(num_machines=1),
            code_runs=(
                CodeRun(
                    ["bash", "-c", "test ! -e .plait-exit-code && echo first; exit 3"],
                    stdout_name="out 1.txt",
                ),
                CodeRun(["bash", "-c", "exit 5"]),
                CodeRun(["printf", "%s", "$HOME *"], stdout_name="literal'.txt"),
            ),
            append_text="cp .plait-exit-code seen-by-append || echo none > seen-by-append",
        )
        result = self._run_script(workdir, template)
        assert result.returncode == 3, f"the script exits with the first failure: {result.stderr}"
        assert (workdir / "out 1.txt").read_text() == "first\n", "no exit-code file before the codes ran"
        assert (workdir / ".plait-exit-code").read_text().strip() == "3"
        assert (workdir / "seen-by-append").read_text().strip() == "3", "exit-code file before append_text"
        assert (workdir / "literal'.txt").read_text() == "$HOME *", "arguments reach the code literally"

    def test_conformance_no_exit_code_file_when_killed(self, tmp_path: Path) -> None:
        # the code kills the shell that runs the script, as a scheduler's cancel would
        template = self.full_template(
            resources=JobResources(num_machines=1),
            code_runs=(CodeRun(["bash", "-c", "kill -KILL $PPID"]),),
        )
        self._run_script(tmp_path, template)
        assert not (tmp_path / ".plait-exit-code").exists(), (
            "a job killed while its codes ran left an exit-code file: the engine would take it as finished"
        )

    @staticmethod
    def _bash_syntax(script: str) -> None:
        bash = shutil.which("bash")
        if bash is None:  # pragma: no cover - every test machine has bash
            return
        result = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"the job script is not valid bash: {result.stderr}"

    # -- submit -------------------------------------------------------------------------------------------
    def test_conformance_submit_parses_the_job_id(self) -> None:
        fake = _answering(self.submit_output)
        job_id = _run(self.make_scheduler().submit(fake, "/scratch/job folder", "-x job.sh"))
        assert job_id == self.submitted_job_id
        assert len(fake.calls) == 1, f"one submit command, not {fake.commands}"
        assert fake.calls[0].workdir == "/scratch/job folder", "submit runs in the job's folder"
        words = shlex.split(fake.calls[0].command, posix=True)
        assert "-x job.sh" not in words, "a script named like an option must reach the tool as ./-x ..."
        assert any(word.endswith("-x job.sh") for word in words), "the script is named on the command line"

    def test_conformance_submit_without_id_is_an_output_error(self) -> None:
        fake = FakeTransport().on("", 0, "nothing useful here\n", "")
        try:
            _run(self.make_scheduler().submit(fake, "/scratch/job", "job.sh"))
        except SchedulerOutputError as exc:
            assert exc.retryable is False, "the job may have been submitted: never retry"
        else:
            raise AssertionError("a submit that printed no job id was taken as a success")

    def test_conformance_submit_refused(self) -> None:
        fake = _answering(self.refused_submit_output)
        try:
            _run(self.make_scheduler().submit(fake, "/scratch/job", "job.sh"))
        except SchedulerError as exc:
            assert exc.returncode == self.refused_submit_output.returncode
        else:
            raise AssertionError("a refused submit was taken as a success")

    # -- query ----------------------------------------------------------------------------------------------
    def test_conformance_query_is_one_command_for_many_jobs(self) -> None:
        ids = list(self.job_ids)
        listed, gone = ids[:1], ids[1:]
        fake = _answering(self.query_output(listed, gone))
        answers = _run(self.make_scheduler().query(fake, [*ids, ids[0]]))
        assert len(fake.calls) == 1, f"one status command for {len(ids)} jobs, not {fake.commands}"
        assert list(answers) == ids, "every asked id is answered once, in order"
        for job_id, info in answers.items():
            assert isinstance(info, JobInfo) and info.job_id == job_id
        assert answers[listed[0]].state in (JobState.QUEUED, JobState.RUNNING)
        for job_id in gone:
            assert answers[job_id] == JobInfo.vanished(job_id), f"{job_id} vanished: DONE, not listed"

    def test_conformance_query_reads_every_listed_job(self) -> None:
        ids = list(self.job_ids)
        fake = _answering(self.query_output(ids, []))
        answers = _run(self.make_scheduler().query(fake, ids))
        assert len(fake.calls) == 1, f"one status command for {len(ids)} jobs, not {fake.commands}"
        for job_id in ids:
            assert answers[job_id].state in (JobState.QUEUED, JobState.RUNNING), (
                f"{job_id} is listed as running but was answered {answers[job_id]}"
            )

    def test_conformance_query_of_nothing_runs_nothing(self) -> None:
        fake = FakeTransport()
        assert _run(self.make_scheduler().query(fake, [])) == {}
        assert fake.calls == []

    def test_conformance_query_all_vanished(self) -> None:
        ids = list(self.job_ids)
        fake = _answering(self.query_output([], ids))
        answers = _run(self.make_scheduler().query(fake, ids))
        assert answers == {job_id: JobInfo.vanished(job_id) for job_id in ids}

    def test_conformance_query_refuses_a_bad_id(self) -> None:
        fake = FakeTransport()
        try:
            _run(self.make_scheduler().query(fake, [self.job_ids[0], self.invalid_job_id]))
        except ValueError:
            pass
        else:
            raise AssertionError(f"the job id {self.invalid_job_id!r} was accepted")
        assert fake.calls == [], "nothing runs with a bad id"

    def test_conformance_transport_errors_pass_through(self) -> None:
        error = TransportTimeoutError("no answer", host="fake", operation="exec_command_wait")
        fake = FakeTransport().raising("", error)
        try:
            _run(self.make_scheduler().query(fake, list(self.job_ids)))
        except TransportTimeoutError as exc:
            assert exc is error, "the transport's error must reach the engine unwrapped (it decides retries)"
        except Exception as exc:
            raise AssertionError(
                f"a transport time-out during query became {exc!r}: it must reach the engine unwrapped"
                " (the engine decides the retries from the transport's error)"
            ) from exc
        else:
            raise AssertionError("a transport time-out during query was swallowed")

    # -- kill ------------------------------------------------------------------------------------------------
    def test_conformance_kill(self) -> None:
        fake = FakeTransport().on("", 0, "", "")
        job_id = self.job_ids[0]
        _run(self.make_scheduler().kill(fake, job_id))
        assert len(fake.calls) == 1, f"one kill command, not {fake.commands}"
        assert job_id in fake.calls[0].command

    def test_conformance_kill_of_a_gone_job_is_fine(self) -> None:
        fake = _answering(self.kill_gone_output)
        try:
            _run(self.make_scheduler().kill(fake, self.job_ids[1]))
        except SchedulerError as exc:
            raise AssertionError(f"kill of a job that already left raised {exc!r}") from exc

    def test_conformance_kill_refuses_a_bad_id(self) -> None:
        fake = FakeTransport()
        try:
            _run(self.make_scheduler().kill(fake, self.invalid_job_id))
        except ValueError:
            pass
        else:
            raise AssertionError(f"kill accepted the job id {self.invalid_job_id!r}")
        assert fake.calls == []

    # -- probe -----------------------------------------------------------------------------------------------
    def test_conformance_probe(self) -> None:
        scheduler = self.make_scheduler()
        assert scheduler.can_probe, "set probe_job_id (or override probe) so `plait computer test` can ask"
        missing = [scheduler.probe_job_id] if scheduler.probe_job_id is not None else []
        fake = _answering(self.query_output([], missing))
        message = _run(scheduler.probe(fake))
        assert isinstance(message, str) and message.strip()
        assert len(fake.calls) >= 1, "the probe asked the scheduler nothing"
