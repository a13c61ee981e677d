"""``plait run FILE.py [ARGS...]``."""

from __future__ import annotations

import sys
import textwrap

import plait.storage
from plait.orm import load_node

from .helpers import assert_one_line_error

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from plait import calcfunction, get_profile
    from plait.orm import Int

    @calcfunction
    def add(x, y):
        return x + y

    print("argv", sys.argv[1:])
    print("profile", get_profile().name, os.environ["PLAIT_PROFILE"])
    print("result pk", add(Int(1), Int(2)).pk)
    if "--fail" in sys.argv:
        def inner():
            raise ValueError("the script's own error")
        inner()
    if "--exit" in sys.argv:
        sys.exit(int(sys.argv[-1]))
    """
)


def test_run_a_script_with_arguments(invoke, tmp_path):
    script = tmp_path / "work.py"
    script.write_text(SCRIPT)
    argv, path = sys.argv[:], sys.path[:]
    result = invoke("run", str(script), "a", "--flag", "-x", "1")
    assert "argv ['a', '--flag', '-x', '1']" in result.stdout
    assert "profile default default" in result.stdout
    pk = int(result.stdout.split("result pk ")[1].split()[0])
    assert load_node(pk).value == 3 and load_node(pk).creator.process_label == "add"
    assert sys.argv == argv and sys.path == path  # restored


def test_run_on_another_profile(invoke, tmp_path):
    invoke("profile", "setup", "main")
    invoke("profile", "setup", "other")
    script = tmp_path / "work.py"
    script.write_text(SCRIPT)
    result = invoke("-P", "other", "run", str(script))
    assert "profile other other" in result.stdout
    plait.storage.load_profile("main")
    assert plait.storage.get_backend().count_nodes() == 0


def test_script_exception_shows_the_script_traceback(invoke, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(SCRIPT)
    result = invoke("run", str(script), "--fail", code=1)
    err = result.stderr
    assert err.startswith("Traceback (most recent call last):")
    assert str(script) in err and "in inner" in err
    assert err.rstrip().endswith("ValueError: the script's own error")
    assert "runpy" not in err and "plait/cli" not in err
    assert not any(line.startswith("Error:") for line in err.splitlines())


def test_script_exit_code(invoke, tmp_path):
    script = tmp_path / "exits.py"
    script.write_text(SCRIPT)
    invoke("run", str(script), "--exit", "3", code=3)
    invoke("run", str(script), "--exit", "0", code=0)


def test_run_errors(invoke, tmp_path):
    assert_one_line_error(invoke("run", str(tmp_path / "nope.py"), code=None), "does not exist", code=2)
    assert_one_line_error(invoke("run", str(tmp_path), code=None), "is a directory", code=2)
    script = tmp_path / "ok.py"
    script.write_text("print('never')\n")
    result = invoke("-P", "ghost", "run", str(script), code=1)
    assert_one_line_error(result, "profile 'ghost' does not exist")
    assert "never" not in result.stdout
