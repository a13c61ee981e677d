"""Calculation jobs on localhost (local transport, direct scheduler): the whole life of a job."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time

import pytest

from plait import CalcInfo, CalcJob, CodeInfo, InputValidationError, Parser, arun_get_node, run_get_node
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.calculations.shell import run_shell_job
from plait.engine.runner import Runner
from plait.orm import (
    CalcJobNode,
    Computer,
    FolderData,
    InstalledCode,
    Int,
    LinkType,
    ProcessState,
    RemoteData,
    SinglefileData,
    Str,
    load_node,
)
from plait.storage import get_backend


@pytest.fixture
def bash() -> InstalledCode:
    return InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()


def test_arithmetic_add_on_localhost(bash):
    outputs, node = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(3), y=Int(4))
    assert isinstance(node, CalcJobNode) and node.is_finished_ok, node.exit_message
    assert outputs["sum"].value == 7
    assert isinstance(outputs["remote_folder"], RemoteData) and isinstance(outputs["retrieved"], FolderData)
    assert sorted(outputs["retrieved"].list_file_paths()) == [
        "_scheduler-stderr.txt",
        "_scheduler-stdout.txt",
        "plait.out",
    ]
    # provenance: inputs, created outputs, the exact job script kept on the node
    assert sorted((label, kind) for label, kind, _ in node.get_incoming()) == [
        ("code", LinkType.INPUT_CALC),
        ("x", LinkType.INPUT_CALC),
        ("y", LinkType.INPUT_CALC),
    ]
    assert {label for label, kind, _ in node.get_outgoing() if kind == LinkType.CREATE} == {
        "remote_folder",
        "retrieved",
        "sum",
    }
    script = node.get_object_content("raw_input/_plait_submit.sh")
    assert "/bin/bash" in script and "plait.in" in script
    assert node.get_object_content("raw_input/plait.in") == "echo $((3 + 4))\n"
    workdir = node.remote_workdir
    assert os.path.isdir(workdir) and outputs["remote_folder"].remote_path == workdir
    assert node.job_id and node.job_id.isdigit()
    assert open(os.path.join(workdir, ".plait-exit-code")).read().strip() == "0"
    assert node.computer_label if hasattr(node, "computer_label") else True
    assert get_backend().get_node(pk=node.pk)["computer_id"] == Computer.get("localhost").pk


def test_builder_and_float_sum(bash):
    builder = ArithmeticAddCalculation.get_builder()
    builder.code = bash
    builder.x = 1.5
    builder.y = Int(2)
    builder.metadata.options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
    outputs, node = run_get_node(builder)
    assert node.is_finished_ok and outputs["sum"].value == 3.5


def test_negative_sum_gives_the_parser_exit_code(bash):
    outputs, node = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(-5), y=Int(1))
    assert node.exit_status == 410 and outputs["sum"].value == -4


def test_bad_options_are_refused_before_anything_is_stored(bash):
    before = get_backend().count_nodes()
    with pytest.raises(InputValidationError) as info:
        run_get_node(
            ArithmeticAddCalculation,
            code=bash,
            x=Int(1),
            y=Int(1),
            metadata={"options": {"resources": {"num_machine": 1}, "queue": "x"}},
        )
    message = str(info.value)
    assert "input 'metadata.options.resources'" in message and "num_machine" in message
    assert "input 'metadata.options.queue': is not an input" in message
    assert get_backend().count_nodes() == before


def test_shell_job_with_files_and_outputs(tmp_path):
    table = SinglefileData(b"b\na\nc\n", filename="table with space.txt")
    outputs, node = run_shell_job(
        "bash",
        arguments=["-c", 'sort "$0" > sorted.txt; wc -l < "$0"; echo oops >&2', "{table}"],
        nodes={"table": table},
        outputs=["sorted.txt", "*.none"],
    )
    assert node.exit_status == 300 and "*.none" in node.exit_message  # one requested glob matched nothing
    assert outputs["stdout"].get_content().strip() == "3"
    assert outputs["stderr"].get_content() == "oops\n"
    assert outputs["sorted_txt"].get_content() == "a\nb\nc\n"
    assert node.inputs.nodes.table.pk == table.pk
    ok_outputs, ok_node = run_shell_job("echo", arguments=["hello", "{who}"], nodes={"who": Str("world")})
    assert ok_node.is_finished_ok and ok_outputs["stdout"].get_content() == "hello world\n"


def test_code_failing_gives_error_code_failed():
    _, node = run_shell_job("bash", arguments=["-c", "exit 3"])
    assert node.exit_status == 120 and node.exit_message == "the code exited with status 3"
    _, tolerant = run_shell_job(
        "bash", arguments=["-c", "exit 3"], options={"ignore_nonzero_exit_status": True}
    )
    assert tolerant.is_finished_ok


class RaisingParser(Parser):
    def parse(self, **kwargs):
        assert "plait.out" in self.retrieved.list_file_paths()
        raise RuntimeError("parser bug")


def test_parser_that_raises_excepts_and_keeps_the_retrieved_files(bash):
    with pytest.raises(RuntimeError, match="parser bug"):
        run_get_node(
            ArithmeticAddCalculation,
            code=bash,
            x=Int(1),
            y=Int(1),
            metadata={"options": {"parser_name": f"{__name__}:RaisingParser"}},
        )
    node = load_node(get_backend().list_processes(states=["excepted"])[0]["id"])
    assert node.is_excepted and "RuntimeError: parser bug" in node.exception
    retrieved = node.outputs.retrieved
    assert retrieved.is_stored and retrieved.get_object_content("plait.out").strip() == "2"


class SleepJob(CalcJob):
    """Records when it ran; sleeps ``seconds``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("seconds", valid_type=Str, default=lambda: Str("0.3"))

    def prepare_for_submission(self, folder):
        (folder / "run.sh").write_text(
            f"date +%s.%N > start\nsleep {self.inputs.seconds.value}\ndate +%s.%N > end\n"
        )
        return CalcInfo(
            codes_info=[CodeInfo(executable="bash", cmdline_params=["run.sh"])],
            retrieve_list=["start", "end"],
        )


