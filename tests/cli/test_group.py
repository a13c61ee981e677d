"""``plait group create|list|show|add|remove|relabel|copy|delete``."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner, Result

from plait.cli.main import cli
from plait.orm import CalcFunctionNode, Dict, Group, Int, NotExistentError, load_group, load_node
from plait.storage import get_backend

from .helpers import assert_one_line_error


def assert_cancelled(result: Result, fragment: str) -> None:
    """The command asked, was told no, and ended with one ``Error: cancelled ...`` line."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: cancelled") and fragment in lines[-1], result.stderr
    assert "Traceback" not in result.output and len(lines) == 2  # the question, then the error


def _answer(answer: str, *args: str) -> Result:
    """Run ``plait ARGS`` answering a confirmation question with ``answer``."""
    return CliRunner().invoke(cli, list(args), input=answer + "\n", catch_exceptions=False)


@pytest.fixture
def three(invoke) -> list[int]:
    """Three stored nodes (the profile is made by a first command)."""
    invoke("group", "list")
    return [Int(1).store().pk, Int(2).store().pk, Dict({"k": "v"}).store().pk]


def test_create_add_list_show(invoke, three):
    assert "Created group 'relax' (pk 1)." in invoke("group", "create", "relax", "-d", "batch 7").stdout
    out = invoke("group", "add", "relax", *map(str, three[:2])).stdout
    assert "Added 2 nodes to group 'relax'; it holds 2." in out
    uuid = load_node(three[2]).uuid
    out = invoke("group", "add", "relax", str(three[0]), uuid).stdout  # by uuid too; one already in it
    assert "Added 1 node to group 'relax' (1 already in it); it holds 3." in out

    listing = invoke("group", "list").stdout
    assert re.search(r"^1\s+relax\s+3\s+user@localhost\s+\S+ \S+\s+batch 7", listing, re.M), listing

    shown = invoke("group", "show", "relax").stdout
    assert re.search(r"^description\s+batch 7\s*$", shown, re.M) and re.search(r"^nodes\s+3\s*$", shown, re.M)
    rows = shown.split("Nodes", 1)[1]
    assert re.search(rf"^{three[0]}\s+Int\s+1\s", rows, re.M)
    assert re.search(rf'^{three[2]}\s+Dict\s+{{"k": "v"}}', rows, re.M)
    assert invoke("group", "show", "1", "--raw").stdout.split() == [str(pk) for pk in three]  # by pk


def test_show_limits_the_table_and_says_so(invoke, three):
    invoke("group", "create", "g")
    invoke("group", "add", "g", *map(str, three))
    out = invoke("group", "show", "g", "--limit", "2").stdout
    assert str(three[1]) in out and not re.search(rf"^{three[2]}\s", out, re.M)
    assert "(the first 2 of 3 nodes: --limit 0 lists all, --raw prints every pk)" in out
    assert re.search(rf"^{three[2]}\s", invoke("group", "show", "g", "--limit", "0").stdout, re.M)
    invoke("group", "create", "empty")
    assert "The group is empty: plait group add empty PK..." in invoke("group", "show", "empty").stdout


def test_list_hides_tool_groups_unless_asked_and_filters_by_node(invoke, three):
    invoke("group", "create", "mine")
    invoke("group", "add", "mine", str(three[0]))
    Group("export-1", type_string="tool.export").store()
    out = invoke("group", "list").stdout
    assert "mine" in out and "export-1" not in out
    assert "(1 group of other types: --all-types lists them)" in out
    every = invoke("group", "list", "--all-types").stdout
    assert re.search(r"export-1\s+tool\.export\s+0", every) and re.search(r"mine\s+core\s+1", every)
    assert "export-1" in invoke("group", "list", "-T", "tool.export").stdout
    held = invoke("group", "list", "--node", str(three[0])).stdout
    assert "mine" in held
    assert "No groups holding node" in invoke("group", "list", "--node", str(three[1])).stdout
    assert_one_line_error(
        invoke("group", "list", "-a", "-T", "x", code=2), "give --all-types or --type-string, not both"
    )


