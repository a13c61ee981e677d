"""Importing archives written by aiida-core 2.9 (the committed fixture from aiida_fixtures/make_fixtures.py).

Real SQLite and PostgreSQL profiles; the fixture archive is read as aiida-core wrote it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.archive.conftest import use

from plait.archive import (
    ArchiveVersionError,
    CorruptArchiveError,
    ImportConflictError,
    UnsafeArchiveError,
    import_archive,
)

FIXTURE = Path(__file__).parent / "aiida_fixtures" / "workflows.aiida"


def _rows(backend: Any, node_type: str) -> list[dict[str, Any]]:
    return backend.find_nodes(node_types=[node_type])


def _process(backend: Any, label: str) -> list[Any]:
    from plait.orm import load_node

    return [
        load_node(row["id"])
        for row in backend.find_nodes(node_type_prefix="process.")
        if backend.get_process(row["id"])["process_label"] == label
    ]


def test_aiida_archive_imports_nodes_links_processes_files_groups(target: str) -> None:
    from plait.orm import Computer, Group, load_code, load_node

    backend = use(target)
    result = import_archive(FIXTURE)
    assert result.added == {
        "computers": 1,
        "nodes": 36,
        "processes": 9,
        "links": 33,
        "logs": 5,
        "comments": 1,
        "groups": 2,
        "group_nodes": 10,
        "files": 8,
    }
    assert backend.count_nodes() == 36

    # the workfunction: inputs x, y, z; it called add then multiply; returned 20
    (workflow,) = _process(backend, "build.<locals>.add_multiply")
    assert type(workflow).__name__ == "WorkFunctionNode"
    assert workflow.process_state == "finished" and workflow.exit_status == 0
    assert {label: n.value for label, n in workflow.inputs.items()} == {"x": 2, "y": 3, "z": 4}
    assert workflow.outputs["result"].value == 20
    assert sorted(p.process_label for p in workflow.called) == [
        "build.<locals>.add",
        "build.<locals>.multiply",
    ]
    assert workflow.called[0].caller.pk == workflow.pk
    assert workflow.get_attribute("function_name") == "add_multiply"
    assert workflow.list_file_paths() == ["source_file"]  # the function's source, as aiida keeps it

    # a failed calcfunction keeps its exit status and message
    (refused,) = _process(backend, "build.<locals>.refuse")
    assert (refused.process_state, refused.exit_status, refused.exit_message) == (
        "finished",
        410,
        "the input is not welcome",
    )
    assert refused.is_failed

    # the work chain: two calcfunction children, its reports among its logs
    (chain,) = _process(backend, "AddTwiceWorkChain")
    assert type(chain).__name__ == "WorkChainNode"
    assert chain.outputs["result"].value == 17
    assert [c.process_label for c in chain.called] == ["build.<locals>.add", "build.<locals>.add"]
    reports = [log["message"] for log in chain.get_report() if log["level"] == "REPORT"]
    assert any("the result is 17" in m for m in reports), reports

    # the calculation job: inputs, its computer, outputs with files
    (job,) = _process(backend, "ArithmeticAddCalculation")
    assert type(job).__name__ == "CalcJobNode" and job.is_finished_ok
    assert job.label == "add 7 and 8" and job.process_type == "aiida.calculations:core.arithmetic.add"
    assert job.get_attribute("resources") == {"num_machines": 1}
    assert {label: type(n).__name__ for label, n in job.inputs.items()} == {
        "x": "Int",
        "y": "Int",
        "code": "InstalledCode",
    }
    assert job.get_object_content("aiida.in") == "echo $((7 + 8))\n"
    retrieved = job.outputs["retrieved"]
    assert type(retrieved).__name__ == "FolderData"
    assert sorted(retrieved.list_file_paths()) == ["_scheduler-stderr.txt", "aiida.out", "logs/scheduler.log"]
    assert retrieved.get_object_content("logs/scheduler.log") == "job done\n"
    assert job.outputs["sum"].value == 15
    remote = job.outputs["remote_folder"]
    assert type(remote).__name__ == "RemoteData" and remote.get_remote_path() == "/tmp/aiida-run/7a/8b"
    assert remote.computer is not None and remote.computer.label == "localhost"

    computer = Computer.get("localhost")
    assert (computer.transport_type, computer.scheduler_type) == ("local", "direct")
    code = load_code("bash-add@localhost")
    assert code.get_executable() == "/bin/bash" and code.description == "bash for the arithmetic add job"

    # data of every core type with its value; the structure (no plait class) as generic data
    values = {row["node_type"]: row["attributes"] for row in backend.find_nodes(node_type_prefix="data.")}
    assert values["data.core.float"] == {"value": 2.5}
    assert values["data.core.bool"] == {"value": True}
    assert values["data.core.dict"] == {"a": 1, "nested": {"b": [1, 2, 3]}}
    assert values["data.core.list"] == {"list": [1, "two", 3.0]}
    (single,) = _rows(backend, "data.core.singlefile")
    assert load_node(single["id"]).get_content() == "single file content\n"
    (array,) = _rows(backend, "data.core.array")
    assert load_node(array["id"]).get_array("values").tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    (structure,) = _rows(backend, "data.core.structure")
    assert structure["label"] == "silicon" and structure["attributes"]["cell"][0] == [4.0, 0.0, 0.0]
    extras = structure["extras"]
    assert (
        extras["source"] == "hand made" and extras["_aiida_node_type"] == "data.core.structure.StructureData."
    )
    assert "_aiida_hash" in extras  # aiida's own hash, kept as aiida stored it
    assert type(load_node(structure["id"])).__name__ == "Data"
    (hello,) = [row for row in _rows(backend, "data.core.str")]
    assert hello["attributes"] == {"value": "hello"} and hello["extras"]["colour"] == "blue"

    assert sorted(n.pk for n in Group.get("fixture-group").nodes) == sorted(
        [workflow.pk, workflow.outputs["result"].pk]
    )
    assert len(Group.get("fixture-data").nodes) == 8
    assert [c.content for c in workflow.get_comments()] == ["a comment"]

    # importing again adds nothing
    again = import_archive(FIXTURE)
    assert set(again.added.values()) == {0}
    assert again.existing["nodes"] == 36 and backend.count_nodes() == 36


def _rewrite(
    source: Path, dest: Path, change: dict[str, bytes | None], extra: dict[str, bytes] | None = None
) -> Path:
    """A copy of the archive with members replaced (None: dropped) or added."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename in change:
                data = change[info.filename]
                if data is not None:
                    new.writestr(info.filename, data)
            else:
                new.writestr(info, old.read(info))
        for name, data in (extra or {}).items():
            new.writestr(name, data)
    return dest


