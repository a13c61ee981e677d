"""Fixtures of the scheduler tests: a fake transport, a counting wrapper, the local and SLURM helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plait.transports.contract import CommandResult

DATA = Path(__file__).parent / "data"

#: A folder name that breaks any command line that forgets to quote a path.
AWKWARD_NAME = "work dir 'single' \"double\" $HOME *"


@dataclass
class Call:
    command: str
    stdin: str | bytes | None
    workdir: str | None
    timeout: float | None


@dataclass
class FakeTransport:
    """Implements only ``exec_command_wait``: records each call and answers from a script.

    ``answers`` maps a predicate (or a command prefix) to the CommandResult to return;
    the first that matches wins; a command nobody expected fails the test.
    """

    hostname: str = "fake"
    answers: list[tuple[Callable[[str], bool], CommandResult | Exception]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def on(self, prefix: str, returncode: int = 0, stdout: str = "", stderr: str = "") -> FakeTransport:
        self.answers.append(
            (lambda command: command.startswith(prefix), CommandResult(returncode, stdout, stderr))
        )
        return self

    def raising(self, prefix: str, error: Exception) -> FakeTransport:
        self.answers.append((lambda command: command.startswith(prefix), error))
        return self

    async def exec_command_wait(
        self,
        command: str,
        stdin: str | bytes | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        self.calls.append(Call(command, stdin, workdir, timeout))
        for matches, answer in self.answers:
            if matches(command):
                if isinstance(answer, Exception):
                    raise answer
                return answer
        raise AssertionError(f"unexpected command: {command!r}")

    @property
    def commands(self) -> list[str]:
        return [call.command for call in self.calls]


class CountingTransport:
    """Wraps a real transport and counts its ``exec_command_wait`` calls (to prove batched polling)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.hostname = inner.hostname
        self.commands: list[str] = []

    async def exec_command_wait(self, command, stdin=None, workdir=None, timeout=None) -> CommandResult:
        self.commands.append(command)
        return await self.inner.exec_command_wait(command, stdin=stdin, workdir=workdir, timeout=timeout)


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


def read_fixture(name: str) -> str:
    return (DATA / name).read_text()


def _local_transport_class():
    from plait.transports.local import LocalTransport

    return LocalTransport


@pytest.fixture
async def local_transport():
    """An open LocalTransport wrapped to count its commands."""
    transport = _local_transport_class()(hostname="localhost")
    await transport.open()
    try:
        yield CountingTransport(transport)
    finally:
        await transport.close()


@pytest.fixture
def awkward_dir(tmp_path: Path) -> Path:
    path = tmp_path / AWKWARD_NAME
    path.mkdir()
    return path


def _slurm_problem() -> str | None:
    """Why the local SLURM cluster cannot be used, or None when it answers."""
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run .ci/start-slurm.sh)"
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--responding", "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s (run .ci/start-slurm.sh)"
    states = {s.strip().rstrip("*~#") for s in result.stdout.split()}
    if result.returncode != 0:
        return f"slurmctld does not answer: {result.stderr.strip()} (run .ci/start-slurm.sh)"
    if not states & {"idle", "mixed", "allocated", "completing"}:
        return f"no SLURM node is up (sinfo says {sorted(states) or 'nothing'}; run .ci/start-slurm.sh)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Fails when the SLURM cluster is missing under CI (PLAIT_CI set), skips otherwise."""
    problem = _slurm_problem()
    if problem is None:
        return
    if os.environ.get("PLAIT_CI"):
        pytest.fail(f"PLAIT_CI is set but SLURM is not usable: {problem}", pytrace=False)
    pytest.skip(f"SLURM is not usable here: {problem}")
