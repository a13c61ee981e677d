"""Calculation jobs on real remote machinery: SLURM on loopback, and an SSH server that dies mid-task."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from plait import arun_get_node
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.engine.runner import Runner
from plait.orm import Computer, InstalledCode, Int, Str, load_node
from plait.storage import get_backend
from plait.transports.testing import LoopbackSshd, require_sshd

from .test_calcjob import SleepJob


def require_slurm() -> None:
    problem = None
    if shutil.which("sinfo") is None:
        problem = "SLURM is not installed"
    else:
        result = subprocess.run(
            ["sinfo", "--noheader", "--responding", "-o", "%T"], capture_output=True, text=True
        )
        states = {s.strip().rstrip("*~#") for s in result.stdout.split()}
        if result.returncode != 0 or not states & {"idle", "mixed", "allocated", "completing"}:
            problem = f"no responding SLURM node ({result.stderr.strip() or sorted(states)})"
    if problem:
        if os.environ.get("PLAIT_CI"):
            pytest.fail(f"{problem}: .ci/run must start it (.ci/start-slurm.sh)", pytrace=False)
        pytest.skip(problem)


@pytest.fixture
def slurm_computer(tmp_path: Path) -> Computer:
    require_slurm()
    workdir = tmp_path / "slurm work 'dir'"
    return Computer(
        "slurm-loopback",
        transport_type="local",
        scheduler_type="slurm",
        work_dir=str(workdir),
        minimum_poll_interval=0.2,
        retry_initial_interval=0.1,
    ).store()


@pytest.mark.slurm
async def test_arithmetic_add_through_slurm(slurm_computer):
    code = InstalledCode(computer=slurm_computer, filepath_executable="/bin/bash", label="bash").store()
    outputs, node = await arun_get_node(ArithmeticAddCalculation, code=code, x=Int(20), y=Int(22))
    assert node.is_finished_ok, node.exit_message
    assert outputs["sum"].value == 42
    script = node.get_object_content("raw_input/_plait_submit.sh")
    assert "#SBATCH" in script
    assert "slurm work 'dir'" in node.remote_workdir


@pytest.mark.slurm
async def test_job_cancelled_in_slurm_from_outside_ends_with_scheduler_failure(slurm_computer):
    task = asyncio.ensure_future(
        arun_get_node(SleepJob, seconds=Str("120"), metadata={"computer": slurm_computer.label})
    )
    job_id = None
    for _ in range(600):
        await asyncio.sleep(0.05)
        rows = get_backend().list_processes(states=["waiting"])
        if rows:
            job_id = load_node(rows[0]["id"]).job_id
            if job_id:
                break
    assert job_id, "the job was never submitted"
    subprocess.run(["scancel", job_id], check=True)
    _, node = await asyncio.wait_for(task, 60)
    assert node.exit_status == 110, node.exit_message
    assert "CANCELLED" in node.exit_message


@pytest.mark.slurm
async def test_kill_cancels_the_slurm_job(slurm_computer):
    task = asyncio.ensure_future(
        arun_get_node(SleepJob, seconds=Str("120"), metadata={"computer": slurm_computer.label})
    )
    node = None
    for _ in range(600):
        await asyncio.sleep(0.05)
        rows = get_backend().list_processes(states=["waiting"])
        if rows and load_node(rows[0]["id"]).job_id:
            node = load_node(rows[0]["id"])
            break
    assert node is not None
    assert Runner.for_loop().kill(node.pk, "not needed")
    with pytest.raises(Exception, match="killed"):
        await task
    state = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--jobs", node.job_id, "-o", "%T"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert state in ("CANCELLED", "COMPLETING", ""), state


# -- an SSH server that dies ------------------------------------------------------------------------------


@pytest.fixture
def dying_sshd(tmp_path: Path):
    require_sshd()
    server = LoopbackSshd(tmp_path / "sshd")
    server.start()
    yield server
    server.thaw()
    server.stop()


@pytest.fixture
def ssh_computer(dying_sshd, tmp_path: Path) -> Computer:
    computer = Computer(
        "ssh-loopback",
        hostname=dying_sshd.host,
        transport_type="ssh",
        scheduler_type="direct",
        work_dir=str(tmp_path / "ssh-work"),
        minimum_poll_interval=0.05,
        retry_initial_interval=0.05,
        retry_max_attempts=3,
        safe_interval=0.0,
    ).store()
    computer.configure(**dying_sshd.transport_options())
    return computer


async def _run_with_fault(
    monkeypatch, server: LoopbackSshd, computer: Computer, method: str, inputs: dict, big_name: str
):
    """Kill sshd 0.15 s into the first call of the SSH plugin's ``method`` (a transfer in flight);
    restart it once the process has paused after its retries, then play it."""
    from plait.calculations.shell import ShellJob
    from plait.transports.ssh import SshTransport

    original = getattr(SshTransport, method)
    calls = {"n": 0}

    async def dying(self, *args, **kwargs):
        if not any(big_name in str(arg) for arg in args):
            return await original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 1:
            return await original(self, *args, **kwargs)
        # the folder receiving the bytes is local either way (loopback): watch it fill up
        receiving = Path(args[1]).parent if method == "get" else Path(args[1])
        transfer = asyncio.ensure_future(original(self, *args, **kwargs))
        while not transfer.done() and _largest_file(receiving) < 4 * 1024 * 1024:
            await asyncio.sleep(0.002)
        assert not transfer.done(), "the transfer ended before the server was killed: make it bigger"
        server.kill()  # a transfer in flight, several MiB in
        return await transfer

    monkeypatch.setattr(SshTransport, method, dying)
    task = asyncio.ensure_future(arun_get_node(ShellJob, metadata={"computer": computer.label}, **inputs))
    paused_pk = None
    for _ in range(600):
        await asyncio.sleep(0.05)
        rows = get_backend().list_processes(paused=True)
        if rows:
            paused_pk = rows[0]["id"]
            break
    assert paused_pk is not None, "the process did not pause after its retries"
    node = load_node(paused_pk)
    assert node.paused and not node.is_terminated
    assert "failed 3 times" in node.process_status
    server.start()
    assert Runner.for_loop().play(paused_pk)
    outputs, node = await asyncio.wait_for(task, 120)
    return outputs, node, calls


def _largest_file(folder: Path) -> int:
    try:
        return max((p.stat().st_size for p in folder.rglob("*") if p.is_file()), default=0)
    except OSError:
        return 0


def _no_leftovers(folder: str) -> list[str]:
    return [
        name
        for name in os.listdir(folder)
        if "plait-tmp" in name or (name.startswith(".") and name != ".plait-exit-code")
    ]


BIG = 96 * 1024 * 1024


@pytest.mark.sshd
async def test_ssh_dies_during_upload_pauses_then_play_finishes(
    monkeypatch, dying_sshd, ssh_computer, tmp_path
):
    from plait.orm import List, SinglefileData

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1024) * (BIG // 1024))
    inputs = {
        "command": Str("bash"),
        "arguments": List(["-c", "wc -c < big.bin; md5sum < big.bin"]),
        "nodes": {"big": SinglefileData(big)},
    }
    outputs, node, calls = await _run_with_fault(monkeypatch, dying_sshd, ssh_computer, "puttree", inputs, "")
    assert node.is_finished_ok, node.exit_message
    import hashlib

    size, digest = outputs["stdout"].get_content().split()[:2]
    assert int(size) == BIG and digest == hashlib.md5(big.read_bytes()).hexdigest()
    reports = [r["message"] for r in node.get_report()]
    assert any(m.startswith("upload failed (attempt 1 of 3)") for m in reports)
    assert "played" in reports and calls["n"] >= 2
    # each file once in the job folder, nothing left of the cut-off upload
    names = sorted(os.listdir(node.remote_workdir))
    assert names.count("big.bin") == 1 and _no_leftovers(node.remote_workdir) == [], names
    assert not node.paused


@pytest.mark.sshd
async def test_ssh_dies_during_retrieve_pauses_then_play_finishes(
    monkeypatch, dying_sshd, ssh_computer, tmp_path
):
    from plait.orm import List

    inputs = {
        "command": Str("bash"),
        "arguments": List(["-c", f"head -c {BIG} /dev/urandom > out.bin; md5sum < out.bin"]),
        "outputs": List(["out.bin"]),
    }
    outputs, node, _ = await _run_with_fault(monkeypatch, dying_sshd, ssh_computer, "get", inputs, "out.bin")
    assert node.is_finished_ok, node.exit_message
    retrieved = [n for label, _, n in node.get_outgoing() if label == "retrieved"]
    assert len(retrieved) == 1  # retrieved once, not once per attempt
    assert sorted(retrieved[0].list_file_paths()) == [
        "_scheduler-stderr.txt",
        "_scheduler-stdout.txt",
        "out.bin",
        "stderr",
        "stdout",
    ]
    import hashlib

    data = outputs["out_bin"].get_content("rb")
    assert len(data) == BIG
    assert hashlib.md5(data).hexdigest() == outputs["stdout"].get_content().split()[0]
    reports = [r["message"] for r in node.get_report()]
    assert any(m.startswith("retrieve failed (attempt 1 of 3)") for m in reports)