async def test_max_queued_jobs_caps_and_shows_the_wait(bash):
    computer = Computer(
        "capped", work_dir="/tmp/plait-capped", max_queued_jobs=1, minimum_poll_interval=0.05
    ).store()
    launches = [arun_get_node(SleepJob, metadata={"computer": "capped"}) for _ in range(3)]
    task = asyncio.gather(*launches)
    seen_waiting = False
    while not task.done():
        await asyncio.sleep(0.05)
        for row in get_backend().list_processes(states=["running", "waiting"]):
            if (row["status"] or "").startswith("waiting for a slot on capped"):
                seen_waiting = True
    results = await task
    assert seen_waiting
    spans = sorted(
        (float(o["retrieved"].get_object_content("start")), float(o["retrieved"].get_object_content("end")))
        for o, _ in results
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.05, spans  # never two jobs in the queue at once
    assert computer.pk is not None and all(node.is_finished_ok for _, node in results)


async def test_polling_is_batched_per_computer():
    computer = Computer("batched", work_dir="/tmp/plait-batched", minimum_poll_interval=0.1).store()
    runner = Runner.for_loop()
    sizes = []
    scheduler = runner.job_manager.poller(Computer.get("batched")).scheduler
    original = scheduler.query

    async def counting_query(transport, job_ids):
        sizes.append(len(job_ids))
        return await original(transport, job_ids)

    scheduler.query = counting_query
    results = await asyncio.gather(
        *(arun_get_node(SleepJob, seconds=Str("0.6"), metadata={"computer": "batched"}) for _ in range(6))
    )
    assert all(node.is_finished_ok for _, node in results)
    assert max(sizes) >= 5, sizes  # one query covered (nearly) all the jobs
    assert len(sizes) < 6 * 6, sizes  # far fewer queries than jobs x polls
    assert computer.pk


async def test_kill_cancels_the_scheduler_job():
    task = asyncio.ensure_future(arun_get_node(SleepJob, seconds=Str("60")))
    node = None
    for _ in range(200):
        await asyncio.sleep(0.05)
        rows = get_backend().list_processes(states=["waiting"])
        if rows and load_node(rows[0]["id"]).job_id:
            node = load_node(rows[0]["id"])
            break
    assert node is not None
    pid = int(node.job_id)
    os.kill(pid, 0)  # the job runs
    assert Runner.for_loop().kill(node.pk, "stop it")
    with pytest.raises(Exception, match="killed"):
        await task
    node = load_node(node.pk)
    assert node.process_state is ProcessState.KILLED
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"job process {pid} still alive after kill")
    assert any("cancelled scheduler job" in r["message"] for r in node.get_report())


def test_job_killed_outside_plait_ends_with_scheduler_failure():
    """The job's process is killed behind plait's back: no exit-code file, scheduler failure code."""

    async def main():
        task = asyncio.ensure_future(arun_get_node(SleepJob, seconds=Str("60")))
        for _ in range(200):
            await asyncio.sleep(0.05)
            rows = get_backend().list_processes(states=["waiting"])
            if rows and load_node(rows[0]["id"]).job_id:
                os.killpg(int(load_node(rows[0]["id"]).job_id), signal.SIGKILL)
                break
        return await task

    _, node = asyncio.run(main())
    assert node.exit_status == 110
    assert "without writing its exit-code file" in node.exit_message


def test_a_parser_can_be_run_again_on_stored_files(bash):
    from plait.parsers.arithmetic import ArithmeticAddParser

    _, node = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(20), y=Int(22))
    outputs, exit_code = ArithmeticAddParser.parse_from_node(node)
    assert exit_code is None and outputs["sum"].value == 42 and not outputs["sum"].is_stored


def test_a_portable_code_is_uploaded_with_the_job(tmp_path):
    from plait.orm import PortableCode

    folder = tmp_path / "mycode"
    (folder / "bin").mkdir(parents=True)
    # the job's input is a shell script fed on stdin: the code runs it
    (folder / "bin" / "add.sh").write_text("#!/bin/bash\nexec /bin/bash\n")
    (folder / "bin" / "helper.txt").write_text("not run\n")
    code = PortableCode(filepath_files=folder, filepath_executable="bin/add.sh", label="portable-add").store()
    outputs, node = run_get_node(ArithmeticAddCalculation, code=code, x=Int(5), y=Int(6))
    assert node.is_finished_ok, node.exit_message
    # the code's files went to the job folder (executable), and the job ran them
    workdir = node.remote_workdir
    assert os.access(os.path.join(workdir, "bin", "add.sh"), os.X_OK)
    assert os.path.isfile(os.path.join(workdir, "bin", "helper.txt"))
    assert "./bin/add.sh" in node.get_object_content("raw_input/_plait_submit.sh")
    assert outputs["sum"].value == 11
