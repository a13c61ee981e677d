"""``plait node delete``: the set listed with counts, confirmation, --dry-run, --force, clear refusals."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

import plait.storage
from plait.cli.main import cli
from plait.orm import CalcFunctionNode, Int, delete_nodes, load_node
from plait.orm.errors import NotExistentError

from .helpers import assert_one_line_error


def _answer(args: list[str], answer: str | None):
    """Run ``plait node delete ARGS`` with ``answer`` on stdin (None: stdin closed)."""
    return CliRunner().invoke(cli, ["node", "delete", *args], input=answer, catch_exceptions=False)


def _exists(pk: int) -> bool:
    try:
        load_node(pk)
    except NotExistentError:
        return False
    return True


def _calculation(state: str = "finished") -> tuple[int, int, int]:
    """``(input, calculation, output)`` pks: a calcfunction-like node with one input and one output."""
    backend = plait.storage.get_backend()
    x, calc, result = Int(1).store(), CalcFunctionNode().store(), Int(2).store()
    backend.insert_process({"node_id": calc.pk, "state": state, "process_label": "double"})
    backend.insert_links(
        [
            {"input_id": x.pk, "output_id": calc.pk, "link_type": "input_calc", "label": "x"},
            {"input_id": calc.pk, "output_id": result.pk, "link_type": "create", "label": "result"},
        ]
    )
    return x.pk, calc.pk, result.pk  # type: ignore[return-value]


def test_dry_run_lists_the_whole_set_by_type_and_deletes_nothing(invoke, demo_pk):
    backend = plait.storage.get_backend()
    total = backend.count_nodes()
    first_input = load_node(demo_pk).inputs.a.pk
    expected, _ = delete_nodes([first_input])
    processes = {row["id"] for row in backend.list_processes()} & expected
    floats = len(expected) - len(processes)
    out = invoke("node", "delete", str(first_input), "--dry-run").stdout
    assert re.search(
        rf"^{len(expected)} nodes will be deleted \({floats} data, {len(processes)} processes\): "
        rf"CalcFunctionNode {len(processes) - 1}, Float {floats}, WorkChainNode 1$",
        out,
        re.M,
    )
    assert re.search(rf"^{demo_pk}\s+WorkChainNode\s+NewtonSqrtWorkChain\s+finished \[0\]", out, re.M)
    assert re.search(rf"^{first_input}\s+Float\s+-\s*$", out, re.M)
    listed = {int(m[1]) for m in re.finditer(r"^(\d+)\s+(Float|CalcFunctionNode|WorkChainNode)\b", out, re.M)}
    assert listed == expected
    assert "Dry run: nothing was deleted." in out and "Delete these" not in out
    assert backend.count_nodes() == total


def test_asks_before_deleting(plait_home):
    x, calc, result = _calculation()
    declined = _answer([str(calc)], "n\n")
    assert declined.exit_code == 1 and "Delete these 2 nodes? [y/N]" in declined.stdout
    assert "Error: not confirmed: nothing was deleted" in declined.stderr
    closed = _answer([str(calc)], None)
    assert_one_line_error(closed, "no answer to the confirmation", "--force")
    assert _exists(calc) and _exists(result)

    accepted = _answer([str(calc)], "y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Deleted 2 nodes." in accepted.stdout and "plait storage maintain" in accepted.stdout
    assert not _exists(calc) and not _exists(result) and _exists(x)


def test_force_deletes_without_asking_and_rules_can_be_switched(invoke):
    x, calc, result = _calculation()
    out = invoke("node", "delete", str(calc), "--force", "--no-create-forward").stdout
    assert "1 node will be deleted (0 data, 1 process): CalcFunctionNode 1" in out
    assert "Delete these" not in out and "Deleted 1 node." in out
    assert _exists(x) and _exists(result) and not _exists(calc)
    assert load_node(result).creator is None


def test_by_uuid_and_several_at_once(invoke):
    a, b = Int(1).store(), Int(2).store()
    # a prefix with its dash: eight hex digits are all decimal one time in 40, and then a pk
    out = invoke("node", "delete", a.uuid[:13], str(b.pk), "-f").stdout
    assert "2 nodes will be deleted (2 data, 0 processes): Int 2" in out
    assert not _exists(a.pk) and not _exists(b.pk)


def test_refusals_are_one_line_and_delete_nothing(invoke):
    x, running, _ = _calculation(state="running")
    assert_one_line_error(
        invoke("node", "delete", str(x), "-f", code=1),
        f"process {running} is running",
        "only terminated processes can be deleted",
    )
    assert_one_line_error(
        invoke("node", "delete", str(x), "--dry-run", code=1), f"process {running} is running"
    )
    assert _exists(x) and _exists(running)
    assert_one_line_error(invoke("node", "delete", str(x), "987654", "-f", code=1), "no node with pk 987654")
    assert_one_line_error(
        invoke("node", "delete", "zzzz-not-a-uuid", code=1), "no node with uuid 'zzzz-not-a-uuid'"
    )
    assert_one_line_error(invoke("node", "delete", code=2), "Missing argument 'PK_OR_UUID...'")
    assert _exists(x)


def test_a_long_listing_is_cut_but_counted(invoke):
    from plait.cli.node import DELETE_LISTING_LIMIT

    pks = [Int(i).store().pk for i in range(DELETE_LISTING_LIMIT + 5)]
    out = invoke("node", "delete", *map(str, pks), "-n").stdout
    assert f"{len(pks)} nodes will be deleted ({len(pks)} data, 0 processes): Int {len(pks)}" in out
    assert "... and 5 more, not listed (counted above)" in out
    assert len(re.findall(r"^\d+\s+Int\b", out, re.M)) == DELETE_LISTING_LIMIT


@pytest.mark.usefixtures("any_profile")
def test_on_both_databases(invoke):
    x, calc, result = _calculation()
    out = invoke("node", "delete", str(x), "-f").stdout
    assert "3 nodes will be deleted (2 data, 1 process): CalcFunctionNode 1, Int 2" in out
    assert not any(_exists(pk) for pk in (x, calc, result))
