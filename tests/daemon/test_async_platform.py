"""The async platform API against a real daemon: asubmit, watch and wait follow a process run by a
worker in another process, on SQLite and on PostgreSQL + RabbitMQ; run and submit warn on a loop."""

from __future__ import annotations

import sys
import types
import warnings

import pytest

import plait
from plait.orm import Float, Int, ProcessState
from plait.workflows.demo import NewtonSqrtWorkChain


@pytest.fixture(params=["sqlite", "postgresql+rabbitmq"])
def daemon_profile(request, monkeypatch):
    if request.param == "sqlite":
        return "default"
    import plait.storage
    from conftest import RABBITMQ_URL, drop_plait_tables, require_server
    from plait.storage import create_profile

    url = request.getfixturevalue("postgres_url")
    require_server("RabbitMQ", "127.0.0.1", 5672)
    drop_plait_tables(url)
    create_profile("pgrmq", storage_url=url, broker_url=RABBITMQ_URL)
    monkeypatch.setenv("PLAIT_PROFILE", "pgrmq")
    plait.storage.reset()
    return "pgrmq"


async def test_asubmit_watch_and_wait_follow_a_daemon_process(daemon_profile, daemon):
    daemon(workers=1)
    node = await plait.asubmit(NewtonSqrtWorkChain, a=Float(2.0))
    events = [event async for event in plait.watch(node, interval=0.2)]
    assert events[-1].terminal and events[-1].state is ProcessState.FINISHED
    assert events[-1].exit_status == 0
    assert not any(e.terminal for e in events[:-1])
    assert len(set(events)) == len(events)  # each event is a change
    seqs = [e.checkpoint_seq for e in events]
    assert seqs == sorted(seqs) and seqs[-1] > seqs[0]  # the steps were seen as they happened
    finished = await plait.wait(node.pk, timeout=60)
    assert finished.is_finished_ok and abs(finished.outputs.root.value - 2**0.5) < 1e-6
    # a process already terminated: one event, and wait returns at once
    assert [e.state async for e in plait.watch(node.pk)] == [ProcessState.FINISHED]


async def test_wait_times_out_naming_the_process_and_refuses_bad_arguments():
    from plait.calculations.arithmetic import ArithmeticAddCalculation
    from plait.orm import Computer, InstalledCode

    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node = await plait.asubmit(ArithmeticAddCalculation, code=code, x=Int(1), y=Int(2))
    assert node.process_state is ProcessState.CREATED  # no daemon: it stays created
    with pytest.raises(TimeoutError, match=rf"process {node.pk} had not terminated .*it is created"):
        await plait.wait(node, timeout=0.1)
    with pytest.raises(ValueError, match="no process with pk 999999"):
        await plait.wait(999999)
    with pytest.raises(ValueError, match="timeout"):
        await plait.wait(node, timeout=-1)
    with pytest.raises(ValueError, match="interval"):
        await anext(plait.watch(node, interval=0))
    with pytest.raises(TypeError, match="process pk or a process node"):
        await anext(plait.watch("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not stored"):
        await plait.wait(plait.orm.CalcJobNode())


def _submit_twice_from_one_line(code) -> None:
    from plait.calculations.arithmetic import ArithmeticAddCalculation

    for i in range(2):
        plait.submit(ArithmeticAddCalculation, code=code, x=Int(i), y=Int(1))  # the warned line


async def test_blocking_submit_and_run_on_a_running_loop_warn_once_per_call_site(monkeypatch):
    from plait.orm import Computer, InstalledCode

    code = InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        _submit_twice_from_one_line(code)
        ours = [w for w in caught if "blocks this thread's running event loop" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert ours[0].filename == __file__ and "await plait.asubmit(...)" in str(ours[0].message)
    assert "the warned line" in open(__file__).read().splitlines()[ours[0].lineno - 1]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        plait.run(NewtonSqrtWorkChain, a=Float(4.0))
        ours = [w for w in caught if "blocks this thread's running event loop" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__ and "await plait.arun(...)" in str(ours[0].message)

    # a notebook cell: the IPython kernel's loop runs there on purpose, so no warning
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: types.SimpleNamespace(kernel=object())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plait.run(NewtonSqrtWorkChain, a=Float(9.0))
    assert not [w for w in caught if "event loop" in str(w.message)]


def test_a_plain_script_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        plait.run(NewtonSqrtWorkChain, a=Float(2.0))
