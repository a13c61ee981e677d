"""``plait archive create | import | inspect``: the commands, their flags and their one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from plait.cli.main import cli

from .conftest import Graph


def plait(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env={"NO_COLOR": "1"})
    assert result.exit_code == code, f"plait {' '.join(args)}: {result.exit_code}\n{result.output}"
    return result


def one_error(result: Result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def counts(output: str) -> dict[str, list[str]]:
    """The rows of a table printed by a command: ``{name: [columns...]}``."""
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            rows[parts[0]] = parts[1:]
    return rows


def test_create_inspect_import_twice(graph: Graph, tmp_path: Path, fresh_sqlite_profile: Any) -> None:
    path = tmp_path / "out.plait"
    made = plait("archive", "create", str(path), "-N", str(graph.result), "-G", graph.group)
    assert counts(made.stdout)["nodes"] == ["8"] and "Wrote" in made.stdout
    shown = plait("archive", "inspect", str(path))
    assert "plait-archive version 1" in shown.stdout and counts(shown.stdout)["nodes"] == ["8"]
    other = fresh_sqlite_profile("other")
    first = plait("-P", other, "archive", "import", str(path), "--group", "colleague")
    assert counts(first.stdout)["nodes"] == ["8", "0"] and "group 'colleague'" in first.stdout
    second = plait("-P", other, "archive", "import", str(path))
    assert counts(second.stdout)["nodes"] == ["0", "8"] and counts(second.stdout)["links"][0] == "0"


def test_traversal_switches_and_dry_run(graph: Graph, tmp_path: Path) -> None:
    path = tmp_path / "x.plait"
    narrow = plait("archive", "create", str(path), "-N", str(graph.result), "--no-create-backward", "-n")
    assert counts(narrow.stdout)["nodes"] == ["1"] and "nothing was written" in narrow.stdout
    wide = plait("archive", "create", str(path), "-N", str(graph.x), "--input-calc-forward", "--dry-run")
    assert int(counts(wide.stdout)["nodes"][0]) == 5
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "fragments", "code"),
    [
        (("archive", "create", "{dir}/a.plait"), ("nothing to export",), 2),
        (("archive", "create", "{dir}/a.plait", "--all", "-N", "1"), ("--all exports everything",), 2),
        (("archive", "create", "{dir}/a.plait", "-N", "424242"), ("no node with pk 424242",), 1),
        (("archive", "create", "{dir}/a.plait", "-G", "no-such-group"), ("no-such-group",), 1),
        (("archive", "create", "{dir}/exists.plait", "-N", "1"), ("exists already", "--force"), 1),
        (("archive", "import", "{dir}/exists.plait"), ("not a zip archive",), 1),
        (("archive", "inspect", "{dir}/exists.plait"), ("not a zip archive",), 1),
        (("archive", "import", "{dir}/missing.plait"), ("does not exist",), 2),
    ],
)
def test_errors_are_one_line(
    graph: Graph, tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...], code: int
) -> None:
    (tmp_path / "exists.plait").write_text("not an archive")
    result = plait(*(a.format(dir=tmp_path) for a in args), code=code)
    one_error(result, *fragments)
