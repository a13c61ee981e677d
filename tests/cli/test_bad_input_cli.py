"""Bad input on the command line and in profile.toml: one ``Error:`` line naming the value (issue 11)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import plait.storage

from .helpers import assert_one_line_error
from .test_daemon import _processes_of_home, daemon_env  # noqa: F401 (the fixture)


def _profile_toml(plait_home: Path) -> Path:
    profile = plait.storage.load_profile()
    return Path(profile.path) / "profile.toml"


def _add_daemon_options(plait_home: Path, text: str) -> None:
    path = _profile_toml(plait_home)
    content = path.read_text()
    assert "[options.daemon]" not in content
    path.write_text(content + "\n[options.daemon]\n" + text + "\n")
    plait.storage.reset()


# -- identifiers on the command line -----------------------------------------------------------------


@pytest.mark.parametrize("command", [["node", "show"], ["process", "show"], ["process", "report"]])
@pytest.mark.parametrize(
    ("identifier", "shown"),
    [
        (str(2**63), str(2**63)),
        ("9" * 40, "9" * 40),
        ("٣", "٣"),
        ("%", "%"),
        ("____", "____"),
        ("-1", "-1"),
    ],
)
def test_identifiers_give_one_line(invoke, demo_pk, command, identifier, shown):
    result = invoke(*command, "--", identifier, code=None)
    assert_one_line_error(result, shown)
    assert "unexpected" not in result.output


def test_non_ascii_digit_does_not_load_pk(invoke, demo_pk):
    arabic = "".join(chr(0x0660 + int(d)) for d in str(demo_pk))
    result = invoke("node", "show", arabic, code=None)
    assert_one_line_error(result, arabic)
    invoke("node", "show", str(demo_pk))


# -- [options.daemon] ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('workers = "two"', "options.daemon.workers = 'two' must be an integer >= 1"),
        ("workers = 0", "options.daemon.workers = 0"),
        ("slots = -3", "options.daemon.slots = -3"),
        ("max_held = true", "options.daemon.max_held = True"),
        ('lease_seconds = "soon"', "options.daemon.lease_seconds"),
        ("poll_interval = 0", "options.daemon.poll_interval = 0"),
        ("worker = 2", "unknown option options.daemon.worker"),
    ],
)
def test_invalid_daemon_options_fail_at_once_without_a_supervisor(invoke, daemon_env, text, words):  # noqa: F811
    _add_daemon_options(daemon_env, text)
    for args in (["daemon", "start"], ["daemon", "start", "2"]):
        result = invoke(*args, code=None)
        assert_one_line_error(result, words, "profile.toml")
    assert _processes_of_home(daemon_env) == []
    # the supervisor itself refuses them too, before taking its lock
    profile = plait.storage.load_profile()
    done = subprocess.run(
        [sys.executable, "-m", "plait.daemon.supervisor", "--profile", profile.name],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert not (Path(profile.daemon_path) / "supervisor.pid").exists()


def test_supervisor_logs_the_pause_it_really_waits(plait_home, caplog, monkeypatch):
    """A worker that lived 10 s is restarted after 0.2 s: the log said "2 s" before."""
    from plait.daemon import supervisor as module

    profile = plait.storage.load_profile()

    class OneRestart(module.Supervisor):
        spawned = 0

        async def _spawn(self, slot):
            self.spawned += 1
            slot.process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
            slot.started = time.time() - 10  # as if it had run for 10 s
            if self.spawned == 2:
                slot.stopping = True

        async def _release_leases(self, pid):
            return None

    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds, *args, **kwargs):
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(module.asyncio, "sleep", recording_sleep)
    supervisor = OneRestart(profile, 0)
    slot = module._WorkerSlot(index=0)
    caplog.set_level(logging.WARNING, logger="plait.supervisor")
    asyncio.run(supervisor._keep_alive(slot))
    (record,) = [r for r in caplog.records if "restarting in" in r.getMessage()]
    said = float(record.getMessage().rsplit("restarting in ", 1)[1].split(" s", 1)[0])
    assert said == module.restart_pause(10, 2.0) == 0.2
    assert slept == [said]  # the pause waited is the one logged (the log said 2 s before)
    assert module.restart_pause(1, 8.0) == 8.0


# -- PLAIT_HOME and profile.toml -------------------------------------------------------------------


def test_plait_home_pointing_at_a_file(invoke, plait_home, monkeypatch):
    plait_home.parent.mkdir(parents=True, exist_ok=True)
    a_file = plait_home.parent / "not-a-folder"
    a_file.write_text("")
    monkeypatch.setenv("PLAIT_HOME", str(a_file))
    plait.storage.reset()
    for args in (["status"], ["node", "show", "1"], ["profile", "list"]):
        result = invoke(*args, code=None)
        assert_one_line_error(result, f"PLAIT_HOME={a_file} is not a folder")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("user_email", "3", "user_email = 3 must be a string"),
        ("broker_url", "[1, 2]", "broker_url = [1, 2] must be a string"),
        ("name", "true", "name = True must be a string"),
    ],
)
def test_wrong_types_in_profile_toml(invoke, plait_home, key, value, words):
    path = _profile_toml(plait_home)
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key} =")]
    path.write_text(f"{key} = {value}\n" + "\n".join(lines) + "\n")
    plait.storage.reset()
    result = invoke("node", "show", "1", code=None)
    assert_one_line_error(result, words, str(path))


def test_options_that_is_not_a_table(invoke, plait_home):
    path = _profile_toml(plait_home)
    text = path.read_text()
    assert "[options]" in text or "options =" in text
    lines = [line for line in text.splitlines() if not line.startswith("options =")]
    head = [line for line in lines if not line.startswith("[")]
    path.write_text('options = "x"\n' + "\n".join(head) + "\n")
    plait.storage.reset()
    result = invoke("node", "show", "1", code=None)
    assert_one_line_error(result, "options = 'x' must be a table")
