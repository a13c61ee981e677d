"""``plait node list [-t TYPE]... [-f EXPR]...``: data nodes, by type and by filter expressions."""

from __future__ import annotations

import datetime as dt

import pytest

import plait.storage
from plait.orm import CalcFunctionNode, Dict, Float, Int, List, Str

from .helpers import assert_one_line_error


def _rows(stdout: str) -> dict[int, str]:
    """Table rows by pk (first column)."""
    rows = {}
    for line in stdout.splitlines():
        first = line.split(" ", 1)[0]
        if first.isdigit():
            rows[int(first)] = line
    return rows


@pytest.fixture
def stored(invoke) -> dict[str, int]:
    """A few data nodes and one process node; name -> pk."""
    invoke("node", "list")  # makes the profile
    nodes = {
        "one": Int(1, label="one"),
        "two": Int(2, label="two"),
        "half": Float(2.5, label="half"),
        "hi": Str("hi there", label="greeting"),
        "dict": Dict({"a": {"b": 3}, "tags": ["x", "y"]}, label="params"),
        "list": List([1, 2, 3]),
    }
    pks = {name: node.store().pk for name, node in nodes.items()}
    nodes["two"].set_extra("keep", True)
    calc = CalcFunctionNode(label="calc")
    calc.store()
    plait.storage.get_backend().insert_process(
        {"node_id": calc.pk, "state": "finished", "process_label": "calc"}
    )
    pks["calc"] = calc.pk
    return pks  # type: ignore[return-value]


def test_lists_data_nodes_oldest_first(invoke, stored):
    out = invoke("node", "list").stdout
    rows = _rows(out)
    assert list(rows) == [stored[n] for n in ("one", "two", "half", "hi", "dict", "list")]  # not the process
    assert "Int" in rows[stored["one"]] and "one" in rows[stored["one"]]
    assert "'hi there'" in rows[stored["hi"]]
    assert '{"a": {"b": 3}, "tags": ["x", "y"]}' in rows[stored["dict"]]
    assert "Total: 6 data nodes" in out


def test_types(invoke, stored):
    ints = [stored["one"], stored["two"]]
    assert list(_rows(invoke("node", "list", "-t", "Int").stdout)) == ints
    assert list(_rows(invoke("node", "list", "--type", "int").stdout)) == ints
    assert list(_rows(invoke("node", "list", "-t", "data.core.int").stdout)) == ints
    assert list(_rows(invoke("node", "list", "-t", "core.int").stdout)) == ints
    both = invoke("node", "list", "-t", "Int", "-t", "Float").stdout
    assert list(_rows(both)) == [*ints, stored["half"]] and "Total: 3 Int or Float nodes" in both
    assert (
        len(_rows(invoke("node", "list", "-t", "BaseType").stdout)) == 4
    )  # a base class finds its subclasses
    assert list(_rows(invoke("node", "list", "-t", "Data").stdout)) == list(
        _rows(invoke("node", "list").stdout)
    )


def test_filters(invoke, stored):
    def listed(*expressions: str, types: tuple[str, ...] = ()) -> list[int]:
        args = [arg for expression in expressions for arg in ("-f", expression)]
        args += [arg for name in types for arg in ("-t", name)]
        return list(_rows(invoke("node", "list", *args).stdout))

    assert listed("attributes.value>1") == [stored["two"], stored["half"]]
    assert listed("attributes.value >= 2", "attributes.value<2.5") == [stored["two"]]
    assert listed("label=one") == [stored["one"]]
    assert listed("label == one") == [stored["one"]]
    assert listed("label!=one", types=("Int",)) == [stored["two"]]
    assert listed("label like gr%") == [stored["hi"]]
    assert listed("label ilike GREET%") == [stored["hi"]]
    assert listed("label !like %e%", types=("Int",)) == [stored["two"]]
    assert listed("attributes.value in 1,2.5") == [stored["one"], stored["half"]]
    assert listed("attributes.value !in [1, 2]", types=("Int",)) == []
    assert listed("attributes.a.b=3") == [stored["dict"]]
    assert listed('attributes.a.b="3"') == []  # "3" is a string, 3 a number
    assert listed("attributes.tags contains x") == [stored["dict"]]
    assert listed("attributes.list of_length 3") == [stored["list"]]
    assert listed("attributes.list longer 5") == []
    assert listed("attributes has_key tags") == [stored["dict"]]
    assert listed("extras.keep=true") == [stored["two"]]
    assert listed("extras has_key keep") == [stored["two"]]
    assert listed("attributes.value of_type string") == [stored["hi"]]
    assert listed(f"id>{stored['hi']}") == [stored["dict"], stored["list"]]
    assert listed("ctime>2000-01-01T00:00:00+00:00", "label=one") == [stored["one"]]
    assert listed(f"ctime<{dt.datetime(2000, 1, 1).isoformat()}") == []
    assert listed("label=calc") == []  # a process is no data node


def test_limit_and_past_days(invoke, stored):
    out = invoke("node", "list", "--limit", "2").stdout
    assert list(_rows(out)) == [stored["dict"], stored["list"]] and "the 2 most recent" in out
    assert len(_rows(invoke("node", "list", "-p", "1").stdout)) == 6
    backend = plait.storage.get_backend()
    backend.update_node(stored["one"], ctime=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    assert stored["one"] not in _rows(invoke("node", "list", "--past-days", "2").stdout)


def test_errors(invoke, stored):
    def refused(*args: str, fragment: str) -> None:
        assert_one_line_error(invoke("node", "list", *args, code=None), fragment, code=2)

    refused("-f", "attributes.value", fragment="does not read as FIELD OPERATOR VALUE")
    refused("-f", "lable=one", fragment="unknown field 'lable'")
    refused("-f", "process_state=finished", fragment="unknown field 'process_state'")
    refused("-f", "attributes.value>>3", fragment="begins with an operator character")
    refused("-f", "attributes.value ~ 3", fragment="does not read")
    refused("-f", "attributes.value near 3", fragment="unknown operator 'near'")
    refused("-f", "id=abc", fragment="'id' holds an integer, not 'abc'")
    refused("-f", "ctime>yesterday", fragment="an ISO date and time")
    refused("-f", "attributes.list of_length many", fragment="takes a length")
    refused("-f", "attributes.x in [1,", fragment="not a JSON list")
    refused("-f", "attributes.x in 1,a", fragment="mix types")
    refused("-f", "label has_key x", fragment="applies to JSON values")
    refused("-t", "Foo", fragment="'--type': no data type 'Foo'")
    refused("-t", "CalcJobNode", fragment="is a kind of process")
    refused("-t", "data.core.nothing", fragment="no data type")
    refused("--limit", "0", fragment="--limit")


def test_on_both_databases(any_profile, invoke):
    one, two = Int(1, label="a").store(), Dict({"k": {"v": [1, 2]}}).store()
    assert list(_rows(invoke("node", "list", "-f", "attributes.k.v contains 2").stdout)) == [two.pk]
    assert list(_rows(invoke("node", "list", "-f", "label like a", "-t", "Int").stdout)) == [one.pk]
    assert list(_rows(invoke("node", "list", "-f", "label like A").stdout)) == []  # like is case-sensitive
