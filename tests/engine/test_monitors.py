"""Calculation job monitors on localhost: real ShellJobs (local transport, direct scheduler)."""

from __future__ import annotations

import posixpath

import pytest

from plait import CalcJobMonitorResult, InputValidationError, run_get_node
from plait.calculations.shell import ShellJob
from plait.engine.monitors import CalcJobMonitors
from plait.orm import Dict, List, Str
from plait.storage import get_backend

#: the job touches `started`, then waits until `released` appears (only a monitor creates it)
WAIT_FOR_RELEASE = "touch started; while [ ! -e released ]; do sleep 0.05; done; echo finished"
CALLS: dict[str, int] = {}


def shell(script: str, monitors: dict[str, dict], **options) -> dict:
    return {
        "command": Str("bash"),
        "arguments": List(["-c", script]),
        "monitors": {key: Dict(value) for key, value in monitors.items()},
        "metadata": {"options": options},
    }


def monitor(name: str, **fields) -> dict:
    return {"entry_point": f"{__name__}:{name}", "minimum_poll_interval": 0.05, **fields}


# -- monitors -------------------------------------------------------------------------------------------


async def stop_when_file_appears(node, transport, filename="stop_here"):
    """An async monitor: awaited on the loop with the async transport."""
    if await transport.exists(posixpath.join(node.remote_workdir, filename)):
        return f"found {filename} in the work folder"
    return None


def release_and_record(node, transport):
    """A plain monitor: run in a thread with a blocking transport; lets the job end and records an output."""
    CALLS["release"] = CALLS.get("release", 0) + 1
    if not transport.exists(posixpath.join(node.remote_workdir, "started")):
        return None
    transport.write_bytes(posixpath.join(node.remote_workdir, "released"), b"")
    return CalcJobMonitorResult(
        action="disable-self", message="released the job", outputs={"progress": Dict({"released": True})}
    )


def broken(node, transport):
    CALLS["broken"] = CALLS.get("broken", 0) + 1
    raise RuntimeError("boom")


def kill_without_retrieving(node, transport):
    if transport.exists(posixpath.join(node.remote_workdir, "started")):
        return CalcJobMonitorResult(message="no use going on", retrieve=False, parse=False)
    return None


def disable_all(node, transport):
    CALLS["disable_all"] = CALLS.get("disable_all", 0) + 1
    return CalcJobMonitorResult(action="disable-all", message="enough watching")


def counted(node, transport):
    CALLS["counted"] = CALLS.get("counted", 0) + 1


def returns_a_number(node, transport):
    return 42


def wrong_signature(path):
    return None


# -- tests ------------------------------------------------------------------------------------------------


def test_a_monitor_stops_a_sleeping_job_when_a_file_appears():
    inputs = shell("touch stop_here; sleep 600; echo never", {"stopper": monitor("stop_when_file_appears")})
    outputs, node = run_get_node(ShellJob, inputs)
    assert node.is_finished and node.exit_status == 150, (node.exit_status, node.exit_message, node.exception)
    assert node.exit_message == "found stop_here in the work folder"
    # the job was cancelled, then its files were retrieved and parsed as usual
    assert "retrieved" in outputs and "never" not in outputs["stdout"].get_content()
    reports = [log["message"] for log in get_backend().get_logs(node.pk)]
    assert any("monitor 'stopper' stops the job: found stop_here" in line for line in reports), reports


def test_a_monitor_records_an_output_and_the_job_finishes_normally():
    CALLS.clear()
    inputs = shell(WAIT_FOR_RELEASE, {"release": monitor("release_and_record")})
    outputs, node = run_get_node(ShellJob, inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message, node.exception)
    assert outputs["progress"].get_dict() == {"released": True}
    assert outputs["stdout"].get_content().strip() == "finished"
    assert node.outputs.progress.pk == outputs["progress"].pk  # stored and linked to the job
    calls = CALLS["release"]
    assert calls >= 1
    reports = [log["message"] for log in get_backend().get_logs(node.pk)]
    assert "monitor 'release': released the job" in reports, reports


def test_a_monitor_that_raises_is_reported_and_disabled_and_the_job_goes_on():
    CALLS.clear()
    inputs = shell(
        WAIT_FOR_RELEASE,
        {"broken": monitor("broken", priority=10), "release": monitor("release_and_record")},
    )
    _, node = run_get_node(ShellJob, inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message, node.exception)
    assert CALLS["broken"] == 1 and CALLS["release"] >= 1
    reports = [log["message"] for log in get_backend().get_logs(node.pk)]
    assert any(
        "monitor 'broken'" in line and "failed and is disabled: RuntimeError: boom" in line
        for line in reports
    ), reports


