"""Every code block of README.md and docs/*.md runs as written, or says that it is a fragment.

A fenced block whose info string has the word ``fragment`` after the language (```` ```python fragment ````)
is a fragment: it shows a piece of code that cannot run alone (it needs a cluster, an SSH host, a
running daemon, a package of yours, placeholders such as ``PK``). GitHub highlights it by the first
word of the info string, so it still looks like Python. Every other block is checked:

- ``python``: the blocks of one file run in order as one script, in a fresh interpreter per file
  (``sys.executable``, in an empty temporary folder, with this test's ``$PLAIT_HOME``), so a later
  block uses what an earlier one defined, and a block whose lines are indented goes on with the
  class the block before it began (its methods, written one section further down). The script is
  compiled under the path of the Markdown file, each block at its own lines, so a traceback points
  into the document; a failure names the file, the first line of the block and the error.
- ``bash`` and ``console`` (the lines after ``$ ``): not run, since most of them start a daemon or
  talk to a cluster; but every ``plait ...`` command in them must parse: its command path exists
  (``plait process kill PK`` -> ``plait process kill --help`` exits 0) and the options it gives are
  options of that command. An untagged block's ``plait ...`` lines (the synopses of docs/cli.md)
  are checked the same way, their ``[--option ARG]`` names included.
- ``toml``: parses.

A Python block under another name (```` ```py ````, ```` ```pycon ````) is refused, so that no
example escapes the check by its spelling.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from plait.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: info strings that mean Python but would not be run: write ```python or ```python fragment instead
PYTHON_ALIASES = {"py", "py3", "python3", "pycon", "ipython", "ipython3", "pyi"}
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "shell-session"}
#: one interpreter per document; its blocks together should take seconds
PYTHON_TIMEOUT = 180

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # the line number (1-based) of the block's first line of code
    info: str
    code: str

    @property
    def language(self) -> str:
        words = self.info.split()
        return words[0].lower() if words else ""

    @property
    def fragment(self) -> bool:
        return "fragment" in self.info.split()[1:]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, in order (fences may be indented, as inside a list item)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        number += 1
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            continue
        indent, fence, info = len(opening["indent"]), opening["fence"], opening["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        first, body = number + 1, []
        while number < len(lines) and not closing.match(lines[number]):
            line = lines[number]
            body.append(line[min(indent, len(line) - len(line.lstrip())) :])
            number += 1
        number += 1  # the closing fence (or the end of the file, which closes it too)
        blocks.append(Block(path, first, info, "\n".join(body) + "\n"))
    return blocks


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


ALL_BLOCKS = {path: read_blocks(path) for path in DOCUMENTS}


def python_blocks(path: Path) -> list[Block]:
    return [b for b in ALL_BLOCKS[path] if b.language == "python" and not b.fragment]


# ---------------------------------------------------------------------------------------------------
# the blocks' info strings


@pytest.mark.parametrize("path", DOCUMENTS, ids=_relative)
def test_python_blocks_are_named_python(path: Path) -> None:
    wrong = [f"{b.where}: ```{b.info}" for b in ALL_BLOCKS[path] if b.language in PYTHON_ALIASES]
    assert not wrong, (
        "write ```python (it is run) or ```python fragment (it is not) for these blocks:\n" + "\n".join(wrong)
    )


# ---------------------------------------------------------------------------------------------------
# python: run the blocks of each document in one interpreter

#: runs the blocks given in a JSON file as one script: each block at its own lines of the document (the
#: lines between blocks left empty), so that a block may go on with the class the previous one began
#: (its methods indented), and a traceback points into the document. On a failure it prints
#: ``@@ doc block failed: START LINE`` (the block whose statement failed, and the line of that statement)
#: and the traceback.
RUNNER = textwrap.dedent(
    """
    import json, sys, traceback

    blocks = json.loads(open(sys.argv[1], encoding="utf-8").read())
    path = blocks[0]["path"]
    lines = []
    for block in blocks:
        lines.extend([""] * (block["line"] - 1 - len(lines)))
        lines.extend(block["code"].splitlines())
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile("\\n".join(lines) + "\\n", path, "exec"), namespace)
    except BaseException as exc:
        line = exc.lineno if isinstance(exc, SyntaxError) and exc.filename == path else None
        frame = exc.__traceback__.tb_next  # the statement of the document being run
        if line is None and frame is not None and frame.tb_frame.f_code.co_filename == path:
            line = frame.tb_lineno
        start = max((b["line"] for b in blocks if b["line"] <= (line or 0)), default=blocks[0]["line"])
        sys.stdout.flush()
        print(f"@@ doc block failed: {start} {line}", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next, file=sys.stderr)
        sys.exit(1)
    """
)


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if python_blocks(p)], ids=_relative)
def test_python_blocks_run(path: Path, tmp_path: Path, plait_home: Path) -> None:
    blocks = python_blocks(path)
    script = tmp_path / "run_blocks.py"
    script.write_text(RUNNER, encoding="utf-8")
    listing = tmp_path / "blocks.json"
    listing.write_text(json.dumps([{"path": str(b.path), "line": b.line, "code": b.code} for b in blocks]))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    try:
        result = subprocess.run(
            [sys.executable, str(script), str(listing)],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=PYTHON_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{_relative(path)}: its python blocks did not finish within {PYTHON_TIMEOUT} s:\n{exc}")
    if result.returncode == 0:
        return
    found = re.search(r"^@@ doc block failed: (\d+) (\S+)$", result.stderr, re.MULTILINE)
    if found is None:
        pytest.fail(
            f"{_relative(path)}: the interpreter running its python blocks exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    error = result.stderr[found.end() :].strip()
    last = error.splitlines()[-1] if error else "?"
    pytest.fail(
        f"{_relative(path)}: the python block at line {found[1]} failed at line {found[2]}: {last}\n\n{error}"
        + (f"\n\nits output:\n{result.stdout[-3000:]}" if result.stdout.strip() else ""),
        pytrace=False,
    )


# ---------------------------------------------------------------------------------------------------
# shell: every plait command names an existing command, with options it has

_OPERATORS = {"|", "||", "&&", ";", "&"}
_REDIRECT = re.compile(r"^\d*(>>?|<)$")  # a redirection whose target is the next word
_GLUED_REDIRECT = re.compile(r"^\d*(>>?|<)\S")  # `>/dev/null`, `2>&1`


@dataclass(frozen=True)
class CommandLine:
    block: Block
    line: int
    words: tuple[str, ...]  # after `plait`
    synopsis: bool = False  # a usage line: `plait process list [-a/--all] [-S/--state STATE]...`

    @property
    def where(self) -> str:
        return f"{self.block.path.relative_to(ROOT)}:{self.line}"

    @property
    def text(self) -> str:
        return " ".join(("plait", *self.words))


def _logical_lines(block: Block, prompt: bool) -> Iterator[tuple[int, str]]:
    """(line number, line) with ``\\`` continuations joined; with ``prompt`` only the ``$ `` lines."""
    lines = block.code.splitlines()
    index = 0
    while index < len(lines):
        number, line = block.line + index, lines[index]
        index += 1
        if prompt:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + " " + lines[index].strip()
            index += 1
        yield number, line


def _simple_commands(line: str) -> Iterator[list[str]]:
    """The simple commands of a shell line, without their redirections."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words, command, skip = list(lexer), [], False
    for word in words:
        if skip:
            skip = False
            continue
        ends = word in _OPERATORS or (word.endswith(";") and len(word) > 1)
        if word.endswith(";") and len(word) > 1:
            word = word[:-1]
        if word in _OPERATORS:
            pass
        elif _REDIRECT.match(word):
            skip = True
        elif not _GLUED_REDIRECT.match(word):
            command.append(word)
        if ends:
            if command:
                yield command
            command = []
    if command:
        yield command


