"""Report lines on the console: a real script, run in a subprocess, and what its stderr shows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    {setup}
    from plait import WorkChain, run_get_node
    from plait.orm import Int

    class Reporter(WorkChain):
        @classmethod
        def define(cls, spec):
            super().define(spec)
            spec.input("x", valid_type=Int)
            spec.outline(cls.first, cls.second)

        def first(self):
            self.report("first step saw x=%d", self.inputs.x.value)

        def second(self):
            gate = sys.argv[1]
            while gate != "-" and not os.path.exists(gate):  # waits until the test has read the first line
                time.sleep(0.02)
            self.report("second step done")

    _, node = run_get_node(Reporter, x=Int(7))
    print("PK", node.pk, node.process_state.value, flush=True)
    """
)


def start(tmp_path: Path, gate: str = "-", setup: str = "", **env: str) -> subprocess.Popen[str]:
    script = tmp_path / "reporter.py"
    script.write_text(SCRIPT.format(setup=setup))
    environment = {k: v for k, v in os.environ.items() if k != "PLAIT_LOG_LEVEL"}
    environment.update(env)
    return subprocess.Popen(
        [sys.executable, str(script), gate],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    pk = int(out.split()[1])
    assert out.split()[2] == "finished", out
    return pk, out, err


def test_report_lines_appear_on_stderr_as_they_happen(tmp_path):
    gate = tmp_path / "gate"
    process = start(tmp_path, str(gate))
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the script is still in its second step, waiting for the gate
        while first and "REPORT" not in first:  # an unrelated warning of the interpreter, if any
            first = process.stderr.readline()
        assert process.poll() is None
        assert "REPORT [" in first and "|Reporter|first]: first step saw x=7" in first, first
        gate.write_text("open")
        pk, _, rest = finish(process)
    finally:
        process.kill()
    assert first.startswith(("19", "20")) and f"[{pk}|Reporter|first]" in first  # a time stamp, the pk
    assert rest.count(f"[{pk}|Reporter|second]: second step done") == 1, rest


def test_the_lines_are_stored_on_the_node_too(tmp_path):
    pk, _, err = finish(start(tmp_path))
    assert err.count("Reporter|") == 2, err
    from plait.storage import get_backend

    texts = [log["message"] for log in get_backend().get_logs(pk)]
    assert "first step saw x=7" in texts and "second step done" in texts


@pytest.mark.parametrize(
    "how",
    [
        {"PLAIT_LOG_LEVEL": "WARNING"},
        {"setup": "import logging; logging.getLogger('plait.report').setLevel(logging.WARNING)"},
        {"setup": "import logging; logging.getLogger('plait.report').disabled = True"},
    ],
    ids=["PLAIT_LOG_LEVEL", "setLevel", "disabled"],
)
def test_the_console_lines_can_be_silenced(tmp_path, how):
    _, _, err = finish(start(tmp_path, **how))
    assert "Reporter|" not in err, err


def test_a_level_below_report_shows_them_and_a_bad_level_says_so(tmp_path):
    _, _, err = finish(start(tmp_path, PLAIT_LOG_LEVEL="info"))
    assert err.count("Reporter|") == 2, err
    _, _, err = finish(start(tmp_path, PLAIT_LOG_LEVEL="LOUD"))
    assert "PLAIT_LOG_LEVEL='LOUD' is not a logging level" in err and err.count("Reporter|") == 2, err


def test_a_logging_configuration_of_the_script_decides_and_nothing_is_shown_twice(tmp_path):
    setup = "import logging; logging.basicConfig(level=logging.INFO, format='MINE %(name)s %(message)s')"
    _, _, err = finish(start(tmp_path, setup=setup))
    lines = [line for line in err.splitlines() if "Reporter|" in line]
    assert len(lines) == 2 and all(line.startswith("MINE plait.report [") for line in lines), err
    setup = "import logging; logging.basicConfig(level=logging.WARNING)"
    _, _, err = finish(start(tmp_path, setup=setup))
    assert "Reporter|" not in err, err
