"""Caching: an identical calculation reuses the outputs of the first run instead of running again."""

from __future__ import annotations

import asyncio
import threading

import pytest

import plait
from plait import calcfunction, enable_caching, run_get_node, workfunction
from plait.calculations.arithmetic import ArithmeticAddCalculation
from plait.calculations.shell import run_shell_job
from plait.engine import caching
from plait.engine.caching import CachingConfig, get_use_cache
from plait.orm import Computer, InstalledCode, Int, NotExistentError, ProcessState, RemoteData, load_node
from plait.storage import get_backend, get_profile

CALLS: list[int] = []


@calcfunction
def add(x, y):
    CALLS.append(1)
    return x + y


@calcfunction
def negative(x):
    CALLS.append(1)
    if x.value < 0:
        return plait.ExitCode(400, "negative")
    return Int(-x.value)


@workfunction
def wf(x):
    return {"out": add(x, Int(1))}


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


@pytest.fixture
def bash() -> InstalledCode:
    return InstalledCode(
        computer=Computer.get("localhost"), filepath_executable="/bin/bash", label="bash"
    ).store()


def _set_options(**section):
    get_profile().options["caching"] = section


# -- calcfunctions -------------------------------------------------------------------------------------


def test_calcfunction_cached_only_when_enabled(any_profile):
    r1, n1 = add.run_get_node(Int(1), Int(2))
    _, n2 = add.run_get_node(Int(1), Int(2))  # caching is off by default
    assert len(CALLS) == 2 and n2.cached_from is None
    with enable_caching():
        r3, n3 = add.run_get_node(Int(1), Int(2))
    assert len(CALLS) == 2  # not run
    assert n3.is_finished_ok and n3.process_state is ProcessState.FINISHED
    assert n3.cached_from == n1 and n3.is_created_from_cache
    assert r3.value == 3 and r3.pk != r1.pk and r3.node_hash == r1.node_hash
    assert r3.creator == n3  # a clone created by the new node, not the source's output
    assert n3.node_hash == n1.node_hash
    with enable_caching():
        _, n4 = add.run_get_node(Int(1), Int(3))  # other inputs: runs
    assert len(CALLS) == 3 and n4.cached_from is None
    assert all(load_node(n.pk).is_terminated for n in (n1, n2, n3, n4))


def test_failed_and_invalid_sources_never_serve():
    _, failed = negative.run_get_node(Int(-1))
    assert failed.is_failed and not failed.is_valid_cache
    with enable_caching():
        _, again = negative.run_get_node(Int(-1))
    assert len(CALLS) == 2 and again.cached_from is None  # a failed run never serves
    _, ok = negative.run_get_node(Int(5))
    ok.is_valid_cache = False
    assert not load_node(ok.pk).is_valid_cache
    with enable_caching():
        _, rerun = negative.run_get_node(Int(5))
    assert len(CALLS) == 4 and rerun.cached_from is None
    assert rerun.is_valid_cache
    with enable_caching():
        _, cached = negative.run_get_node(Int(5))
    assert len(CALLS) == 4 and cached.cached_from == rerun  # the valid one serves
    ok.is_valid_cache = True
    assert load_node(ok.pk).is_valid_cache
    with pytest.raises(TypeError, match="True or False"):
        ok.is_valid_cache = "no"  # type: ignore[assignment]


def test_disable_cache_per_launch_and_workflows_never_cached():
    add.run_get_node(Int(1), Int(2))
    with enable_caching():
        _, node = add.run_get_node(Int(1), Int(2), metadata={"disable_cache": True})
        assert node.cached_from is None and len(CALLS) == 2
        _, w1 = wf.run_get_node(Int(1))
        _, w2 = wf.run_get_node(Int(1))
    assert w1.cached_from is None and w2.cached_from is None  # the workfunction ran both times
    assert [c.cached_from is not None for c in w2.called] == [True]  # its calcfunction was cached


def test_plugin_version_change_invalidates(monkeypatch):
    add.run_get_node(Int(1), Int(2))
    monkeypatch.setattr(caching, "plugin_version", lambda cls: "myplugin==2.0")
    with enable_caching():
        _, node = add.run_get_node(Int(1), Int(2))
    assert node.cached_from is None and len(CALLS) == 2


def test_a_class_of_the_running_script_is_versioned_without_scanning_distributions(monkeypatch):
    """No distribution installs ``__main__``: its classes skip the scan of every installed one (a
    first launch's cost), and a class of an installed package is still found by the scan."""
    seen: list[str] = []

    def scan():
        seen.append("scan")
        return {"plait": ["plait"]}

    monkeypatch.setattr(caching, "_packages_distributions", scan)
    caching._distribution_version.cache_clear()
    try:
        assert caching._distribution_version("__main__.add") is None
        assert seen == []
        assert caching._distribution_version(
            "plait.nowhere:Thing",
        ).startswith("plait==")
        assert seen == ["scan"]
    finally:
        caching._distribution_version.cache_clear()


