"""``shell``: run any command on a computer, with input files and output files, no plugin needed.

::

    from plait.calculations.shell import run_shell_job
    from plait.orm import SinglefileData

    results, node = run_shell_job(
        "wc", arguments=["-l", "{table}"],
        nodes={"table": SinglefileData(b"a\\nb\\n", filename="table.txt")},
    )
    print(results["stdout"].get_content())   # "2 table.txt"

Inputs:

* ``command`` — the executable, an absolute path or a name found in
  ``PATH`` on the computer;
* or ``code`` instead — an ``InstalledCode`` (its executable on its
  computer, which runs the job) or a ``PortableCode`` (uploaded into the
  job's folder); the job runs exactly the code it records as its input.
  Giving both, or neither, is refused before anything is stored;
* ``arguments`` — a list of strings; ``{name}`` is replaced by the file name
  of the node ``nodes.name`` (``./-x`` for a file named ``-x``, so that the
  command never takes it for an option), or by the value of a
  ``Str``/``Int``/``Float``;
* ``nodes`` — files (``SinglefileData``, copied under their file name) and
  folders (``FolderData``, copied as a folder named like the key);
* ``outputs`` — file names or globs to retrieve and attach as outputs:
  relative paths inside the job's folder (absolute paths, ``..`` and NUL are
  refused at launch, before anything is stored).

Outputs: ``stdout``, ``stderr`` and each retrieved file as ``SinglefileData``
(the label is the file name with ``.`` and ``-`` turned into ``_``).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from plait.engine.calcjob import CalcInfo, CalcJob, CodeInfo, RetrieveItem
from plait.engine.spec import ProcessSpec
from plait.orm import BaseType, Data, FolderData, List, Node, ProcessNode, SinglefileData, Str
from plait.orm.code import Code
from plait.transports.relative_paths import UnsafePathError, as_operand, check_relative_path

__all__ = ["ShellJob", "output_label", "run_shell_job"]

STDOUT = "stdout"
STDERR = "stderr"


def output_label(filename: str) -> str:
    """The output link label of a retrieved file: ``out.txt`` becomes ``out_txt``."""
    label = re.sub(r"[^0-9A-Za-z_]", "_", filename.rsplit("/", 1)[-1]).strip("_") or "file"
    return f"file_{label}" if label[0].isdigit() else label


def _check_code_or_command(inputs: Any, _namespace: Any = None) -> str | None:
    """Exactly one of ``code`` and ``command``: what runs is what the provenance records."""
    if "code" in inputs and "command" in inputs:
        return (
            "give a `code` or a `command`, not both: the job runs the code's executable, so a "
            "command beside it would be recorded but not run"
        )
    if "code" not in inputs and "command" not in inputs:
        return "give a `code` or a `command` (the executable to run)"
    return None


def _check_arguments(value: Any) -> str | None:
    items = value.get_list() if isinstance(value, List) else None
    if items is None or not all(isinstance(item, str) for item in items):
        return "arguments must be a List of strings"
    for item in items:
        if "\0" in item:
            return f"argument {item!r} contains a NUL character, which no program can receive"
    return None


def _check_outputs(value: Any) -> str | None:
    """Each output is a file name or glob inside the job's folder (it is fetched to the same place)."""
    items = value.get_list() if isinstance(value, List) else None
    if items is None or not all(isinstance(item, str) for item in items):
        return "outputs must be a List of file names or globs"
    for item in items:
        try:
            check_relative_path(item, "output")
        except UnsafePathError as exc:
            return str(exc)
    return None


