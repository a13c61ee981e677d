"""A process's files on disk: a folder tree that mirrors its call hierarchy.

:func:`dump_process` writes, for a process and every process it called::

    dump-<label>-<pk>/
        plait_node_metadata.json    what the process is: class, state, exit status, times, pk/uuid...
        inputs/<link label>.json    an input that holds a value (Int, Float, Str, Bool, Dict, List)
        inputs/<link label>/...     an input that holds files (SinglefileData, FolderData): the files
        outputs/...                 the same for the outputs
        raw_input/...               (calculation jobs) the files that were sent: the prepared inputs
                                    and the job script
        retrieved/...               (calculation jobs) the files retrieved from the job's folder
        01-<call label>/...         (workflows) each called process, in call order, the same way

Nested namespaces become sub-folders (``parameters.x`` is ``inputs/parameters/x.json``).
A data node that holds neither a value nor files (a ``RemoteData``, an
``InstalledCode``) is written as the JSON of its attributes.  The metadata
file is JSON (no extra dependency), and it lists every input and output with
its pk, uuid, type and where it was written.

A called process's folder is ``NN-<label>``: ``NN`` its place in the call
order (two digits, more when needed), the label its call link label, or its
process label when the caller gave none.  With ``flat=True`` every process
of the tree gets its folder directly in the dump folder instead of inside its
caller's, numbered in depth-first call order, so that one glob
(``dump/*/retrieved/*.out``) reaches every step.

The dump is written into a temporary folder beside the target and moved into
place at the end, so an error never leaves half a dump behind, and an
existing dump is replaced only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from plait.orm.data.base import BaseType
from plait.orm.data.collections import Dict, List
from plait.orm.node import LinkType, Node
from plait.orm.process_nodes import CalcJobNode, ProcessNode

__all__ = [
    "METADATA_FILENAME",
    "DumpError",
    "DumpExistsError",
    "NotADumpError",
    "default_dump_path",
    "dump_process",
    "is_process_dump",
]

#: the metadata file written in every process folder of a dump
METADATA_FILENAME = "plait_node_metadata.json"
#: the key of the metadata that marks a folder as a dump (checked before an overwrite)
DUMP_KEY = "plait_dump"
DUMP_FORMAT_VERSION = 1
#: the sections of a process folder
INPUTS, OUTPUTS, RAW_INPUT, RETRIEVED = "inputs", "outputs", "raw_input", "retrieved"

_CALL_TYPES = (LinkType.CALL_CALC, LinkType.CALL_WORK)
_DEFAULT_CALL_LABEL = "CALL"
_UNSAFE = re.compile(r"[^0-9A-Za-z._+-]+")


class DumpError(Exception):
    """A process cannot be dumped to the path asked for."""


class DumpExistsError(DumpError, FileExistsError):
    """The target folder exists and ``overwrite`` was not given: nothing was changed."""


class NotADumpError(DumpError):
    """The target exists but is not a dump written by plait: it is never overwritten (it may be user data)."""


def _safe_name(text: str, fallback: str) -> str:
    """``text`` as one file name: unusual characters become ``_``, no leading dot, at most 80 characters."""
    name = _UNSAFE.sub("_", text).strip("._")[:80]
    return name or fallback


def default_dump_path(node: ProcessNode) -> Path:
    """``dump-<label>-<pk>`` in the current folder: the node's label, else its process label."""
    label = _safe_name(node.label or node.process_label, "process")
    return Path(f"dump-{label}-{node.pk}")


