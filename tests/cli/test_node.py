"""``plait node show`` and ``plait node graph``."""

from __future__ import annotations

import os
import re
import shutil

import pytest

import plait.storage
from plait.orm import Dict, SinglefileData, load_node
from plait.orm.provenance_dot import HIGHLIGHT_FILL

from .helpers import assert_one_line_error


def _dot_nodes(text: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(0) for m in re.finditer(r"^  n(\d+) \[.*\];$", text, re.M)}


def _dot_edges(text: str) -> list[tuple[int, int, str]]:
    return [
        (int(m.group(1)), int(m.group(2)), m.group(3))
        for m in re.finditer(r"^  n(\d+) -> n(\d+) \[(.*)\];$", text, re.M)
    ]


def test_show_a_data_node(invoke, demo_pk):
    root = load_node(demo_pk).outputs.root
    out = invoke("node", "show", str(root.pk)).stdout
    assert "Float (data.core.float)" in out
    assert root.uuid in out and root.node_hash in out
    assert '"value": 1.41421356237' in out  # attributes as JSON
    incoming = out.split("Incoming links", 1)[1].split("Outgoing links", 1)[0]
    assert re.search(rf"result\s+create\s+{root.creator.pk}\s+CalcFunctionNode\s+newton_step", incoming)
    assert re.search(rf"root\s+return\s+{demo_pk}\s+WorkChainNode", incoming)
    assert "Files: none" in out


def test_show_by_uuid_prefix_with_extras_and_files(invoke):
    node = SinglefileData(
        b"line one\nline two\n", filename="notes.txt", label="my notes", description="what I saw"
    )
    node.store()
    node.set_extra("tag", {"kind": "test", "n": 3})
    out = invoke("node", "show", node.uuid[:8]).stdout
    assert "SinglefileData (data.core.singlefile)" in out
    assert "my notes" in out and "what I saw" in out
    assert '"filename": "notes.txt"' in out
    assert '"kind": "test"' in out
    assert re.search(r"notes\.txt\s+18 B\s+[0-9a-f]{16}", out)


def test_show_a_process_node_points_to_process_show(invoke, demo_pk):
    out = invoke("node", "show", str(demo_pk)).stdout
    assert "WorkChainNode (process.workchain)" in out
    assert f"plait process show {demo_pk}" in out
    assert re.search(r"a\s+input_work\s+1\s+Float\s+2\.0", out)


def test_show_errors(invoke):
    Dict({"a": 1}).store()
    assert_one_line_error(
        invoke("node", "show", "777", code=None), "no node with pk 777 in profile 'default'"
    )
    assert_one_line_error(invoke("node", "show", "ffffffff", code=None), "no node with uuid 'ffffffff'")


def test_ambiguous_uuid_prefix_is_one_line(invoke):
    first, second = Dict({"a": 1}), Dict({"a": 2})
    first._uuid = "abcd0000-0000-4000-8000-000000000001"  # two uuids sharing a prefix
    second._uuid = "abcd0000-0000-4000-8000-000000000002"
    first.store()
    second.store()
    assert_one_line_error(invoke("node", "show", "abcd0000", code=None), "matches more than one node")
    assert f"pk           {second.pk}" in invoke("node", "show", second.uuid).stdout