class ShellJob(CalcJob):
    """Run a shell command as a calculation job (see the module docstring)."""

    _default_parser = "shell"

    @classmethod
    def define(cls, spec: ProcessSpec) -> None:
        super().define(spec)
        spec.input(
            "command",
            valid_type=Str,
            required=False,
            help="the executable: absolute path or name in PATH (or give a code instead)",
        )
        spec.input("arguments", valid_type=List, required=False, validator=_check_arguments)
        spec.input_namespace("nodes", dynamic=True, valid_type=Data, help="files, folders and values")
        spec.input(
            "outputs",
            valid_type=List,
            required=False,
            validator=_check_outputs,
            help="file names or globs (relative, inside the job's folder) to attach",
        )
        spec.output(STDOUT, valid_type=SinglefileData, required=False)
        spec.output(STDERR, valid_type=SinglefileData, required=False)
        spec.outputs.dynamic = True
        spec.outputs.valid_type = (Data,)
        spec.inputs.validator = _check_code_or_command

    def _substitutions(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for key, node in (self.inputs.get("nodes") or {}).items():
            if isinstance(node, SinglefileData):
                values[key] = as_operand(node.filename)  # a file "-rf" reaches the command as ./-rf
            elif isinstance(node, FolderData):
                values[key] = key
            elif isinstance(node, BaseType):
                values[key] = str(node.value)
        return values

    def prepare_for_submission(self, folder: Path) -> CalcInfo:
        substitutions = self._substitutions()
        arguments = []
        for argument in self.inputs["arguments"].get_list() if "arguments" in self.inputs else []:
            fields = {name for _, name, _, _ in string.Formatter().parse(argument) if name}
            missing = fields - set(substitutions)
            if missing:
                raise ValueError(
                    f"argument '{argument}' names {', '.join(sorted(missing))}, which no node provides"
                )
            arguments.append(argument.format(**substitutions) if fields else argument)
        copies: list[tuple[Node, str, str]] = []
        for key, node in (self.inputs.get("nodes") or {}).items():
            if isinstance(node, SinglefileData):
                copies.append((node, node.filename, node.filename))
            elif isinstance(node, FolderData):
                copies.append((node, "", key))
        retrieve: list[RetrieveItem] = [STDOUT, STDERR]
        if "outputs" in self.inputs:
            retrieve.extend(self.inputs["outputs"].get_list())
        return CalcInfo(
            codes_info=[
                CodeInfo(
                    # with a `code` input the engine runs that code (executable, prepend text, MPI)
                    executable=self.inputs["command"].value if "command" in self.inputs else None,
                    cmdline_params=arguments,
                    stdout_name=STDOUT,
                    stderr_name=STDERR,
                )
            ],
            local_copy_list=copies,
            retrieve_list=retrieve,
        )


def run_shell_job(
    command: str | None = None,
    *,
    code: Code | None = None,
    arguments: list[str] | None = None,
    nodes: dict[str, Data] | None = None,
    outputs: list[str] | None = None,
    computer: str | None = None,
    options: dict[str, Any] | None = None,
    submit: bool = False,
) -> tuple[dict[str, Any], ProcessNode]:
    """Run (or submit) a :class:`ShellJob` of ``command`` or of ``code``; returns ``(outputs, node)``
    (outputs empty when submitted).

    Raises:
        ValueError: both ``command`` and ``code``, or neither (nothing stored).
    """
    from plait.engine.launch import run_get_node
    from plait.engine.launch import submit as submit_process

    problem = _check_code_or_command({k for k, v in (("code", code), ("command", command)) if v is not None})
    if problem:
        raise ValueError(f"run_shell_job: {problem}")
    inputs: dict[str, Any] = {"nodes": dict(nodes or {})}
    if code is not None:
        inputs["code"] = code
    else:
        inputs["command"] = Str(command)
    if arguments is not None:
        inputs["arguments"] = List(list(arguments))
    if outputs is not None:
        inputs["outputs"] = List(list(outputs))
    metadata: dict[str, Any] = {"options": dict(options or {})}
    if computer is not None:
        metadata["computer"] = computer
    inputs["metadata"] = metadata
    if submit:
        return {}, submit_process(ShellJob, inputs)
    return run_get_node(ShellJob, inputs)