def test_a_monitor_may_stop_the_job_without_retrieving():
    inputs = shell("touch started; sleep 600", {"stop": monitor("kill_without_retrieving")})
    outputs, node = run_get_node(ShellJob, inputs)
    assert node.exit_status == 150 and node.exit_message == "no use going on"
    assert "retrieved" not in outputs and "remote_folder" in outputs


def test_a_bad_return_value_disables_the_monitor():
    inputs = shell(WAIT_FOR_RELEASE, {"a": monitor("returns_a_number"), "b": monitor("release_and_record")})
    _, node = run_get_node(ShellJob, inputs)
    assert node.is_finished_ok
    reports = [log["message"] for log in get_backend().get_logs(node.pk)]
    assert any(
        "monitor 'a'" in line and "return None, a str or a CalcJobMonitorResult" in line for line in reports
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"entry_point": "no_such_monitor"},
            "no plugin named 'no_such_monitor' in 'plait.calculations.monitors'",
        ),
        ({"entry_point": "plait_no_such_module:f"}, "cannot import module 'plait_no_such_module'"),
        ({"entry_point": f"{__name__}:wrong_signature"}, "must take (node, transport, **kwargs)"),
        ({"entry_point": f"{__name__}:broken", "kwargs": {"x": 1}}, "does not take the keywords x"),
        ({"entry_point": f"{__name__}:broken", "minimum_poll_interval": 0}, "minimum_poll_interval must be"),
        ({"entry_point": f"{__name__}:broken", "priority": "high"}, "priority must be an int"),
        ({"entry_point": f"{__name__}:broken", "every": 3}, "unknown keys every"),
        ({"kwargs": {}}, "needs an 'entry_point'"),
    ],
)
def test_bad_monitors_are_refused_before_anything_is_stored(entry, message):
    before = get_backend().count_nodes()
    inputs = shell("true", {"m": entry})
    with pytest.raises(InputValidationError) as caught:
        run_get_node(ShellJob, inputs)
    assert "monitors.m is invalid" in str(caught.value) and message in str(caught.value), str(caught.value)
    assert get_backend().count_nodes() == before


def test_monitors_run_by_priority_then_key_and_results_are_checked():
    monitors = CalcJobMonitors(
        {
            "b": Dict(monitor("broken")),
            "a": Dict(monitor("broken")),
            "z": Dict(monitor("broken", priority=5)),
        }
    )
    assert list(monitors.monitors) == ["z", "a", "b"]
    with pytest.raises(ValueError, match="cannot parse without retrieving"):
        CalcJobMonitorResult(retrieve=False)
    with pytest.raises(ValueError, match="is not one of kill, disable-all, disable-self"):
        CalcJobMonitorResult(action="stop")
    result = CalcJobMonitorResult(message="m", action="disable-all")
    assert CalcJobMonitorResult.from_json(result.to_json()) == result


def test_disable_all_stops_every_monitor_and_the_job_runs_to_its_end():
    CALLS.clear()
    inputs = shell(
        "sleep 0.5; echo done",
        {"first": monitor("disable_all", priority=1), "second": monitor("counted")},
    )
    outputs, node = run_get_node(ShellJob, inputs)
    assert node.is_finished_ok and outputs["stdout"].get_content().strip() == "done"
    assert CALLS == {"disable_all": 1}  # the first pass stopped at its result; no monitor ran again
    reports = [log["message"] for log in get_backend().get_logs(node.pk)]
    assert "monitor 'first': enough watching" in reports


def test_the_verdict_of_a_monitor_is_kept_in_the_checkpoint():
    inputs = ShellJob.prepare_inputs(shell("true", {"m": monitor("counted")}))
    job = ShellJob(inputs)
    job._monitor_result = CalcJobMonitorResult(key="m", message="stop", retrieve=True, parse=False)
    checkpoint = job._make_checkpoint()
    assert checkpoint["monitor_result"]["action"] == "kill" and checkpoint["monitor_result"]["parse"] is False
    again = ShellJob(inputs)
    again._restore(checkpoint)
    assert again._monitor_result == job._monitor_result
    # a job taken over after its monitor stopped it calls no monitor again
    from plait.engine.monitors import job_monitors

    assert job_monitors(again) is not None and not job_monitors(again).active