def test_graph_writes_dot_in_the_current_folder(invoke, demo_pk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("node", "graph", str(demo_pk))
    target = tmp_path / f"{demo_pk}.dot"
    assert f"to {target}" in result.stdout
    text = target.read_text()
    assert text.startswith(f'digraph "provenance of node {demo_pk}" {{')
    nodes = _dot_nodes(text)
    chain = load_node(demo_pk)
    # depth 1 both ways: 3 inputs, the chain, 10 calls, 2 outputs
    assert len(nodes) == 16
    assert "shape=octagon" in nodes[demo_pk] and "penwidth=3" in nodes[demo_pk]
    assert "NewtonSqrtWorkChain (" in nodes[demo_pk] and "finished [0]" in nodes[demo_pk]
    for child in chain.called:
        assert "shape=box" in nodes[child.pk]
    assert "shape=ellipse" in nodes[chain.outputs.root.pk]
    assert 'label="Float (1)\\n2.0"' in nodes[1]

    edges = _dot_edges(text)
    assert (1, demo_pk, 'label="a\\n(input_work)", style=solid, color="#37474f"') in edges
    assert (
        demo_pk,
        chain.called[0].pk,
        'label="residual_iteration_1\\n(call_calc)", style=dotted, color="#6d6d6d"',
    ) in edges
    assert any(
        src == demo_pk and dst == chain.outputs.root.pk and "(return)" in attrs and "dashed" in attrs
        for src, dst, attrs in edges
    )
    # links between collected nodes that the walk did not follow are drawn too: input a goes to each
    # of the 10 children as 'a', and to the first two as 'x' as well (the first estimate is a itself)
    assert sum(1 for src, dst, attrs in edges if src == 1 and "(input_calc)" in attrs) == 12
    assert any("(create)" in attrs for _, _, attrs in edges)  # newton_step 5 -> root


def test_graph_depths(invoke, demo_pk, capsys):
    only = invoke("node", "graph", str(demo_pk), "--ancestors", "0", "--descendants", "0", "-o", "-").stdout
    assert list(_dot_nodes(only)) == [demo_pk] and _dot_edges(only) == []

    root = load_node(demo_pk).outputs.root
    up = invoke("node", "graph", str(root.pk), "--ancestors", "2", "--descendants", "0", "-o", "-").stdout
    nodes = _dot_nodes(up)
    creator = root.creator
    chain = load_node(demo_pk)
    # root <- its creator and the chain returning it; <- their inputs (the chain's three, the creator's x)
    expected = {
        root.pk,
        creator.pk,
        demo_pk,
        creator.inputs.x.pk,
        *(node.pk for node in chain.inputs.values()),
    }
    assert set(nodes) == expected and len(expected) == 7
    deep = invoke("node", "graph", str(demo_pk), "--descendants", "2", "-o", "-").stdout
    assert len(_dot_nodes(deep)) == 24


def test_graph_highlight_class(invoke, demo_pk, tmp_path):
    out = tmp_path / "g.dot"
    invoke("node", "graph", str(demo_pk), "--highlight-class", "Int", "-o", str(out))
    nodes = _dot_nodes(out.read_text())
    chain = load_node(demo_pk)
    max_iterations = chain.inputs.max_iterations.pk
    highlighted = {pk for pk, line in nodes.items() if HIGHLIGHT_FILL in line}
    assert highlighted == {max_iterations}

    invoke("node", "graph", str(demo_pk), "--highlight-class", "calcfunctionnode", "-o", str(out))
    highlighted = {pk for pk, line in _dot_nodes(out.read_text()).items() if HIGHLIGHT_FILL in line}
    assert highlighted == {child.pk for child in chain.called}

    invoke("node", "graph", str(demo_pk), "--highlight-class", "data.core.float", "-o", str(out))
    highlighted = {pk for pk, line in _dot_nodes(out.read_text()).items() if HIGHLIGHT_FILL in line}
    assert highlighted == {1, chain.inputs.tolerance.pk, chain.outputs.root.pk, chain.outputs.residual.pk}

    result = invoke("node", "graph", str(demo_pk), "--highlight-class", "Structure", "-o", str(out))
    assert "no node of class 'Structure'" in result.stderr
    assert HIGHLIGHT_FILL not in out.read_text()


def test_graph_svg_with_graphviz(invoke, demo_pk, tmp_path, monkeypatch):
    if shutil.which("dot") is None:
        if os.environ.get("PLAIT_CI"):
            pytest.fail("Graphviz 'dot' is missing: .ci/run installs it")
        pytest.skip("Graphviz 'dot' is not installed")
    monkeypatch.chdir(tmp_path)
    result = invoke("node", "graph", str(demo_pk), "--format", "svg", "--descendants", "2")
    target = tmp_path / f"{demo_pk}.svg"
    assert str(target) in result.stdout and "24 nodes" in result.stdout
    svg = target.read_text()
    assert "<svg" in svg and "NewtonSqrtWorkChain" in svg and "step_iteration_5" in svg

    png = tmp_path / "out.png"
    invoke("node", "graph", str(demo_pk), "-f", "png", "-o", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")


def test_graph_without_graphviz(invoke, demo_pk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = invoke("node", "graph", str(demo_pk), "--format", "svg", code=1)
    assert_one_line_error(result, "install graphviz (apt install graphviz) or use --format dot")
    assert not (tmp_path / f"{demo_pk}.svg").exists()
    invoke("node", "graph", str(demo_pk))  # DOT needs no Graphviz
    assert (tmp_path / f"{demo_pk}.dot").is_file()


def test_graph_errors(invoke, tmp_path):
    assert_one_line_error(invoke("node", "graph", "31337", code=None), "no node with pk 31337")
    plait.storage.get_backend()
    assert_one_line_error(
        invoke("node", "graph", "1", "--format", "gif", code=None), "'gif' is not one of", code=2
    )
    assert_one_line_error(invoke("node", "graph", "1", "--ancestors", "-1", code=None), "--ancestors", code=2)
    Dict({"a": 1}).store()
    bad = tmp_path / "missing-dir" / "x.dot"
    assert_one_line_error(invoke("node", "graph", "1", "-o", str(bad), code=None), "cannot write")