def test_list_with_no_group_says_how_to_make_one(invoke):
    assert "No groups. Make one: plait group create LABEL" in invoke("group", "list").stdout


def test_create_errors(invoke):
    invoke("group", "create", "taken")
    assert_one_line_error(
        invoke("group", "create", "taken", code=1), "a group labelled 'taken' exists already (pk 1)"
    )
    assert_one_line_error(invoke("group", "create", "", code=2), "LABEL", "cannot be empty")
    assert_one_line_error(invoke("group", "create", "x" * 300, code=2), "300 characters long")
    assert [row["label"] for row in get_backend().list_groups()] == ["taken"]


def test_unknown_nodes_are_all_named_and_nothing_changes(invoke, three):
    invoke("group", "create", "g")
    line = assert_one_line_error(
        invoke("group", "add", "g", str(three[0]), "777", "abcdef12", code=1),
        "no node with pk or uuid 777, abcdef12 in profile 'default'",
        "nothing was added to group 'g'",
    )
    assert "Traceback" not in line and load_group("g").count() == 0
    invoke("group", "add", "g", str(three[0]))
    assert_one_line_error(
        invoke("group", "remove", "g", str(three[0]), "778", code=1),
        "778",
        "nothing was removed from group 'g'",
    )
    assert load_group("g").count() == 1


def test_unknown_group_is_one_line(invoke, three):
    for args in (
        ("show", "nope"),
        ("add", "nope", "1"),
        ("remove", "nope", "1"),
        ("relabel", "nope", "x"),
        ("copy", "nope", "x"),
        ("delete", "nope", "-f"),
    ):
        assert_one_line_error(
            invoke("group", *args, code=1), "no group with label, pk or uuid 'nope' in profile 'default'"
        )


def test_remove(invoke, three):
    invoke("group", "create", "g")
    invoke("group", "add", "g", *map(str, three))
    out = invoke("group", "remove", "g", str(three[0]), str(three[1])).stdout
    assert "Removed 2 nodes from group 'g'; it holds 1." in out
    out = invoke("group", "remove", "g", str(three[0]), str(three[2])).stdout
    assert "Removed 1 node from group 'g' (1 were not in it); it holds 0." in out
    assert load_node(three[0]).pk == three[0]  # the node stays


def test_relabel(invoke, three):
    invoke("group", "create", "old")
    invoke("group", "create", "other")
    assert "Relabelled group 'old' to 'new'." in invoke("group", "relabel", "old", "new").stdout
    assert load_group("new").pk == 1
    assert_one_line_error(
        invoke("group", "relabel", "new", "other", code=1),
        "cannot relabel group 'new' to 'other': a group labelled 'other' exists already",
    )
    assert_one_line_error(invoke("group", "relabel", "new", " ", code=2), "NEW", "cannot be empty")
    assert load_group("new").pk == 1


def test_copy_to_a_new_group_and_into_a_full_one(invoke, three):
    invoke("group", "create", "src", "-d", "the originals")
    invoke("group", "add", "src", *map(str, three[:2]))
    out = invoke("group", "copy", "src", "dst").stdout
    assert "Copied 2 nodes from group 'src' to 'dst'; it holds 2." in out
    assert load_group("dst").description == "the originals"

    invoke("group", "create", "full")
    invoke("group", "add", "full", str(three[1]), str(three[2]))
    declined = _answer("n", "group", "copy", "src", "full")
    assert "Group 'full' holds 2 nodes already: add the nodes of 'src' to them?" in declined.stderr
    assert_cancelled(declined, "cancelled: nothing was copied to group 'full'")
    assert load_group("full").count() == 2
    accepted = _answer("y", "group", "copy", "src", "full")
    assert (
        accepted.exit_code == 0 and "Copied 1 node from group 'src' to 'full'; it holds 3." in accepted.stdout
    )
    assert "Copied 0 nodes" in invoke("group", "copy", "src", "full", "--force").stdout
    assert_one_line_error(invoke("group", "copy", "src", "src", code=2), "is the source group itself")


