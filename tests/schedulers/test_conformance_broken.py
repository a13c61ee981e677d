"""The conformance mixin catches real mistakes: each broken plugin below must fail its check.

Every broken plugin is a built-in one with ONE deliberate mistake; the same check passes on the
unbroken plugin (test_conformance.py), so a failure here is the mistake being caught.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from plait.schedulers import JobInfo, JobTemplate, SchedulerError
from plait.schedulers.pbs import PbsScheduler
from plait.schedulers.slurm import SlurmScheduler
from plait.transports import Transport

from .test_conformance import PbsConformance, SlurmConformance


class OneStatusCommandPerJob(SlurmScheduler):
    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        answers: dict[str, JobInfo] = {}
        for job_id in dict.fromkeys(job_ids):
            answers.update(await super().query(transport, [job_id]))
        return answers


class VanishedJobsLeftOut(SlurmScheduler):
    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        answers = await super().query(transport, job_ids)
        return {job_id: info for job_id, info in answers.items() if info.raw_state}


class VanishedJobsFailed(SlurmScheduler):
    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        answers = await super().query(transport, job_ids)
        return {
            job_id: JobInfo(job_id, "failed", "", failure="failed") if not info.raw_state else info
            for job_id, info in answers.items()
        }


class ReadsOnlyTheFirstLine(SlurmScheduler):
    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        answers = await super().query(transport, job_ids)
        first = next(iter(answers))
        return {
            job_id: info if job_id == first else JobInfo.vanished(job_id) for job_id, info in answers.items()
        }


class KillOfAGoneJobRaises(PbsScheduler):
    async def kill(self, transport: Transport, job_id: str) -> None:
        result = await self._run(transport, f"qdel {shlex.quote(job_id)}")
        if result.returncode != 0:
            raise self._command_error("qdel failed", "qdel", result)


class UnquotedScriptName(SlurmScheduler):
    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        return await self._submit_printing_id(
            transport, workdir, f"sbatch --parsable {script_name}", lambda line: line.split(";")[0]
        )


class ExitCodeFileWrittenFirst(SlurmScheduler):
    def _preamble(self, template: JobTemplate) -> list[str]:
        return [f"echo 0 > {shlex.quote(template.exit_code_file)}"]


class WrapsTransportErrors(PbsScheduler):
    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        try:
            return await super().query(transport, job_ids)
        except Exception as exc:
            raise SchedulerError(f"qstat failed: {exc}", command="qstat", returncode=-1) from exc


class IdsNotChecked(SlurmScheduler):
    async def kill(self, transport: Transport, job_id: str) -> None:
        await self._run(transport, f"scancel {job_id}")


class HeaderIgnoresWallTime(PbsScheduler):
    def _header(self, template: JobTemplate) -> list[str]:
        return [line for line in super()._header(template) if "walltime" not in line]


class NoProbe(SlurmScheduler):
    probe_job_id = None


def _kit(base: type, scheduler_class: type) -> Any:
    return type(f"Broken{scheduler_class.__name__}", (base,), {"scheduler_class": scheduler_class})()


CASES: list[tuple[type, type, str]] = [
    (SlurmConformance, OneStatusCommandPerJob, "test_conformance_query_is_one_command_for_many_jobs"),
    (SlurmConformance, VanishedJobsLeftOut, "test_conformance_query_is_one_command_for_many_jobs"),
    (SlurmConformance, VanishedJobsFailed, "test_conformance_query_all_vanished"),
    (SlurmConformance, ReadsOnlyTheFirstLine, "test_conformance_query_reads_every_listed_job"),
    (PbsConformance, KillOfAGoneJobRaises, "test_conformance_kill_of_a_gone_job_is_fine"),
    (SlurmConformance, UnquotedScriptName, "test_conformance_submit_parses_the_job_id"),
    (SlurmConformance, ExitCodeFileWrittenFirst, "test_conformance_no_exit_code_file_when_killed"),
    (PbsConformance, WrapsTransportErrors, "test_conformance_transport_errors_pass_through"),
    (SlurmConformance, IdsNotChecked, "test_conformance_kill_refuses_a_bad_id"),
    (PbsConformance, HeaderIgnoresWallTime, "test_conformance_header_follows_resources_and_wall_time"),
    (SlurmConformance, NoProbe, "test_conformance_probe"),
]


@pytest.mark.parametrize(("base", "broken", "check"), CASES, ids=[case[1].__name__ for case in CASES])
def test_the_mixin_fails_a_broken_plugin(base: type, broken: type, check: str, tmp_path: Path) -> None:
    method: Callable[..., None] = getattr(_kit(base, broken), check)
    takes_folder = "tmp_path" in method.__code__.co_varnames
    for name in ("broken", "unbroken"):
        (tmp_path / name).mkdir()
    with pytest.raises(AssertionError):
        method(**({"tmp_path": tmp_path / "broken"} if takes_folder else {}))
    unbroken = getattr(_kit(base, base.scheduler_class), check)
    unbroken(**({"tmp_path": tmp_path / "unbroken"} if takes_folder else {}))  # the plain plugin passes