def is_process_dump(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder whose metadata file says a plait process dump wrote it."""
    metadata = Path(path) / METADATA_FILENAME
    try:
        content = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and isinstance(content.get(DUMP_KEY), dict)


def dump_process(
    node: ProcessNode,
    output_path: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    flat: bool = False,
) -> Path:
    """Write the files of ``node`` and of every process it called into ``output_path``; return that path.

    ``output_path`` defaults to :func:`default_dump_path` (``dump-<label>-<pk>``);
    its parent folders are created.  An existing empty folder is used as it
    is.  A process that has not terminated is dumped as it is now (its
    metadata says its state).

    Raises:
        TypeError: ``node`` is not a stored process node.
        DumpExistsError: ``output_path`` exists, is not empty, and ``overwrite`` is False.
        NotADumpError: ``output_path`` exists and is not a previous dump (no metadata file of
            plait's), or is a file or a symbolic link: it is never replaced, even with ``overwrite``.
        OSError: the folder cannot be written.
    """
    if not isinstance(node, ProcessNode) or node.pk is None:
        raise TypeError(f"only a stored process node can be dumped, got {node!r}")
    target = Path(output_path) if output_path is not None else default_dump_path(node)
    replace = _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _ProcessDumper(flat).dump_tree(node, staging)
        _move_into_place(staging, target, replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_target(target: Path, overwrite: bool) -> bool:
    """Whether an existing dump at ``target`` must be replaced; raise if the target must not be touched."""
    if target.is_symlink():
        raise NotADumpError(f"'{target}' is a symbolic link: give the folder it points to, or another path")
    if not target.exists():
        return False
    if not target.is_dir():
        raise NotADumpError(f"'{target}' exists and is not a folder: choose another path")
    if not any(target.iterdir()):
        return True
    looks_like_dump = is_process_dump(target)
    if not overwrite:
        advice = (
            "give --overwrite to replace it"
            if looks_like_dump
            else "it is not a plait process dump, so it is never overwritten: choose another path"
        )
        raise DumpExistsError(f"the folder '{target}' exists already and nothing was changed: {advice}")
    if not looks_like_dump:
        raise NotADumpError(
            f"the folder '{target}' is not a plait process dump (it has no {METADATA_FILENAME} written "
            "by `plait process dump`): it is not overwritten, choose another path"
        )
    return True


def _move_into_place(staging: Path, target: Path, replace: bool) -> None:
    if not replace:
        staging.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)  # put the previous dump back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _iso(value: _dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _node_value(node: Node) -> Any:
    """What a value node holds; the attributes of any other node without files."""
    if isinstance(node, BaseType):
        return node.value
    if isinstance(node, (Dict, List)):
        return node.value
    return node.attributes


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _copy_files(node: Node, relpaths: Iterable[str], strip: str, destination: Path) -> list[str]:
    """Copy files of ``node`` (their ``strip`` prefix removed) below ``destination``; their new paths."""
    written = []
    for relpath in relpaths:
        name = relpath[len(strip) :]
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        node.copy_file_to(relpath, target)
        written.append(name)
    return written


class _ProcessDumper:
    """Writes one process folder after the other (see the module docstring)."""

    def __init__(self, flat: bool) -> None:
        self.flat = flat
        self.root: Path | None = None
        self.counter = 0

    def dump_tree(self, node: ProcessNode, folder: Path) -> None:
        self.root = folder
        self._dump(node, folder, is_root=True)

    def _dump(self, node: ProcessNode, folder: Path, *, is_root: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        metadata = self._metadata(node, is_root)
        incoming = [link for link in node.get_incoming() if link[1] not in _CALL_TYPES]
        metadata["inputs"] = self._dump_links(incoming, folder, INPUTS)
        outgoing = node.get_outgoing((LinkType.CREATE, LinkType.RETURN))
        if isinstance(node, CalcJobNode):
            retrieved = [n for label, _, n in outgoing if label == RETRIEVED]
            outgoing = [link for link in outgoing if link[0] != RETRIEVED]
            sent = [p for p in node.list_file_paths() if p.startswith(f"{RAW_INPUT}/")]
            metadata[RAW_INPUT] = _copy_files(node, sent, f"{RAW_INPUT}/", folder / RAW_INPUT)
            if retrieved:
                files = retrieved[0].list_file_paths()
                metadata[RETRIEVED] = {
                    "pk": retrieved[0].pk,
                    "uuid": retrieved[0].uuid,
                    "files": _copy_files(retrieved[0], files, "", folder / RETRIEVED),
                }
            else:
                metadata[RETRIEVED] = None
        metadata["outputs"] = self._dump_links(outgoing, folder, OUTPUTS)
        metadata["called"] = self._dump_called(node, folder)
        _write_json(folder / METADATA_FILENAME, metadata)

    def _dump_called(self, node: ProcessNode, folder: Path) -> list[dict[str, Any]]:
        calls = node.get_outgoing(_CALL_TYPES)
        width = max(2, len(str(len(calls))))
        assert self.root is not None
        summary = []
        for index, (label, _, child) in enumerate(calls, start=1):
            assert isinstance(child, ProcessNode)  # CALL links join process nodes only
            name = label if label and label != _DEFAULT_CALL_LABEL else child.process_label
            if self.flat:
                self.counter += 1
                parent, number = self.root, self.counter
                width = max(2, len(str(number)))
            else:
                parent, number = folder, index
            child_folder = parent / f"{number:0{width}d}-{_safe_name(name, 'process')}"
            where = Path(os.path.relpath(child_folder, folder)).as_posix()
            summary.append({"pk": child.pk, "call_label": label, "folder": where})
            self._dump(child, child_folder)
        return summary

    def _metadata(self, node: ProcessNode, is_root: bool) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        if is_root:
            metadata[DUMP_KEY] = {
                "format_version": DUMP_FORMAT_VERSION,
                "written": _dt.datetime.now(_dt.UTC).isoformat(),
                "flat": self.flat,
            }
        caller = node.caller
        metadata.update(
            {
                "class": type(node).__name__,
                "node_type": node.node_type,
                "process_type": node.process_type,
                "process_label": node.process_label,
                "pk": node.pk,
                "uuid": node.uuid,
                "label": node.label,
                "description": node.description,
                "state": node.process_state.value,
                "exit_status": node.exit_status,
                "exit_message": node.exit_message,
                "ctime": _iso(node.ctime),
                "mtime": _iso(node.mtime),
                "caller": caller.pk if caller is not None else None,
            }
        )
        if node.exception:
            metadata["exception"] = node.exception
        if isinstance(node, CalcJobNode):
            metadata["job_id"] = node.job_id
            metadata["remote_workdir"] = node.remote_workdir
        return metadata

    def _dump_links(self, links: list[tuple[str, LinkType, Node]], folder: Path, name: str) -> dict[str, Any]:
        """Write each linked data node below ``folder/name``; its entry for the metadata by link label."""
        entries: dict[str, Any] = {}
        section = folder / name
        for label, _, data in links:
            parts = [_safe_name(part, "node") for part in label.split("__")]
            files = data.list_file_paths()
            if files:
                where = section.joinpath(*parts)
                _copy_files(data, files, "", where)
            else:
                where = section.joinpath(*parts[:-1], parts[-1] + ".json")
                _write_json(where, _node_value(data))
            entries[label.replace("__", ".")] = {
                "pk": data.pk,
                "uuid": data.uuid,
                "type": type(data).__name__,
                "path": where.relative_to(folder).as_posix(),
            }
        with contextlib.suppress(OSError):
            section.rmdir()  # leave no empty section folder (it fails when the folder has content)
        return entries
