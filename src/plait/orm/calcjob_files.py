"""The files of a calculation job: those it was sent, those retrieved, and its folder on the computer.

* **Sent** — the files the job got from plait, recorded on its
  :class:`~plait.orm.CalcJobNode` under ``raw_input/`` when it was uploaded:
  everything ``prepare_for_submission`` wrote, the job script
  (``_plait_submit.sh``) and the files of a portable code.  Files copied from
  input nodes (``local_copy_list``) are not recorded again: they are the input
  nodes themselves.  Files copied or linked on the computer
  (``remote_copy_list``, ``remote_symlink_list``) never passed through plait.
* **Retrieved** — the ``retrieved`` output (a ``FolderData``).
* **Parsed** — :func:`parsed_results`, what ``plait calcjob res`` prints.
* **Remote** — :class:`RemoteWorkdir`: the job's folder on its computer
  (the ``remote_folder`` output), listed, read and removed through the
  computer's transport.  Its methods are ``async`` (the transport contract
  is); a script without an event loop runs them with ``asyncio.run``.

Every problem raises :class:`CalcJobFileError` with a message that names the
job, the path and what to do instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from plait.orm.data.base import BaseType
from plait.orm.data.collections import Dict, List
from plait.orm.data.files import FolderData
from plait.orm.data.remote import RemoteData
from plait.orm.node import LinkType, Node
from plait.orm.process_nodes import CalcJobNode

if TYPE_CHECKING:
    from plait.orm.computer import Computer
    from plait.transports import FileAttributes, Transport

__all__ = [
    "RAW_INPUT",
    "CalcJobFileError",
    "FolderEntry",
    "RemoteWorkdir",
    "default_filename",
    "list_retrieved",
    "list_sent",
    "parsed_results",
    "read_retrieved",
    "read_sent",
    "retrieved_folder",
]

#: the folder of a CalcJobNode's files that holds what the job was sent
RAW_INPUT = "raw_input"
#: the output that holds the parsed results, by aiida-core's convention
OUTPUT_PARAMETERS = "output_parameters"
_NOT_RESULTS = ("retrieved", "remote_folder")


class CalcJobFileError(Exception):
    """A file or folder of a calculation job is not there, or cannot be reached; the message says why."""


@dataclass(frozen=True)
class FolderEntry:
    """One name in a listed folder: a file, or a folder (``is_dir``)."""

    name: str
    is_dir: bool


def _job(node: CalcJobNode) -> str:
    return f"calculation job {node.pk}"


def _clean(path: str | None) -> str:
    """A relative path in a node's folder ("" for the top); ``..`` and absolute paths are refused."""
    parts = [part for part in (path or "").replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts or (path or "").startswith("/"):
        raise CalcJobFileError(f"'{path}' is not a relative path inside the job's folder")
    return "/".join(parts)


def _list_files(files: list[str], path: str, what: str) -> list[FolderEntry]:
    """The entries directly inside ``path`` of a folder whose files are ``files`` (full relative paths)."""
    path = _clean(path)
    if path in files:  # a file: ``ls FILE`` shows the file
        return [FolderEntry(posixpath.basename(path), False)]
    prefix = f"{path}/" if path else ""
    entries: dict[str, bool] = {}
    for relpath in files:
        if relpath.startswith(prefix):
            head, sep, _ = relpath[len(prefix) :].partition("/")
            entries[head] = entries.get(head, False) or bool(sep)
    if path and not entries:
        raise CalcJobFileError(f"{what} have no file or folder '{path}' ({_names(files)})")
    return [FolderEntry(name, is_dir) for name, is_dir in sorted(entries.items())]


def _read_file(node: Node, files: list[str], strip: str, path: str | None, what: str) -> bytes:
    relpath = _clean(path)
    if not relpath:
        raise CalcJobFileError(f"give the path of a file among {what}")
    if relpath not in files:
        if any(f.startswith(relpath + "/") for f in files):
            raise CalcJobFileError(f"'{relpath}' is a folder among {what}, not a file: list it instead")
        raise CalcJobFileError(f"{what} have no file '{relpath}' ({_names(files)})")
    return node.get_object_content(strip + relpath, "rb")


def _names(files: list[str], limit: int = 12) -> str:
    if not files:
        return "there are none"
    shown = ", ".join(files[:limit])
    return f"they are: {shown}" + (f" and {len(files) - limit} more" if len(files) > limit else "")


def _sent_files(node: CalcJobNode) -> list[str]:
    prefix = f"{RAW_INPUT}/"
    return [p[len(prefix) :] for p in node.list_file_paths() if p.startswith(prefix)]


def list_sent(node: CalcJobNode, path: str = "") -> list[FolderEntry]:
    """What is directly in the folder ``path`` of the files the job was sent ("" for the top).

    Raises:
        CalcJobFileError: no such file or folder.
    """
    return _list_files(_sent_files(node), path, f"the files sent to {_job(node)}")


def read_sent(node: CalcJobNode, path: str | None) -> bytes:
    """The content of the file ``path`` that the job was sent.

    Raises:
        CalcJobFileError: no such file, or ``path`` is a folder.
    """
    return _read_file(node, _sent_files(node), f"{RAW_INPUT}/", path, f"the files sent to {_job(node)}")


def retrieved_folder(node: CalcJobNode) -> FolderData:
    """The ``retrieved`` output of the job.

    Raises:
        CalcJobFileError: the job has no such output (yet): it has not reached the retrieve step.
    """
    for label, _, output in node.get_outgoing((LinkType.CREATE,)):
        if label == "retrieved" and isinstance(output, FolderData):
            return output
    raise CalcJobFileError(
        f"{_job(node)} has no retrieved files ({node.process_state.value}): "
        "its files are retrieved when the job has run"
    )


def list_retrieved(node: CalcJobNode, path: str = "") -> list[FolderEntry]:
    """What is directly in the folder ``path`` of the job's retrieved files.

    Raises:
        CalcJobFileError: nothing retrieved yet, or no such file or folder.
    """
    return _list_files(retrieved_folder(node).list_file_paths(), path, f"the retrieved files of {_job(node)}")


def read_retrieved(node: CalcJobNode, path: str | None) -> bytes:
    """The content of the retrieved file ``path``.

    Raises:
        CalcJobFileError: nothing retrieved yet, no such file, or ``path`` is a folder.
    """
    folder = retrieved_folder(node)
    return _read_file(folder, folder.list_file_paths(), "", path, f"the retrieved files of {_job(node)}")


def default_filename(node: CalcJobNode, which: str) -> str | None:
    """The job's ``input_filename`` or ``output_filename`` option (``which`` is "input" or "output").

    Calculations that read one input file and write one output file
    (``arithmetic.add``: ``plait.in`` and ``plait.out``) declare them, so
    ``inputcat``/``outputcat``/``remotecat`` need no path for them.
    """
    options = (node.get_attribute("metadata") or {}).get("options") or {}
    value = options.get(f"{which}_filename")
    return value if isinstance(value, str) and value else None


def parsed_results(node: CalcJobNode) -> dict[str, Any]:
    """What the parser made of the job, as one JSON object.

    The content of the ``output_parameters`` output when the job has one (a
    ``Dict``, as aiida-core's ``verdi calcjob res`` shows); otherwise the
    values of the job's outputs that hold values (``Int``, ``Float``, ``Str``,
    ``Bool``, ``Dict``, ``List``) by output label — ``{"sum": 7}`` for
    ``arithmetic.add``.

    Raises:
        CalcJobFileError: the job has no such output (not parsed yet, or its parser made none).
    """
    values: dict[str, Any] = {}
    for label, _, output in node.get_outgoing((LinkType.CREATE,)):
        if label == OUTPUT_PARAMETERS and isinstance(output, Dict):
            return output.get_dict()
        if label not in _NOT_RESULTS and isinstance(output, (BaseType, Dict, List)):
            values[label.replace("__", ".")] = output.value
    if not values:
        raise CalcJobFileError(
            f"{_job(node)} has no parsed results ({node.process_state.value}): no output holds a value "
            "(its files are shown by `plait calcjob outputls`)"
        )
    return values


# -- the work folder on the computer --------------------------------------------------------------


def _remote_folder(node: CalcJobNode) -> RemoteData:
    for label, _, output in node.get_outgoing((LinkType.CREATE,)):
        if label == "remote_folder" and isinstance(output, RemoteData):
            return output
    raise CalcJobFileError(
        f"{_job(node)} has no remote folder ({node.process_state.value}): "
        "its folder on the computer is made when the job is uploaded"
    )


class RemoteWorkdir:
    """The work folder of a calculation job on its computer, reached through the computer's transport.

    Make one with :meth:`of` (that reads the database: do it outside the event
    loop), then ``async with workdir:`` opens the connection for the
    operations inside the block.  Paths are relative to the work folder.
    """

    def __init__(self, node: CalcJobNode, remote: RemoteData, computer: Computer) -> None:
        self.node = node
        #: the ``remote_folder`` output of the job
        self.remote = remote
        self.computer = computer
        #: the absolute path of the folder on the computer
        self.path = remote.remote_path
        self._config = computer.get_config()  # read now: the database is not read inside the loop
        self._transport: Transport | None = None
        self._own: contextlib.AbstractAsyncContextManager[RemoteWorkdir] = contextlib.nullcontext(self)

    @classmethod
    def of(cls, node: CalcJobNode) -> RemoteWorkdir:
        """The work folder of ``node``.

        Raises:
            CalcJobFileError: the job has no remote folder (not uploaded yet), or the folder was cleaned.
        """
        remote = _remote_folder(node)
        computer = remote.computer
        if computer is None:  # RemoteData cannot be stored without a computer
            raise CalcJobFileError(f"the remote folder of {_job(node)} names no computer")
        workdir = cls(node, remote, computer)
        if remote.is_cleaned:
            raise CalcJobFileError(
                f"the work folder of {_job(node)} ({workdir.where}) was removed by "
                "`plait calcjob cleanworkdir`; its retrieved files are still shown by "
                "`plait calcjob outputls`"
            )
        return workdir

    @property
    def where(self) -> str:
        """``path on computer`` for messages."""
        return f"{self.path} on {self.computer.label}"

    # -- connection ------------------------------------------------------------------------------
    def open_transport(self) -> Transport:
        """A new, unopened async transport to the computer (a blocking plugin is wrapped).

        Raises:
            CalcJobFileError: the transport plugin is missing or refuses the computer's configuration.
        """
        from plait.transports import as_async

        try:
            return as_async(self.computer.get_transport())  # the configuration was read by __init__
        except (LookupError, ValueError, TypeError) as exc:
            label = self.computer.label
            raise CalcJobFileError(
                f"cannot make the {self.computer.transport_type} transport of computer '{label}': {exc} "
                f"(see `plait computer configure {label} --show`)"
            ) from None

    @contextlib.asynccontextmanager
    async def connection(self, transport: Transport | None = None) -> AsyncIterator[RemoteWorkdir]:
        """Run the operations of the block through ``transport``, or through a connection of its own.

        A given ``transport`` must be open and reach this folder's computer; it is
        left open at the end, so that the work folders of many jobs on one
        computer share one connection (login nodes ban clients that connect too
        often).  Without one, a connection is opened and closed around the block.
        """
        if transport is not None:
            self._transport = transport
            try:
                yield self
            finally:
                self._transport = None
            return
        own = self.open_transport()
        await own.open()
        self._transport = own
        try:
            yield self
        finally:
            self._transport = None
            await own.close()

    async def __aenter__(self) -> RemoteWorkdir:
        """``async with workdir:`` is ``async with workdir.connection():``."""
        self._own = self.connection()
        return await self._own.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._own.__aexit__(kind, error, trace)

    def _connected(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("open the work folder first: `async with workdir:` or `workdir.connection()`")
        return self._transport

    def _absolute(self, path: str | None) -> str:
        relpath = _clean(path)
        return posixpath.join(self.path, relpath) if relpath else self.path

    # -- operations --------------------------------------------------------------------------------
    async def listdir(self, path: str = "") -> list[tuple[str, FileAttributes]]:
        """``(name, attributes)`` of each entry of the folder ``path``, sorted; a file lists itself.

        Raises:
            CalcJobFileError: no such file or folder on the computer.
            plait.transports.TransportError: the computer cannot be reached.
        """
        from plait.transports import PathNotFoundError

        transport = self._connected()
        target = self._absolute(path)
        try:
            attributes = await transport.stat(target)
            if not attributes.is_dir:
                return [(posixpath.basename(target), attributes)]
            listing = await transport.listdir_with_attributes(target)
        except PathNotFoundError:
            raise CalcJobFileError(self._missing(path)) from None
        return sorted(listing.items())

    async def read(self, path: str | None) -> bytes:
        """The content of the file ``path`` in the work folder.

        Raises:
            CalcJobFileError: no such file, or ``path`` is a folder.
            plait.transports.TransportError: the computer cannot be reached.
        """
        from plait.transports import IsADirectoryTransportError, PathNotFoundError

        if not _clean(path):
            raise CalcJobFileError(f"give the path of a file in the work folder of {_job(self.node)}")
        transport = self._connected()
        target = self._absolute(path)
        try:
            if await transport.isdir(target):
                raise IsADirectoryTransportError(target)
            return await transport.read_bytes(target)
        except PathNotFoundError:
            raise CalcJobFileError(self._missing(path)) from None
        except IsADirectoryTransportError:
            raise CalcJobFileError(
                f"'{_clean(path)}' is a folder in the work folder of {_job(self.node)}, not a file: list it "
                "instead"
            ) from None

    async def clean(self) -> bool:
        """Remove the work folder from the computer and record it on the ``remote_folder`` node.

        The node stays (it is provenance); its extra ``cleaned`` becomes True
        (:attr:`RemoteData.is_cleaned`).  False when the folder was already
        gone from the computer (it is marked cleaned all the same).

        Raises:
            CalcJobFileError: the recorded path is not one this job's folder can be (``/``, relative).
            plait.transports.TransportError: the computer cannot be reached, or refuses.
        """
        path = self.path
        if not posixpath.isabs(path) or len([p for p in path.split("/") if p]) < 2:
            raise CalcJobFileError(
                f"refusing to remove '{path}' on {self.computer.label}: not the work folder of a job"
            )
        transport = self._connected()
        existed = await transport.exists(path)
        if existed:
            await transport.rmtree(path)
        await asyncio.to_thread(self.remote.set_extra, RemoteData.KEY_EXTRA_CLEANED, True)
        return existed

    def _missing(self, path: str | None) -> str:
        relpath = _clean(path)
        if not relpath:
            return (
                f"the work folder of {_job(self.node)} ({self.where}) does not exist: "
                "it was removed from the computer"
            )
        return f"the work folder of {_job(self.node)} ({self.where}) has no file or folder '{relpath}'"

    # -- going there -------------------------------------------------------------------------------
    def goto_command(self) -> str:
        """What to type to go to the work folder: ``cd DIR`` on a local computer, else the ssh command.

        Raises:
            CalcJobFileError: see :meth:`shell_command`.
        """
        if self.computer.transport_type == "local":
            return f"cd {shlex.quote(self.path)}"
        return shlex.join(self.shell_command())

    def shell_command(self) -> list[str]:
        """The command (argument list) that opens a shell in the work folder.

        For the local transport a shell started in the folder; for the SSH
        transports ``ssh -t HOST 'cd DIR && exec $SHELL -l'`` with the
        computer's port, user, key files, known-hosts file and jump hosts.

        Raises:
            CalcJobFileError: the transport plugin is neither local nor SSH (plait knows no command for it).
        """
        transport = self.computer.transport_type
        if transport == "local":
            return ["sh", "-c", f'cd {shlex.quote(self.path)} && exec "${{SHELL:-/bin/sh}}"']
        if transport not in ("ssh", "ssh-blocking"):
            raise CalcJobFileError(
                f"the {transport} transport of computer '{self.computer.label}' has no shell command: "
                f"the work folder is {self.where}"
            )
        config = self._config
        command = ["ssh", "-t"]
        if config.get("port"):
            command += ["-p", str(config["port"])]
        if config.get("username"):
            command += ["-l", str(config["username"])]
        keys = config.get("key_filenames")
        for key in [keys] if isinstance(keys, str) else keys or []:
            command += ["-i", str(key)]
        if config.get("known_hosts_file"):
            command += ["-o", f"UserKnownHostsFile={config['known_hosts_file']}"]
        if config.get("allow_unknown_host_key"):
            command += ["-o", "StrictHostKeyChecking=accept-new"]
        if "config_file" in config:
            command += ["-F", str(config["config_file"] or "none")]
        if config.get("proxy_jump"):
            command += ["-J", str(config["proxy_jump"])]
        remote_shell = f'cd {shlex.quote(self.path)} && exec "${{SHELL:-/bin/sh}}" -l'
        return [*command, self.computer.hostname, remote_shell]
