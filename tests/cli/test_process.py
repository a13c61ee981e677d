"""``plait process list|show|report``."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

import plait.storage
from plait import calcfunction, submit, workfunction
from plait.orm import Int, load_node
from plait.workflows.demo import NewtonSqrtWorkChain

from .helpers import assert_one_line_error


@calcfunction
def explode(x):
    raise ValueError(f"cannot handle {x.value}")


@workfunction
def wrapper(x):
    return explode(x)


def _fields(stdout: str) -> dict[str, str]:
    """The ``key  value`` lines of a show command."""
    fields = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2 and not line.startswith(" "):
            fields.setdefault(parts[0], parts[1])
    return fields


def _rows(stdout: str) -> dict[int, str]:
    """Table rows by pk (first column)."""
    rows = {}
    for line in stdout.splitlines():
        first = line.split(" ", 1)[0]
        if first.isdigit():
            rows[int(first)] = line
    return rows


def test_list_shows_only_active_processes_by_default(invoke, demo_pk):
    result = invoke("process", "list")
    assert _rows(result.stdout) == {}
    assert "Total: 0 active processes" in result.stdout
    assert "use -a" in result.stdout

    node = submit(NewtonSqrtWorkChain, a=4.0)  # stored as created, for a daemon to run
    result = invoke("process", "list")
    rows = _rows(result.stdout)
    assert list(rows) == [node.pk]
    assert "NewtonSqrtWorkChain" in rows[node.pk] and "created" in rows[node.pk]
    assert "0s ago" in rows[node.pk] or "1s ago" in rows[node.pk]
    assert "Total: 1 active process (1 created)" in result.stdout


def test_list_shows_state_details_and_holder(invoke, demo_pk):
    node = submit(NewtonSqrtWorkChain, a=4.0, metadata={"label": "four"})
    backend = plait.storage.get_backend()
    backend.update_process(
        node.pk,
        state="waiting",
        paused=True,
        status="waiting for 2 processes: 5, 6",
        lease_owner="host1:4242:worker:abcd",
        lease_expires=time.time() + 60,
    )
    line = _rows(invoke("process", "list").stdout)[node.pk]
    assert "NewtonSqrtWorkChain (four)" in line
    assert "waiting, paused: waiting for 2 processes: 5, 6" in line
    assert "host1:4242:worker:abcd" in line and "expired" not in line

    backend.update_process(node.pk, lease_expires=time.time() - 5)
    line = _rows(invoke("process", "list").stdout)[node.pk]
    assert "host1:4242:worker:abcd (expired)" in line


def test_list_all_states_limit_and_past_days(invoke, demo_pk):
    rows = _rows(invoke("process", "list", "-a").stdout)
    assert len(rows) == 11 and demo_pk in rows
    assert all("finished [0]" in line for line in rows.values())
    assert list(rows) == sorted(rows)  # oldest first

    limited = invoke("process", "list", "-a", "--limit", "3")
    assert list(_rows(limited.stdout)) == sorted(rows)[-3:]
    assert "the 3 most recent" in limited.stdout

    with pytest.raises(ValueError):
        wrapper(Int(3))
    excepted = _rows(invoke("process", "list", "-S", "excepted").stdout)
    assert len(excepted) == 2 and all("excepted" in line for line in excepted.values())
    both = _rows(invoke("process", "list", "-S", "excepted", "--state", "FINISHED").stdout)
    assert len(both) == 13

    backend = plait.storage.get_backend()
    backend.update_node(demo_pk, ctime=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    recent = _rows(invoke("process", "list", "-a", "-p", "1").stdout)
    assert demo_pk not in recent and len(recent) == 12
    assert demo_pk in _rows(invoke("process", "list", "-a", "--past-days", "11").stdout)


def test_list_errors(invoke):
    assert_one_line_error(
        invoke("process", "list", "-S", "sleeping", code=None), "'sleeping' is not one of", code=2
    )
    assert_one_line_error(invoke("process", "list", "-p", "0", code=None), "--past-days", code=2)
    assert_one_line_error(invoke("process", "list", "--limit", "x", code=None), "--limit", code=2)


def _finished(label: str, exit_status: int) -> int:
    """A finished calcfunction node with that exit status (stored as the engine leaves one)."""
    from plait.orm import CalcFunctionNode

    node = CalcFunctionNode()
    node.store()
    plait.storage.get_backend().insert_process(
        {"node_id": node.pk, "state": "finished", "process_label": label, "exit_status": exit_status}
    )
    return node.pk


def test_list_by_process_label_exit_status_and_failed(invoke, demo_pk):
    failed = _finished("relax_cell", 410)
    other = _finished("relax_ions", 0)
    residuals = _rows(invoke("process", "list", "-a", "--process-label", "residual").stdout)
    assert len(residuals) == 5 and all("residual" in line for line in residuals.values())
    relax = _rows(invoke("process", "list", "-a", "-L", "relax%").stdout)
    assert list(relax) == [failed, other]
    assert list(_rows(invoke("process", "list", "-L", "relax%").stdout)) == []  # still active ones only

    out = invoke("process", "list", "--failed").stdout  # finished ones, without -a
    assert list(_rows(out)) == [failed] and "finished [410]" in out
    assert "Total: 1 failed process (1 finished)" in out
    assert list(_rows(invoke("process", "list", "-X", "-L", "relax_ions").stdout)) == []
    assert list(_rows(invoke("process", "list", "--exit-status", "410").stdout)) == [failed]
    zero = _rows(invoke("process", "list", "-E", "0", "-S", "finished").stdout)
    assert len(zero) == 12 and failed not in zero and other in zero


def test_list_by_group(invoke, demo_pk):
    from plait.orm import Group, load_node

    chain = load_node(demo_pk)
    group = Group("sqrt runs").store()
    group.add_nodes([chain, chain.called[0], load_node(1)])  # node 1 is data: not listed
    out = invoke("process", "list", "-a", "--group", "sqrt runs").stdout
    assert list(_rows(out)) == [demo_pk, chain.called[0].pk]
    assert "Total: 2 processes in group 'sqrt runs' (2 finished)" in out
    by_pk = invoke("process", "list", "-a", "-G", str(group.pk), "-L", "NewtonSqrtWorkChain").stdout
    assert list(_rows(by_pk)) == [demo_pk]
    assert list(_rows(invoke("process", "list", "-G", group.uuid[:8]).stdout)) == []  # none is active


def test_list_order_and_limit(invoke, demo_pk):
    by_label = _rows(invoke("process", "list", "-a", "--order-by", "process_label").stdout)
    labels = [line.split()[3] for line in by_label.values()]
    assert labels == sorted(labels) and labels[0] == "NewtonSqrtWorkChain"  # code point order: capitals first
    newest_first = invoke("process", "list", "-a", "-O", "ctime", "--order-direction", "desc").stdout
    assert list(_rows(newest_first)) == sorted(by_label, reverse=True)
    # --limit keeps the most recent N, shown in the order asked for
    limited = _rows(
        invoke("process", "list", "-a", "--limit", "4", "-O", "process_label", "-D", "desc").stdout
    )
    assert set(limited) == set(sorted(by_label)[-4:])
    limited_labels = [line.split()[3] for line in limited.values()]
    assert limited_labels == sorted(limited_labels, reverse=True)


def test_list_option_errors(invoke, demo_pk):
    assert_one_line_error(
        invoke("process", "list", "--failed", "-S", "killed", code=None),
        "--failed lists finished processes",
        code=2,
    )
    assert_one_line_error(
        invoke("process", "list", "--failed", "--exit-status", "0", code=None),
        "cannot go with --exit-status 0",
        code=2,
    )
    assert_one_line_error(
        invoke("process", "list", "-E", "3", "--paused", code=None), "--exit-status lists finished", code=2
    )
    assert_one_line_error(
        invoke("process", "list", "--group", "nowhere", code=None), "'--group': no group with label", code=2
    )
    assert_one_line_error(invoke("process", "list", "-E", "x", code=None), "--exit-status", code=2)
    assert_one_line_error(invoke("process", "list", "-O", "colour", code=None), "--order-by", code=2)


def test_the_listing_is_one_query(invoke, demo_pk):
    """However many processes there are, listing them reads the database once."""
    from sqlalchemy import event

    engine = plait.storage.get_backend().database.engine
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        invoke("process", "list", "-a", "-L", "resid%", "-O", "ctime")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == 1, seen


def test_list_on_both_databases(any_profile, invoke):
    failed = _finished("relax", 7)
    _finished("relax", 0)
    out = invoke("process", "list", "-X", "-L", "rel%", "-O", "process_label").stdout
    assert list(_rows(out)) == [failed] and "finished [7]" in out


def test_show_a_work_chain(invoke, demo_pk):
    chain = load_node(demo_pk)
    out = invoke("process", "show", str(demo_pk)).stdout
    assert "WorkChainNode (NewtonSqrtWorkChain)" in out
    assert chain.uuid in out
    fields = _fields(out)
    assert fields["state"] == "finished [0]" and fields["exit status"] == "0"
    assert "plait.workflows.demo:NewtonSqrtWorkChain" in out
    assert "Inputs" in out and "max_iterations" in out and "tolerance" in out
    assert "Outputs" in out and "root" in out and "residual" in out
    called = _rows(out.split("Called", 1)[1].split("Report", 1)[0])
    assert list(called) == [child.pk for child in chain.called]
    assert "step_iteration_5" in called[chain.called[-1].pk]
    assert "converged after 5 iterations" in out
    assert fields["caller"] == "-"


def test_show_a_called_process_names_its_caller(invoke, demo_pk):
    child = load_node(demo_pk).called[0]
    out = invoke("process", "show", str(child.uuid)).stdout
    assert _fields(out)["caller"] == f"{demo_pk} NewtonSqrtWorkChain  finished [0]"
    assert "CalcFunctionNode (residual)" in out


def test_show_an_excepted_process(invoke):
    with pytest.raises(ValueError):
        wrapper(Int(7))
    backend = plait.storage.get_backend()
    rows = {row["process_label"]: row["id"] for row in backend.list_processes()}
    out = invoke("process", "show", str(rows["wrapper"])).stdout
    assert "excepted" in out
    assert _fields(out)["exception"] == "ValueError: cannot handle 7"
    assert f"plait process report {rows['wrapper']}" in out
    assert "Traceback" not in out


def test_show_errors(invoke, demo_pk):
    assert_one_line_error(invoke("process", "show", "424242", code=None), "no node with pk 424242")
    assert_one_line_error(invoke("process", "show", "1", code=None), "node 1 is a Float, not a process")
    assert_one_line_error(invoke("process", "show", code=None), "Missing argument 'PK'", code=2)


def test_report_of_a_work_chain(invoke, demo_pk):
    out = invoke("process", "report", str(demo_pk)).stdout
    lines = out.splitlines()
    assert f"REPORT  [{demo_pk}|NewtonSqrtWorkChain|setup] computing sqrt(2.0)" in lines[0]
    assert "[" + str(demo_pk) + "|NewtonSqrtWorkChain|finalize] converged after 5 iterations" in lines[-1]
    assert len(lines) == 7

    quiet = invoke("process", "report", str(demo_pk), "--levelname", "WARNING").stdout
    assert "No log records of level WARNING or above" in quiet


def test_report_of_an_excepted_tree(invoke):
    with pytest.raises(ValueError):
        wrapper(Int(5))
    backend = plait.storage.get_backend()
    rows = {row["process_label"]: row["id"] for row in backend.list_processes()}
    out = invoke("process", "report", str(rows["wrapper"])).stdout
    lines = out.splitlines()
    child = [line for line in lines if f"[{rows['explode']}|explode]" in line]
    parent = [line for line in lines if f"[{rows['wrapper']}|wrapper]" in line]
    assert child and child[0].startswith("  ") and "ERROR" in child[0]  # indented: depth 1
    assert parent and not parent[0].startswith(" ")
    assert lines.index(child[0]) < lines.index(parent[0])  # time order
    assert f"Traceback of process {rows['wrapper']} (wrapper), excepted:" in out
    assert f"Traceback of process {rows['explode']} (explode), excepted:" in out
    assert 'raise ValueError(f"cannot handle {x.value}")' in out
    assert out.rstrip().endswith("ValueError: cannot handle 5")

    only_errors = invoke("process", "report", str(rows["wrapper"]), "-l", "error").stdout
    assert "excepted: ValueError: cannot handle 5" in only_errors


def test_report_errors(invoke):
    assert_one_line_error(invoke("process", "report", "9999", code=None), "no node with pk 9999")
    assert_one_line_error(
        invoke("process", "report", "1", "-l", "LOUD", code=None), "'LOUD' is not one of", code=2
    )
