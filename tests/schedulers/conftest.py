"""Fixtures of the scheduler tests: the kit's fake and counting transports, the local and SLURM helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from plait.schedulers.testing import AWKWARD_NAME, Call, CountingTransport, FakeTransport

__all__ = ["AWKWARD_NAME", "DATA", "Call", "CountingTransport", "FakeTransport", "read_fixture"]

DATA = Path(__file__).parent / "data"


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