# -- configuration ------------------------------------------------------------------------------------


def test_profile_options_and_globs():
    ident = ("core.arithmetic.add", "mypackage.calculations:AddCalculation")
    assert CachingConfig.from_options({}).decide(ident) is False
    assert CachingConfig.from_options({"caching": {"default_enabled": True}}).decide(ident) is True
    config = CachingConfig.from_options(
        {
            "caching": {
                "default_enabled": False,
                "enabled_for": ["core.*"],
                "disabled_for": ["core.arithmetic.*"],
            }
        }
    )
    assert config.decide(ident) is False  # the longer glob is more specific
    assert config.decide(("core.shell",)) is True
    exact = CachingConfig.from_options(
        {"caching.enabled_for": ["core.arithmetic.add"], "caching.disabled_for": ["*"]}
    )
    assert exact.decide(ident) is True and exact.decide(("x:y",)) is False
    tie = CachingConfig.from_options({"caching": {"enabled_for": ["core.*"], "disabled_for": ["core.*"]}})
    with pytest.raises(ValueError, match="equally specific"):
        tie.decide(ident)
    with pytest.raises(ValueError, match="default_enabled"):
        CachingConfig.from_options({"caching": {"default_enabled": "yes"}})
    with pytest.raises(ValueError, match="enabled_for"):
        CachingConfig.from_options({"caching": {"enabled_for": [1]}})
    with pytest.raises(ValueError, match="unknown caching option"):
        CachingConfig.from_options({"caching": {"enable": True}})


def test_profile_option_turns_caching_on_for_a_class_path():
    add.run_get_node(Int(1), Int(2))
    _set_options(enabled_for=[f"{__name__}:a*"])
    _, node = add.run_get_node(Int(1), Int(2))
    assert node.cached_from is not None
    _set_options(enabled_for=[f"{__name__}:*"], disabled_for=[f"{__name__}:add"])
    _, node = add.run_get_node(Int(1), Int(2))
    assert node.cached_from is None


def test_context_managers_nest_and_stay_in_their_thread_and_task():
    cls = add.process_class
    assert get_use_cache(cls) is False
    with enable_caching():
        assert get_use_cache(cls) is True
        with plait.disable_caching(identifier=f"{__name__}:*"):
            assert get_use_cache(cls) is False
            with enable_caching(identifier=f"{__name__}:add"):
                assert get_use_cache(cls) is True
            assert get_use_cache(cls) is False
        assert get_use_cache(cls) is True
        assert get_use_cache(cls, {"disable_cache": True}) is False
        seen: list[bool] = []
        thread = threading.Thread(target=lambda: seen.append(get_use_cache(cls)))
        thread.start()
        thread.join()
        assert seen == [False]  # another thread does not see this block
    assert get_use_cache(cls) is False

    async def main():
        async def in_block():
            with enable_caching():
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                return get_use_cache(cls)

        async def outside():
            await asyncio.sleep(0)
            return get_use_cache(cls)

        return await asyncio.gather(in_block(), outside())

    assert asyncio.run(main()) == [True, False]
    with pytest.raises(ValueError, match="identifier"):
        with enable_caching(identifier=""):
            pass


# -- calculation jobs on localhost ---------------------------------------------------------------------


def test_arithmetic_add_cached_and_remote_cleaned(any_profile, bash):
    out1, n1 = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(3), y=Int(4))
    assert n1.is_finished_ok and n1.get_attribute("job_id") is not None
    remote = out1["remote_folder"]
    remote.set_extra(RemoteData.KEY_EXTRA_CLEANED, True)  # as plait calcjob cleanworkdir records it
    with enable_caching(identifier="arithmetic.add"):
        out2, n2 = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(3), y=Int(4))
        out3, n3 = run_get_node(
            ArithmeticAddCalculation, code=bash, x=Int(3), y=Int(4), metadata={"disable_cache": True}
        )
    assert n2.cached_from == n1 and n2.is_finished_ok
    assert n2.get_attribute("job_id") is None  # no job ran
    assert out2["sum"].value == 7 and out2["sum"].pk != out1["sum"].pk
    assert out2["remote_folder"].is_cleaned  # the source's folder is gone: the clone says so
    assert out2["retrieved"].list_object_names() == out1["retrieved"].list_object_names()
    assert n3.cached_from is None and not out3["remote_folder"].is_cleaned  # a real run
    # the scheduler options that do not change results do not change the hash
    with enable_caching():
        _, n4 = run_get_node(
            ArithmeticAddCalculation,
            code=bash,
            x=Int(3),
            y=Int(4),
            metadata={"options": {"max_wallclock_seconds": 600}},
        )
    assert n4.cached_from is not None


def test_shell_job_cached():
    _, n1 = run_shell_job("echo", arguments=["hello"])
    with enable_caching():
        outputs, n2 = run_shell_job("echo", arguments=["hello"])
    assert n2.cached_from == n1 and outputs["stdout"].get_content() == "hello\n"


