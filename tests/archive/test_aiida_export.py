"""plait's AiiDA-format export imported by real aiida-core 2.9 (``verdi archive import`` in its own venv).

The venv is ``$PLAIT_AIIDA_VENV`` (default ``/work/scratch/aiida-venv``, made by
benchmarks/setup_aiida.sh; ``.ci/run`` makes one in its cache).  Without it the round trip is
skipped, and in CI (``PLAIT_CI`` set) it fails.  aiida imports with its own ``import_archive``
(what ``verdi archive import`` calls) into a throw-away in-memory profile (``SqliteTempBackend``)
under a temporary ``AIIDA_PATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.archive.conftest import build_graph, use

from plait.archive import create_archive, import_archive

FIXTURE = Path(__file__).parent / "aiida_fixtures" / "workflows.aiida"
VENV = Path(os.environ.get("PLAIT_AIIDA_VENV", "/work/scratch/aiida-venv"))

#: run by aiida's python: import the archive, print nodes, links and groups as JSON
AIIDA_SIDE = """
import hashlib, json, sys
from aiida import load_profile, orm
from aiida.storage.sqlite_temp import SqliteTempBackend
load_profile(SqliteTempBackend.create_profile("roundtrip"), allow_switch=True)
from aiida.tools.archive import import_archive
import_archive(sys.argv[1])
nodes = {}
for node in orm.QueryBuilder().append(orm.Node).all(flat=True):
    files = {}
    def walk(path):
        for obj in node.base.repository.list_objects(path):
            sub = f"{path}/{obj.name}" if path else obj.name
            if obj.file_type.name == "DIRECTORY":
                walk(sub)
            else:
                files[sub] = hashlib.sha256(node.base.repository.get_object_content(sub, "rb")).hexdigest()
    walk("")
    info = {"type": node.node_type, "label": node.label, "files": files}
    if isinstance(node, orm.ProcessNode):
        info.update(state=node.process_state.value, exit_status=node.exit_status)
        info["process_label"] = node.process_label
    elif hasattr(node, "value"):
        info["value"] = node.value
    elif isinstance(node, orm.Dict):
        info["value"] = node.get_dict()
    nodes[node.uuid] = info
links = sorted(
    [a.uuid, b.uuid, t, lab]
    for a, b, t, lab in orm.QueryBuilder()
    .append(orm.Node, tag="a", project="*")
    .append(orm.Node, with_incoming="a", project="*", edge_project=["type", "label"])
    .all()
)
groups = {
    g.label: sorted(n.uuid for n in g.nodes)
    for g in orm.QueryBuilder().append(orm.Group).all(flat=True)
    if g.type_string == "core"
}
print(json.dumps({"nodes": nodes, "links": links, "groups": groups}))
"""


def _aiida_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        message = f"aiida-core's venv {VENV} is missing (benchmarks/setup_aiida.sh makes it)"
        if os.environ.get("PLAIT_CI"):
            pytest.fail(f"{message}: CI must make it (.ci/run)", pytrace=False)
        pytest.skip(message)
    return VENV


def _import_into_aiida(archive: Path, home: Path) -> dict[str, Any]:
    venv = _aiida_venv()
    env = {**os.environ, "AIIDA_PATH": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", AIIDA_SIDE, str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plait_side(backend: Any) -> dict[str, Any]:
    from sqlalchemy import select

    from plait.orm import load_node
    from plait.storage.schema import links, nodes

    found: dict[str, Any] = {}
    with backend.database.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(nodes))]
        by_pk = {r["id"]: r["uuid"] for r in rows}
        edges = sorted(
            [by_pk[r.input_id], by_pk[r.output_id], r.link_type, r.label] for r in conn.execute(select(links))
        )
    for row in rows:
        node = load_node(row["id"])
        info: dict[str, Any] = {"label": row["label"], "files": {p: k for p, (k, _) in row["files"].items()}}
        if row["node_type"].startswith("process."):
            info.update(
                state=str(node.process_state), exit_status=node.exit_status, process_label=node.process_label
            )
        elif "value" in row["attributes"]:
            info["value"] = row["attributes"]["value"]
        elif row["node_type"] == "data.core.dict":
            info["value"] = row["attributes"]
        found[row["uuid"]] = info
    return {"nodes": found, "links": edges}


def test_aiida_format_export_is_read_by_aiida_core(tmp_path: Path) -> None:
    """A plait graph and an imported AiiDA one, exported as .aiida: aiida-core gets the same graph."""
    from plait.orm import Group

    backend = use("default")
    build_graph()
    import_archive(FIXTURE)  # the graph aiida made comes back too, with its types restored
    out = tmp_path / "from-plait.aiida"
    result = create_archive(out, all=True, format="aiida")
    assert result.path == out and result.counts["nodes"] == backend.count_nodes()
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        metadata = json.loads(archive.read("metadata.json"))
    assert {"metadata.json", "db.sqlite3"} <= names and metadata["export_version"] == "main_0001"
    assert len([n for n in names if n.startswith("repo/")]) == result.counts["objects"]

    aiida = _import_into_aiida(out, tmp_path / "aiida-home")
    plait = _plait_side(backend)
    assert set(aiida["nodes"]) == set(plait["nodes"])
    for uuid, mine in plait["nodes"].items():
        theirs = aiida["nodes"][uuid]
        for key, value in mine.items():
            assert theirs.get(key) == value, (uuid, key, theirs, mine)
    assert aiida["links"] == plait["links"]
    types = {info["type"] for info in aiida["nodes"].values()}
    assert {
        "data.core.int.Int.",
        "data.core.singlefile.SinglefileData.",
        "data.core.structure.StructureData.",
        "process.calculation.calcjob.CalcJobNode.",
        "process.workflow.workchain.WorkChainNode.",
        "data.core.code.installed.InstalledCode.",
    } <= types
    for label in ("archived", "fixture-group", "fixture-data"):
        assert aiida["groups"][label] == sorted(n.uuid for n in Group.get(label).nodes)


def test_aiida_format_refuses_an_existing_file(tmp_path: Path) -> None:
    from plait.archive import ArchiveExportError

    use("default")
    out = tmp_path / "taken.aiida"
    out.write_bytes(b"")
    with pytest.raises(ArchiveExportError, match="exists already"):
        create_archive(out, all=True, format="aiida")
    assert out.read_bytes() == b""


def test_cli_writes_aiida_format_that_plait_reads_back(tmp_path: Path, fresh_sqlite_profile: Any) -> None:
    """``plait archive create --format aiida``; plait reads it back into a fresh profile, unchanged."""
    from click.testing import CliRunner

    from plait.cli.main import cli

    source = use("default")
    build_graph()
    out = tmp_path / "cli.aiida"
    done = CliRunner().invoke(cli, ["archive", "create", str(out), "--all", "--format", "aiida"])
    assert done.exit_code == 0, done.output
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("metadata.json"))["export_version"] == "main_0001"
    before = _plait_side(source)
    target = use(fresh_sqlite_profile("back"))
    result = import_archive(out)
    assert result.added["nodes"] == len(before["nodes"])
    assert _plait_side(target) == before