def test_delete_asks_and_keeps_the_nodes(invoke, three):
    invoke("group", "create", "g")
    invoke("group", "add", "g", *map(str, three))
    declined = _answer("n", "group", "delete", "g")
    assert "Delete group 'g' (pk 1, 3 nodes; the nodes stay)?" in declined.stderr
    assert_cancelled(declined, "cancelled: group 'g' was not deleted")
    assert load_group("g").count() == 3
    assert "Deleted group 'g'; its 3 nodes stay." in _answer("y", "group", "delete", "g").stdout
    with pytest.raises(NotExistentError):
        load_group("g")
    assert [load_node(pk).pk for pk in three] == three
    invoke("group", "create", "again")
    assert "Deleted group 'again'." in invoke("group", "delete", "again", "-f").stdout


def test_delete_nodes_goes_through_the_provenance_rules(invoke):
    from plait import calcfunction, run_get_node

    invoke("group", "list")

    @calcfunction
    def double(x):
        return x * 2

    x = Int(3).store()
    result, process = run_get_node(double, x=x)
    bystander = Int(9).store()
    invoke("group", "create", "inputs")
    invoke("group", "add", "inputs", str(x.pk))

    declined = _answer("n", "group", "delete", "inputs", "--delete-nodes")
    assert (
        "Delete group 'inputs' (pk 1) and its 1 node, with 2 more nodes that provenance ties to them? "
        "This cannot be undone"
    ) in declined.stderr
    assert_cancelled(declined, "cancelled: group 'inputs' and its nodes were not deleted")
    assert load_group("inputs").count() == 1 and load_node(result.pk).pk == result.pk

    out = invoke("group", "delete", "inputs", "--delete-nodes", "-f").stdout
    assert "Deleted group 'inputs' and 3 nodes." in out
    for pk in (x.pk, process.pk, result.pk):
        with pytest.raises(NotExistentError):
            load_node(pk)
    assert load_node(bystander.pk).pk == bystander.pk
    with pytest.raises(NotExistentError):
        load_group("inputs")


def test_delete_nodes_refused_for_a_running_process_keeps_the_group(invoke):
    invoke("group", "list")
    busy = CalcFunctionNode().store()
    get_backend().insert_process({"node_id": busy.pk, "state": "running", "process_label": "busy"})
    invoke("group", "create", "live")
    invoke("group", "add", "live", str(busy.pk))
    assert_one_line_error(
        invoke("group", "delete", "live", "--delete-nodes", "-f", code=1), f"process {busy.pk} is running"
    )
    assert load_group("live").count() == 1 and load_node(busy.pk).pk == busy.pk


def test_the_commands_on_both_databases(any_profile, invoke):
    """The same commands on SQLite and on PostgreSQL (the bulk statements differ by dialect)."""
    nodes = [Int(i).store().pk for i in range(3)]
    invoke("group", "create", "pg")
    expected = "postgresql" if any_profile == "pg" else "sqlite"
    assert get_backend().database.url.startswith(expected)
    invoke("group", "add", "pg", *map(str, nodes))
    assert "it holds 3" in invoke("group", "copy", "pg", "pg2").stdout
    assert invoke("group", "show", "pg2", "--raw").stdout.split() == [str(pk) for pk in nodes]
    assert "Removed 1 node" in invoke("group", "remove", "pg2", str(nodes[0])).stdout
    assert re.search(r"pg2\s+2\s", invoke("group", "list").stdout)
    invoke("group", "delete", "pg2", "-f")
    assert [row["label"] for row in get_backend().list_groups()] == ["pg"]