def test_aiida_archive_refusals_import_nothing(tmp_path: Path) -> None:
    backend = use("default")
    with zipfile.ZipFile(FIXTURE) as archive:
        metadata = json.loads(archive.read("metadata.json"))
        some_object = next(n for n in archive.namelist() if n.startswith("repo/") and len(n) > 10)

    truncated = tmp_path / "truncated.aiida"
    truncated.write_bytes(FIXTURE.read_bytes()[:5000])
    with pytest.raises(CorruptArchiveError, match=r"truncated|not a zip"):
        import_archive(truncated)

    old = _rewrite(
        FIXTURE,
        tmp_path / "old.aiida",
        {"metadata.json": json.dumps({**metadata, "export_version": "0.9"}).encode()},
    )
    with pytest.raises(ArchiveVersionError, match=r"'0\.9'.*verdi archive migrate"):
        import_archive(old)

    aiida_1 = _rewrite(
        FIXTURE,
        tmp_path / "aiida1.aiida",
        {"metadata.json": json.dumps({"export_version": "0.10"}).encode(), "db.sqlite3": None},
        {"data.json": b"{}"},
    )
    with pytest.raises(ArchiveVersionError, match=r"'0\.10'.*verdi archive migrate"):
        import_archive(aiida_1)

    escaping = _rewrite(FIXTURE, tmp_path / "escape.aiida", {}, {"../evil.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match=r"evil\.txt"):
        import_archive(escaping)

    bomb = _rewrite(FIXTURE, tmp_path / "bomb.aiida", {})
    with (
        zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as archive,
        archive.open("repo/" + "0" * 64, "w") as big,
    ):
        zeros = bytes(1 << 20)
        for _ in range(260):  # 260 MiB of zeros (more than the 256 MiB floor) in a few hundred KiB
            big.write(zeros)
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        import_archive(bomb)

    tampered = _rewrite(FIXTURE, tmp_path / "tampered.aiida", {some_object: b"not what the hash says"})
    with pytest.raises(CorruptArchiveError, match="checksum mismatch"):
        import_archive(tampered)

    not_db = _rewrite(FIXTURE, tmp_path / "nodb.aiida", {"db.sqlite3": b"this is no database"})
    with pytest.raises(CorruptArchiveError, match=r"db\.sqlite3"):
        import_archive(not_db)
    assert backend.count_nodes() == 0

    # a node of the archive (by uuid) that exists here with other content stops the import
    shutil.copyfile(FIXTURE, tmp_path / "copy.aiida")
    import sqlite3

    from plait.orm import Int

    with zipfile.ZipFile(FIXTURE) as archive:
        db = tmp_path / "db.sqlite3"
        db.write_bytes(archive.read("db.sqlite3"))
    uuid = (
        sqlite3.connect(db)
        .execute("SELECT uuid FROM db_dbnode WHERE node_type = 'data.core.float.Float.'")
        .fetchone()[0]
    )
    clash = Int(99)
    clash._uuid = uuid
    clash.store()
    with pytest.raises(ImportConflictError, match=f"{uuid}.*attributes"):
        import_archive(FIXTURE)
    assert backend.count_nodes() == 1


def test_cli_imports_an_aiida_archive() -> None:
    from click.testing import CliRunner

    from plait.cli.main import cli

    backend = use("default")
    result = CliRunner().invoke(cli, ["archive", "import", str(FIXTURE), "-G", "from-aiida"])
    assert result.exit_code == 0, result.output
    assert backend.count_nodes() == 36
    from plait.orm import Group

    assert len(Group.get("from-aiida").nodes) == 36
