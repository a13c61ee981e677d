"""plait.engine.computer_check: the diagnosis behind `plait computer test` returns results, prints nothing.

The computer here is a stand-in with what the diagnosis reads (label, host, work folder, a local
transport, a scheduler); the CLI's own tests (tests/cli/test_computer.py) run it on stored computers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.engine.computer_check import CheckResult, check_computer
from plait.schedulers import JobInfo, JobTemplate, Scheduler
from plait.transports import Transport
from plait.transports.local import LocalTransport


class _NoProbe(Scheduler):
    """A third-party plugin that set no probe_job_id and has no probe of its own."""

    plugin_name = "noprobe"

    def _header(self, template: JobTemplate) -> list[str]:
        return []

    async def submit(self, transport: Transport, workdir: str, script_name: str) -> str:
        raise AssertionError("the diagnosis must never submit")

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        raise AssertionError("a plugin without a probe is not queried")

    async def kill(self, transport: Transport, job_id: str) -> None:
        raise AssertionError("the diagnosis must never kill")


class _OwnProbe(_NoProbe):
    """A third-party plugin whose probe asks its tool's version, on the computer's transport."""

    plugin_name = "ownprobe"

    async def probe(self, transport: Transport) -> str:
        result = await self._run(transport, "echo mysched 4.2")
        return f"answered: {result.stdout.strip()}"


class _ProbeJobId(_NoProbe):
    """A third-party plugin that uses the default probe: a status query of a job that cannot exist."""

    plugin_name = "probejobid"
    probe_job_id = "0"
    asked: list[list[str]] = []

    async def query(self, transport: Transport, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        await self._run(transport, "true")
        self.asked.append(list(job_ids))
        return {job_id: JobInfo.vanished(job_id) for job_id in job_ids}


@dataclass
class _Computer:
    work_dir: str
    scheduler: Any
    label: str = "here"
    hostname: str = "localhost"
    transport_type: str = "local"
    scheduler_type: str = "third-party"
    built: list[Any] = field(default_factory=list)

    def get_transport(self) -> LocalTransport:
        return LocalTransport(hostname="localhost")

    def get_scheduler(self) -> Scheduler:
        if isinstance(self.scheduler, Exception):
            raise self.scheduler
        return self.scheduler


def _statuses(results: Sequence[CheckResult]) -> dict[str, str]:
    return {result.key: result.status for result in results}


async def test_a_third_party_scheduler_with_its_own_probe_is_probed(tmp_path: Path) -> None:
    seen: list[CheckResult] = []
    outcome = await check_computer(
        _Computer(str(tmp_path / "work"), _OwnProbe()), step_timeout=30, on_result=seen.append
    )
    assert outcome.passed and outcome.failed is None
    assert seen == outcome.results, "on_result sees every result as it ends, in order"
    assert [r.key for r in outcome.results] == [
        "open", "whoami", "folder", "file", "command", "scheduler", "cleanup", "close",
    ]  # fmt: skip
    assert set(_statuses(outcome.results).values()) == {"ok"}
    scheduler = next(r for r in outcome.results if r.key == "scheduler")
    assert scheduler.detail == "answered: mysched 4.2"
    assert list((tmp_path / "work").iterdir()) == [], "the test folder was removed"


async def test_the_default_probe_queries_the_probe_job_id(tmp_path: Path) -> None:
    _ProbeJobId.asked.clear()
    outcome = await check_computer(_Computer(str(tmp_path), _ProbeJobId()), step_timeout=30)
    assert outcome.passed
    assert _ProbeJobId.asked == [["0"]]
    detail = next(r.detail for r in outcome.results if r.key == "scheduler")
    assert detail == "the probejobid scheduler answered a status query (nothing was submitted)"


async def test_a_scheduler_without_a_probe_says_it_cannot_be_probed(tmp_path: Path) -> None:
    outcome = await check_computer(_Computer(str(tmp_path), _NoProbe()), step_timeout=30)
    assert outcome.passed
    scheduler = next(r for r in outcome.results if r.key == "scheduler")
    assert (scheduler.status, scheduler.detail) == ("skipped", "the third-party plugin cannot be probed")
    assert _statuses(outcome.results)["cleanup"] == "ok"


async def test_bad_scheduler_options_fail_the_scheduler_check_and_still_clean_up(tmp_path: Path) -> None:
    error = ValueError("unknown option(s) 'partition' for the 'noprobe' scheduler")
    outcome = await check_computer(_Computer(str(tmp_path), error), step_timeout=30)
    failed = outcome.failed
    assert failed is not None and failed.key == "scheduler"
    assert "partition" in failed.reason and "plait computer show here" in failed.hint
    assert _statuses(outcome.results)["cleanup"] == "ok" and _statuses(outcome.results)["close"] == "ok"
