"""``plait node label|description|extras`` and ``plait node comment add|show|update|remove``."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from plait.cli.main import cli
from plait.orm import Comment, Int, NotExistentError, load_node

from .helpers import assert_one_line_error


@pytest.fixture
def pk(invoke) -> int:
    """A stored Int (the profile is made by a first command)."""
    invoke("group", "list")
    return Int(5).store().pk


def test_label_show_set_clear(invoke, pk):
    shown = invoke("node", "label", str(pk))
    assert shown.stdout == "" and f"(node {pk} has no label)" in shown.stderr
    assert f"Label of node {pk} set to 'relaxed'." in invoke("node", "label", str(pk), "relaxed").stdout
    assert invoke("node", "label", str(pk)).stdout == "relaxed\n"
    assert invoke("node", "label", load_node(pk).uuid[:8]).stdout == "relaxed\n"  # by uuid prefix
    assert f"Label of node {pk} cleared." in invoke("node", "label", str(pk), "").stdout
    assert load_node(pk).label == ""
    assert_one_line_error(invoke("node", "label", str(pk), "x" * 256, code=2), "TEXT", "at most 255")
    assert load_node(pk).label == ""


def test_description_show_and_set(invoke, pk):
    assert f"(node {pk} has no description)" in invoke("node", "description", str(pk)).stderr
    invoke("node", "description", str(pk), "a long\nnote")
    assert invoke("node", "description", str(pk)).stdout == "a long\nnote\n"
    assert load_node(pk).description == "a long\nnote"


def test_unknown_node_is_one_line(invoke, pk):
    for args in (
        ("label", "999"),
        ("description", "999", "x"),
        ("extras", "999"),
        ("comment", "add", "999", "x"),
        ("comment", "show", "999"),
    ):
        assert_one_line_error(invoke("node", *args, code=1), "no node with pk 999 in profile 'default'")


def test_extras_show_set_delete(invoke, pk):
    assert json.loads(invoke("node", "extras", str(pk)).stdout) == {}
    out = invoke(
        "node", "extras", str(pk), "--set", "n=3", "--set", 'tag="best"', "--set", 'mesh={"k": [8, 8, 8]}'
    ).stdout
    assert json.loads(out) == {"n": 3, "tag": "best", "mesh": {"k": [8, 8, 8]}}
    out = invoke("node", "extras", str(pk), "--delete", "n", "--set", "ok=true").stdout
    assert json.loads(out) == {"tag": "best", "mesh": {"k": [8, 8, 8]}, "ok": True}
    assert load_node(pk).extras == {"tag": "best", "mesh": {"k": [8, 8, 8]}, "ok": True}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ("--set", "ok=1", "--set", "note=hello"),
            ("extra 'note'", "'hello'", "is not JSON", "note='\"hello\"'"),
        ),
        (("--set", "x=NaN"), ("extra 'x'", "NaN or infinity")),
        (("--set", "novalue"), ("'novalue' is not KEY=JSON",)),
        (("--set", "=3"), ("'=3' is not KEY=JSON",)),
        (("--set", "ok=1", "--delete", "ghost"), ("node", "has no extra 'ghost'", "its extras: keep")),
        (("--set", "keep=2", "--delete", "keep"), ("extra 'keep' is both set and deleted",)),
    ],
)
def test_bad_extras_change_nothing(invoke, pk, args, fragments):
    load_node(pk).set_extra("keep", 1)
    assert_one_line_error(invoke("node", "extras", str(pk), *args, code=2), *fragments)
    assert load_node(pk).extras == {"keep": 1}


def test_comments_add_show_update_remove(invoke, pk):
    assert (
        f"Node {pk} has no comments: plait node comment add {pk} TEXT"
        in invoke("node", "comment", "show", str(pk)).stdout
    )
    first = invoke("node", "comment", "add", str(pk), "converged").stdout
    assert re.search(rf"Added comment (\d+) to node {pk}\.", first)
    invoke("node", "comment", "add", str(pk), "rerun with\na finer mesh")
    first_pk, second_pk = [c.pk for c in load_node(pk).get_comments()]

    shown = invoke("node", "comment", "show", str(pk)).stdout
    assert re.search(
        rf"^Comment {first_pk} by user@localhost, \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d$", shown, re.M
    )
    assert "\n  converged\n" in shown and "  rerun with\n  a finer mesh\n" in shown
    assert shown.index("converged") < shown.index("rerun with")

    out = invoke("node", "comment", "update", str(first_pk), "converged (checked)").stdout
    assert f"Comment {first_pk} on node {pk} updated." in out
    assert ", edited " in invoke("node", "comment", "show", str(pk)).stdout.splitlines()[0]

    declined = CliRunner().invoke(cli, ["node", "comment", "remove", str(first_pk)], input="n\n")
    assert declined.exit_code == 1
    assert (
        f"Remove comment {first_pk} on node {pk} by user@localhost ('converged (checked)')?"
        in declined.stderr
    )
    assert declined.stderr.strip().splitlines()[-1] == f"Error: cancelled: comment {first_pk} was not removed"
    assert Comment.get(first_pk).content == "converged (checked)"
    assert (
        f"Removed comment {first_pk} from node {pk}."
        in invoke("node", "comment", "remove", str(first_pk), "-f").stdout
    )
    with pytest.raises(NotExistentError):
        Comment.get(first_pk)
    assert [c.pk for c in load_node(pk).get_comments()] == [second_pk]


def test_comment_errors(invoke, pk):
    assert_one_line_error(invoke("node", "comment", "add", str(pk), "  ", code=2), "TEXT", "needs some text")
    assert_one_line_error(invoke("node", "comment", "remove", "42", "-f", code=1), "no comment with pk 42")
    assert_one_line_error(invoke("node", "comment", "update", "42", "x", code=1), "no comment with pk 42")
    assert_one_line_error(invoke("node", "comment", "remove", "abc", code=2), "COMMENT_ID", "abc")
    made = load_node(pk).add_comment("keep me")
    assert_one_line_error(invoke("node", "comment", "update", str(made.pk), "", code=2), "needs some text")
    assert Comment.get(made.pk).content == "keep me"


def test_annotations_on_both_databases(any_profile, invoke):
    node_pk = Int(1).store().pk
    invoke("node", "label", str(node_pk), "on both")
    invoke("node", "extras", str(node_pk), "--set", "a=[1, 2]")
    invoke("node", "comment", "add", str(node_pk), "noted")
    node = load_node(node_pk)
    assert (node.label, node.extras, [c.content for c in node.get_comments()]) == (
        "on both",
        {"a": [1, 2]},
        ["noted"],
    )