def command_lines(block: Block) -> Iterator[CommandLine | str]:
    """The ``plait`` commands of a bash, console or untagged block (a problem as a string)."""
    if block.language in SHELL_LANGUAGES:
        for number, line in _logical_lines(block, prompt=block.language in {"console", "shell-session"}):
            try:
                commands = list(_simple_commands(line))
            except ValueError as exc:  # unbalanced quotes
                if re.search(r"\bplait\b", line):
                    yield f"{block.path.relative_to(ROOT)}:{number}: cannot split {line!r}: {exc}"
                continue
            for words in commands:
                while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                    words = words[1:]  # VAR=value plait ...
                if words and words[0] == "plait":
                    yield CommandLine(block, number, tuple(words[1:]))
    elif block.language == "":
        lines = block.code.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("plait "):
                continue
            text = line
            for more in lines[index + 1 :]:  # a synopsis goes on on indented lines
                if not more.startswith((" ", "\t")) or not more.strip():
                    break
                text += " " + more.strip()
            yield CommandLine(block, block.line + index, tuple(text.split()[1:]), synopsis=True)


def _option(command: click.Command, word: str) -> click.Parameter | None:
    name = word.split("=", 1)[0]
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    context = click.Context(command, info_name="plait")
    if name in context.help_option_names:
        return command.get_help_option(context)
    return None


def _takes_value(param: click.Parameter, word: str) -> int:
    if "=" in word or (isinstance(param, click.Option) and (param.is_flag or param.count)):
        return 0
    return param.nargs


