"""``plait process dump``: a process's files on disk, in a tree that mirrors its calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import plait.storage
from plait import ToContext, WorkChain, calcfunction, run_get_node
from plait.calculations.shell import ShellJob
from plait.orm import FolderData, Int, List, SinglefileData, Str, load_node
from plait.orm.process_dump import METADATA_FILENAME, dump_process

from .helpers import assert_one_line_error


@calcfunction
def double(x: Int) -> Int:
    return Int(2 * x.value)


class Inner(WorkChain):
    """Calls one calcfunction."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("y", valid_type=Int)
        spec.outline(cls.go)

    def go(self):
        self.out("y", double(self.inputs.x))


class Outer(WorkChain):
    """Runs a shell job with a file and a folder, then a sub work chain: two levels of calls."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("x", valid_type=Int)
        spec.output("y", valid_type=Int)
        spec.output("listing", valid_type=SinglefileData)
        spec.outline(cls.shell, cls.inner, cls.finish)

    def shell(self):
        folder = FolderData()
        folder.put_object_from_bytes("deep/data.txt", b"in a folder\n")
        job = self.submit(
            ShellJob,
            command=Str("sh"),
            arguments=List(["-c", "cat {table} && ls {tree}/deep && printf '\\000\\001' > blob.bin"]),
            nodes={"table": SinglefileData(b"a b\nc d\n", filename="table.txt"), "tree": folder},
            outputs=List(["blob.bin"]),
            metadata={"call_link_label": "list_files"},
        )
        return ToContext(job=job)

    def inner(self):
        return ToContext(sub=self.submit(Inner, x=self.inputs.x))

    def finish(self):
        self.out("y", self.ctx.sub.outputs.y)
        self.out("listing", self.ctx.job.outputs.stdout)


def _metadata(folder: Path) -> dict:
    return json.loads((folder / METADATA_FILENAME).read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def outer_pk(invoke) -> int:
    _, node = run_get_node(Outer, x=Int(21))
    assert node.is_finished_ok, node.exit_message
    return node.pk


def test_dump_mirrors_the_call_tree(invoke, outer_pk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = invoke("process", "dump", str(outer_pk)).stdout
    root = tmp_path / f"dump-Outer-{outer_pk}"
    assert str(root.name) in out
    top = _metadata(root)
    node = load_node(outer_pk)
    assert top["class"] == "WorkChainNode" and top["process_label"] == "Outer"
    assert (top["pk"], top["uuid"], top["state"], top["exit_status"]) == (outer_pk, node.uuid, "finished", 0)
    assert top["ctime"] == node.ctime.isoformat() and top["caller"] is None
    assert json.loads((root / "inputs" / "x.json").read_text()) == 21
    assert json.loads((root / "outputs" / "y.json").read_text()) == 42
    assert (root / "outputs" / "listing" / "stdout").read_text().startswith("a b\nc d\n")
    assert top["inputs"]["x"] == {"pk": node.inputs.x.pk, "uuid": node.inputs.x.uuid, "type": "Int",
                                  "path": "inputs/x.json"}  # fmt: skip

    # children, numbered in call order, named by call link label or else by process label
    assert sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0].isdigit()) == [
        "01-list_files",
        "02-Inner",
    ]
    assert [c["folder"] for c in top["called"]] == ["01-list_files", "02-Inner"]

    job_dir = root / "01-list_files"
    job = _metadata(job_dir)
    job_node = load_node(job["pk"])
    assert job["class"] == "CalcJobNode" and job["caller"] == outer_pk
    assert job["remote_workdir"] == job_node.remote_workdir and job["job_id"] == job_node.job_id
    # what was sent: the job script (the input files are the input nodes, below inputs/)
    assert (job_dir / "raw_input" / "_plait_submit.sh").read_bytes() == job_node.get_object_content(
        "raw_input/_plait_submit.sh", "rb"
    )
    assert (job_dir / "inputs" / "nodes" / "table" / "table.txt").read_text() == "a b\nc d\n"
    assert (job_dir / "inputs" / "nodes" / "tree" / "deep" / "data.txt").read_text() == "in a folder\n"
    assert json.loads((job_dir / "inputs" / "command.json").read_text()) == "sh"
    assert job["inputs"]["nodes.table"]["path"] == "inputs/nodes/table"
    # what came back, byte for byte (binary included); the outputs as their own nodes
    retrieved = job_node.outputs.retrieved
    assert _tree(job_dir / "retrieved") == {p: retrieved.get_object_content(p, "rb") for p in
                                            retrieved.list_file_paths()}  # fmt: skip
    assert (job_dir / "retrieved" / "blob.bin").read_bytes() == b"\0\1"
    assert (job_dir / "outputs" / "blob_bin" / "blob.bin").read_bytes() == b"\0\1"
    remote = json.loads((job_dir / "outputs" / "remote_folder.json").read_text())
    assert remote["remote_path"] == job_node.remote_workdir
    assert not (job_dir / "outputs" / "retrieved").exists()

    inner_dir = root / "02-Inner"
    assert _metadata(inner_dir)["process_label"] == "Inner"
    assert (inner_dir / "01-double" / "outputs" / "result.json").read_text().strip() == "42"
    assert _metadata(inner_dir / "01-double")["class"] == "CalcFunctionNode"
    assert not (inner_dir / "raw_input").exists()  # only calculation jobs have sent files


def test_flat_puts_every_process_folder_at_one_level(invoke, outer_pk, tmp_path):
    target = tmp_path / "flat"
    invoke("process", "dump", str(outer_pk), "-p", str(target), "--flat")
    folders = sorted(p.name for p in target.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert folders == ["01-list_files", "02-Inner", "03-double"]  # depth-first call order
    assert not any((target / "02-Inner").glob("0*"))
    assert _metadata(target)["plait_dump"]["flat"] is True
    assert _metadata(target / "02-Inner")["called"][0]["folder"] == "../03-double"
    assert (target / "03-double" / "outputs" / "result.json").read_text().strip() == "42"


def test_a_second_dump_refuses_and_changes_nothing(invoke, outer_pk, tmp_path):
    target = tmp_path / "dump"
    invoke("process", "dump", str(outer_pk), "-p", str(target))
    (target / "my-notes.txt").write_text("keep me")
    before = _tree(target)
    result = invoke("process", "dump", str(outer_pk), "-p", str(target), code=None)
    assert_one_line_error(result, f"'{target}' exists already", "nothing was changed", "--overwrite")
    assert _tree(target) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_overwrite_replaces_only_a_previous_dump(invoke, outer_pk, tmp_path):
    target = tmp_path / "dump"
    invoke("process", "dump", str(outer_pk), "-p", str(target))
    (target / "stale.txt").write_text("from before")
    first_written = _metadata(target)["plait_dump"]["written"]
    sibling = tmp_path / "other.txt"
    sibling.write_text("untouched")
    invoke("process", "dump", str(outer_pk), "-p", str(target), "--overwrite")
    assert not (target / "stale.txt").exists()
    assert _metadata(target)["plait_dump"]["written"] != first_written
    assert (target / "01-list_files" / "raw_input" / "_plait_submit.sh").is_file()
    assert sibling.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump", "other.txt", "plait-home"]


@pytest.mark.parametrize(
    "content",
    [
        {"results.csv": "1,2\n"},  # somebody's folder
        {METADATA_FILENAME: '{"pk": 1}'},  # a metadata file that no dump wrote
        {METADATA_FILENAME: "not json"},
    ],
)
def test_overwrite_never_replaces_a_folder_that_is_not_a_dump(invoke, outer_pk, tmp_path, content):
    target = tmp_path / "precious"
    target.mkdir()
    for name, text in content.items():
        (target / name).write_text(text)
    result = invoke("process", "dump", str(outer_pk), "-p", str(target), "--overwrite", code=None)
    assert_one_line_error(result, "is not a plait process dump", "not overwritten")
    assert _tree(target) == {name: text.encode() for name, text in content.items()}


def test_target_that_is_a_file_or_an_empty_folder(invoke, outer_pk, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = invoke("process", "dump", str(outer_pk), "-p", str(a_file), "--overwrite", code=None)
    assert_one_line_error(result, "exists and is not a folder")
    assert a_file.read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    invoke("process", "dump", str(outer_pk), "-p", str(empty))  # an empty folder is simply used
    assert _metadata(empty)["pk"] == outer_pk
    nested = tmp_path / "new" / "parents"
    invoke("process", "dump", str(outer_pk), "-p", str(nested))
    assert _metadata(nested)["pk"] == outer_pk


def test_a_failed_calcfunction_records_its_exception(invoke, tmp_path):
    @calcfunction
    def explode(x: Int) -> Int:
        raise ValueError("no good")

    with pytest.raises(ValueError):
        explode(Int(1))
    node = load_node(max(row["id"] for row in plait.storage.get_backend().list_processes(states=None)))
    target = tmp_path / "failed"
    invoke("process", "dump", str(node.pk), "-p", str(target))
    metadata = _metadata(target)
    assert metadata["state"] == "excepted"
    assert "ValueError: no good" in metadata["exception"]
    assert metadata["outputs"] == {} and not (target / "outputs").exists()


def test_dump_errors(invoke, tmp_path):
    data = Int(5).store()
    assert_one_line_error(invoke("process", "dump", "424242", code=None), "no node with pk 424242")
    result = invoke("process", "dump", str(data.pk), code=None)
    assert_one_line_error(result, f"node {data.pk} is a Int, not a process")
    assert_one_line_error(invoke("process", "dump", code=None), "Missing argument 'PK'", code=2)


def test_dump_process_from_python_on_both_databases(any_profile, tmp_path):
    _, node = run_get_node(Inner, x=Int(4))
    written = dump_process(node, tmp_path / "d")
    assert written == tmp_path / "d"
    assert json.loads((written / "outputs" / "y.json").read_text()) == 8
    assert _metadata(written / "01-double")["caller"] == node.pk
    with pytest.raises(FileExistsError, match="exists already"):
        dump_process(node, written)


def test_default_folder_is_named_after_the_label(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, node = run_get_node(Inner, x=Int(1), metadata={"label": "relax Si/2 #3"})
    invoke("process", "dump", str(node.pk))
    assert (tmp_path / f"dump-relax_Si_2_3-{node.pk}" / METADATA_FILENAME).is_file()
    assert _metadata(tmp_path / f"dump-relax_Si_2_3-{node.pk}")["label"] == "relax Si/2 #3"