def test_submitted_job_is_cached_by_whoever_runs_it(bash):
    """A process given to the daemon is decided where it runs, and ends through the lifecycle."""
    _, first = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(1), y=Int(1))
    node = plait.submit(ArithmeticAddCalculation, code=bash, x=Int(1), y=Int(1))
    assert node.process_state is ProcessState.CREATED
    with enable_caching():
        outputs, resumed = plait.resume(node.pk)
    assert resumed.pk == node.pk and resumed.cached_from == first
    assert outputs["sum"].value == 2
    reloaded = load_node(node.pk)
    assert reloaded.is_finished_ok and reloaded.get_attribute(caching.CACHED_FROM_KEY) == first.uuid
    assert reloaded._process_row.get("lease_owner") is None  # nothing left held


def test_rehash_recomputes_and_keeps_what_cannot_be_imported(monkeypatch):
    _, node = add.run_get_node(Int(5), Int(6))
    data = Int(7).store()
    assert caching.rehash_nodes([node.pk, data.pk]).changed == 0
    monkeypatch.setattr(caching, "plugin_version", lambda cls: "plugin==2")
    report = caching.rehash_nodes(batch_size=2)  # several batches
    assert report.changed == 1 and report.skipped == []
    with enable_caching():
        _, again = add.run_get_node(Int(5), Int(6))
    assert again.cached_from == node  # the rehashed node serves under the new version
    get_backend().update_node(node.pk, process_type="gone.module:nothing")
    assert caching.rehash_nodes([node.pk]).skipped == [node.pk]
    with pytest.raises(NotExistentError):
        caching.rehash_nodes([10**9])


# -- the cache hit of a top-level launch: one transaction, no loop or runner -----------------------------

SEEN_AT_END: list[tuple[int, str]] = []


class RecordingAdd(ArithmeticAddCalculation):
    """Records the state the database holds when its on_terminated hook runs."""

    def on_terminated(self) -> None:
        super().on_terminated()
        SEEN_AT_END.append((self.pk, load_node(self.pk).process_state.value))


async def _no_loop(*_args, **_kwargs):
    raise AssertionError("a cache hit of a top-level launch needs no event loop or runner")


def test_a_blocking_cache_hit_is_one_commit_without_a_loop(any_profile, bash, monkeypatch):
    SEEN_AT_END.clear()
    _, first = run_get_node(RecordingAdd, code=bash, x=Int(5), y=Int(6))
    x, y = Int(5), Int(6)
    from sqlalchemy import event

    commits: list[int] = []
    engine = get_backend().database.engine

    def count(_conn):
        # the launch's own commits: on PostgreSQL a state bell started by an earlier test in this
        # interpreter may send its NOTIFY, in a transaction of its own, from the engine's loop thread
        if threading.current_thread() is threading.main_thread():
            commits.append(1)

    event.listen(engine, "commit", count)
    monkeypatch.setattr("plait.engine.launch._arun_in_fresh_loop", _no_loop)
    try:
        with enable_caching():
            outputs, node = run_get_node(RecordingAdd, code=bash, x=x, y=y)
    finally:
        event.remove(engine, "commit", count)
    assert len(commits) == 1  # inputs, node, process row, clones, links, report and the end together
    assert node.cached_from == first and node.is_finished_ok and outputs["sum"].value == 11
    assert x.is_stored and {label for label, _, _ in node.get_incoming()} >= {"x", "y", "code"}
    reloaded = load_node(node.pk)
    assert reloaded.is_finished_ok and reloaded._process_row.get("lease_owner") is None
    assert any("from the cache" in r["message"] for r in get_backend().get_logs(node.pk))
    assert SEEN_AT_END == [(first.pk, "finished"), (node.pk, "finished")]  # hook after the commit


def test_an_async_cache_hit_starts_no_task(bash, monkeypatch):
    from plait.engine.runner import Runner

    _, first = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(7), y=Int(8))

    async def refuse(*_args, **_kwargs):
        raise AssertionError("a cache hit creates no process task")

    async def launch():
        monkeypatch.setattr(Runner, "create", refuse)
        with enable_caching():
            return await plait.arun_get_node(ArithmeticAddCalculation, code=bash, x=Int(7), y=Int(8))

    outputs, node = asyncio.run(launch())
    assert node.cached_from == first and outputs["sum"].value == 15


def test_a_miss_with_caching_on_runs_once_and_stores_nothing_twice(bash):
    before = get_backend().count_nodes()
    with enable_caching():
        outputs, node = run_get_node(ArithmeticAddCalculation, code=bash, x=Int(40), y=Int(2))
    assert node.cached_from is None and node.get_attribute("job_id") is not None
    assert outputs["sum"].value == 42
    # x, y, the job, remote_folder, retrieved, sum: the look-up before storing left nothing behind
    assert get_backend().count_nodes() - before == 6