def resolve(words: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]] | str]:
    """(command path, the words after it) for each command the words name; ``a|b`` gives both.

    A problem is yielded as a string: an unknown command or an unknown option of a group.
    """
    stack: list[tuple[click.Command, tuple[str, ...], tuple[str, ...]]] = [(cli, (), words)]
    while stack:
        command, path, rest = stack.pop()
        if not isinstance(command, click.Group) or not rest:
            yield path, rest
            continue
        word = rest[0]
        if word.startswith("-"):
            option = _option(command, word)
            if option is None:
                yield f"`plait {' '.join(path)}` has no option {word.split('=', 1)[0]}"
                continue
            stack.append((command, path, rest[1 + _takes_value(option, word) :]))
            continue
        names = word.split("|") if "|" in word else [word]
        for name in reversed(names):
            sub = command.commands.get(name)
            if sub is None:
                known = ", ".join(command.commands)
                yield f"`plait {' '.join((*path, name))}`: no such command (known: {known})"
            else:
                stack.append((sub, (*path, name), rest[1:]))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@cache
def help_problem(path: tuple[str, ...]) -> str | None:
    """Run ``plait PATH --help``: None when it exits 0, else what went wrong."""
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="plait")
    if result.exit_code == 0:
        return None
    return f"`plait {' '.join(path)} --help` exited {result.exit_code}: {result.output.strip()[-500:]}"


def _choice_problem(param: click.Parameter, value: str) -> str | None:
    kind = param.type
    if not isinstance(kind, click.Choice):
        return None
    choices = [str(c) for c in kind.choices]
    if value in choices or (not kind.case_sensitive and value.lower() in [c.lower() for c in choices]):
        return None
    return f"{value!r} is not one of {', '.join(choices)}"


def _argument_problems(command: click.Command, words: tuple[str, ...]) -> list[str]:
    """Check the options given to a leaf command as click would parse them (placeholders are fine)."""
    problems: list[str] = []
    context = command.context_settings
    interspersed = context.get("allow_interspersed_args", command.allow_interspersed_args)
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            break
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d+(\.\d*)?", word):
            if not interspersed:
                break  # `plait run FILE.py ARGS...`: the rest belongs to the script
            continue
        option, value = _option(command, word), word.split("=", 1)[1] if "=" in word else None
        if option is None and not word.startswith("--") and len(word) > 2:
            option = _option(command, word[:2])  # -n2 (a value attached), -ay (flags together)
            if option is not None and _takes_value(option, word[:2]):
                value = word[2:]
            elif option is not None:
                unknown = [f"-{c}" for c in word[2:] if _option(command, f"-{c}") is None]
                option = None if unknown else option
        if option is None:
            if not context.get("ignore_unknown_options", command.ignore_unknown_options):
                problems.append(f"no option {word.split('=', 1)[0]}")
            continue
        needed = _takes_value(option, word) if value is None else 0
        if index + needed > len(words):
            problems.append(f"{word} needs {needed} value(s)")
            break
        values = [value] if value is not None else list(words[index : index + needed])
        index += needed
        for given in values:
            problem = _choice_problem(option, given)
            if problem is not None:
                problems.append(f"{word} {given}: {problem}")
    return problems


def option_problems(path: tuple[str, ...], rest: tuple[str, ...], synopsis: bool) -> list[str]:
    command = _command(path)
    shown = f"plait {' '.join(path)}"
    if synopsis:  # `[-a/--all]`, `[--db URL]`, `-L/--label LABEL`: every option named must exist
        names = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", " ".join(rest))
        return [f"`{shown}` has no option {name}" for name in names if _option(command, name) is None]
    return [f"`{shown}`: {problem}" for problem in _argument_problems(command, rest)]


def check_command(line: CommandLine) -> list[str]:
    problems: list[str] = []
    for resolved in resolve(line.words):
        if isinstance(resolved, str):
            problems.append(resolved)
            continue
        path, rest = resolved
        problem = help_problem(path)
        if problem is not None:
            problems.append(problem)
        elif not isinstance(_command(path), click.Group):
            problems.extend(option_problems(path, rest, line.synopsis))
    return [f"{line.where}: {line.text}\n    {problem}" for problem in problems]


@pytest.mark.parametrize("path", DOCUMENTS, ids=_relative)
def test_plait_commands_parse(path: Path) -> None:
    problems: list[str] = []
    for block in ALL_BLOCKS[path]:
        if block.fragment:
            continue
        for line in command_lines(block):
            problems.extend([line] if isinstance(line, str) else check_command(line))
    assert not problems, "these plait commands of the documentation do not parse:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------------
# toml


@pytest.mark.parametrize("path", DOCUMENTS, ids=_relative)
def test_toml_blocks_parse(path: Path) -> None:
    problems = []
    for block in ALL_BLOCKS[path]:
        if block.language == "toml" and not block.fragment:
            try:
                tomllib.loads(block.code)
            except tomllib.TOMLDecodeError as exc:
                problems.append(f"{block.where}: {exc}")
    assert not problems, "these toml blocks do not parse:\n" + "\n".join(problems)
