"""What one calculation job asks of the database and of its threads: only what it needs.

With a thousand jobs at once every read, write and trip to a worker thread of one job is made a
thousand times, in a queue shared by all of them.  Each test here pins one that was made for
nothing (and fails without the change that removed it); none measures time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from plait import run_get_node
from plait.calculations.shell import ShellJob
from plait.engine import lifecycle
from plait.engine.job_options import PreparedJobInputs
from plait.orm import Computer
from plait.transports.local import LocalTransport


def test_a_job_runs_on_the_computer_its_options_were_checked_against() -> None:
    prepared = ShellJob.prepare_inputs({"command": "true"})
    assert isinstance(prepared, PreparedJobInputs)
    assert prepared.computer is not None and prepared.computer.label == "localhost"
    assert ShellJob(prepared).computer is prepared.computer  # not read again


def test_a_launch_reads_its_computer_once(monkeypatch: Any) -> None:
    calls: list[Any] = []
    get = Computer.get.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Computer], label: str | None = None, *, pk: int | None = None) -> Computer:
        calls.append(label if pk is None else pk)
        return get(cls, label, pk=pk)

    Computer.get("localhost")  # the profile's localhost exists before counting starts
    monkeypatch.setattr(Computer, "get", classmethod(counting))
    _, node = run_get_node(ShellJob, command="true")
    assert node.is_finished_ok, node.exit_message
    assert len(calls) == 1, calls


def _record_stages(monkeypatch: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    stages: list[str] = []
    reservations: list[tuple[Any, ...]] = []
    commit, reserve = lifecycle.commit, lifecycle.reserve_job_slot

    def recording_commit(*args: Any, **kwargs: Any) -> Any:
        if "job_stage" in kwargs:
            stages.append(kwargs["job_stage"])
        return commit(*args, **kwargs)

    def recording_reserve(*args: Any) -> bool:
        reservations.append(args)
        return reserve(*args)

    monkeypatch.setattr(lifecycle, "commit", recording_commit)
    monkeypatch.setattr(lifecycle, "reserve_job_slot", recording_reserve)
    return stages, reservations


def test_an_uncapped_job_is_marked_submitting_by_the_commit_of_its_upload(monkeypatch: Any) -> None:
    stages, reservations = _record_stages(monkeypatch)
    _, node = run_get_node(ShellJob, command="true")
    assert node.is_finished_ok, node.exit_message
    assert stages == ["submitting", "queued", "retrieve", "parse"]
    assert reservations == []  # no second write to say the same


def test_a_capped_job_still_reserves_its_slot(monkeypatch: Any) -> None:
    Computer("capped-once", work_dir="/tmp/plait-capped-once", max_queued_jobs=3).store()
    stages, reservations = _record_stages(monkeypatch)
    _, node = run_get_node(ShellJob, command="true", metadata={"computer": "capped-once"})
    assert node.is_finished_ok, node.exit_message
    assert stages == ["submit", "queued", "retrieve", "parse"]
    assert len(reservations) == 1  # counted and marked in one transaction, as the cap needs


def test_the_final_scheduler_report_is_not_written_as_a_status(monkeypatch: Any) -> None:
    statuses: list[str | None] = []
    set_status = lifecycle.set_status

    def recording(*args: Any, **kwargs: Any) -> bool:
        statuses.append(kwargs.get("status"))
        return set_status(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "set_status", recording)
    _, node = run_get_node(ShellJob, command="sleep", arguments=["0.2"])
    assert node.is_finished_ok, node.exit_message
    # the stage's own commit says "job done; retrieving" right after; a status write racing it
    # could land after it
    assert not [s for s in statuses if s and ": done in " in s], statuses


def test_a_local_transfer_is_one_trip_to_a_thread(monkeypatch: Any, tmp_path: Any) -> None:
    trips: list[str] = []
    to_thread = asyncio.to_thread

    async def counting(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(func, "__name__", repr(func)))
        return await to_thread(func, *args, **kwargs)

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a").write_text("a")
    (tmp_path / "file").write_text("data")

    async def transfers() -> None:
        async with LocalTransport() as transport:
            monkeypatch.setattr(asyncio, "to_thread", counting)
            await transport.put(tmp_path / "file", str(tmp_path / "put"))
            await transport.get(str(tmp_path / "put"), tmp_path / "got")
            await transport.puttree(tmp_path / "tree", str(tmp_path / "tree-put"))
            await transport.gettree(str(tmp_path / "tree-put"), tmp_path / "tree-got")

    asyncio.run(transfers())
    assert len(trips) == 4, trips
    assert (tmp_path / "got").read_text() == "data" and (tmp_path / "tree-got" / "a").read_text() == "a"
