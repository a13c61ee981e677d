"""Local-disk helpers shared by the plugins: temporary names, atomic writes, tree walks.

Everything here is blocking on purpose: async plugins call these functions
through ``asyncio.to_thread`` so that the event loop never waits on a disk.
Errors are the standard ``OSError`` subclasses; the plugin that calls them
decides whether a failure is a local problem (re-raised as it is) or a
"remote" one (the ``local`` plugin's remote *is* the local disk) and maps it.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from types import ModuleType

from .contract import LocalPath

#: every temporary name starts with a dot and contains this marker.
TEMPORARY_MARKER = ".plait-tmp-"


def temporary_sibling(path: str, *, pathmod: ModuleType = posixpath) -> str:
    """A fresh hidden name in the folder of ``path``, for writing before a rename.

    ``pathmod`` is :mod:`posixpath` for remote paths and :mod:`os.path` for local ones.
    """
    head, tail = pathmod.split(path)
    return str(pathmod.join(head, f".{tail}{TEMPORARY_MARKER}{secrets.token_hex(6)}"))


def is_temporary_name(name: str) -> bool:
    """True for names made by :func:`temporary_sibling` (tests look for leftovers)."""
    return name.startswith(".") and TEMPORARY_MARKER in name


@dataclass
class LocalTree:
    """The content of a local folder, as paths relative to it (POSIX separators).

    ``folders`` lists parents before children.  Symlinks (to files, folders
    or nothing) are listed with their target and never followed.  Special
    files (sockets, FIFOs, devices) are left out: they cannot be transferred.
    """

    folders: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    symlinks: list[tuple[str, str]] = field(default_factory=list)


def walk_local_tree(root: LocalPath) -> LocalTree:
    """Walk the local folder ``root``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is not a folder.
    """
    root_str = os.fspath(root)
    if not os.path.isdir(root_str):
        if not os.path.lexists(root_str):
            raise FileNotFoundError(2, "No such file or directory", root_str)
        raise NotADirectoryError(20, "Not a directory", root_str)
    tree = LocalTree()

    def visit(folder: str, relative: str) -> None:
        with os.scandir(folder) as entries:
            ordered = sorted(entries, key=lambda entry: entry.name)
        for entry in ordered:
            rel = posixpath.join(relative, entry.name) if relative else entry.name
            if entry.is_symlink():
                tree.symlinks.append((rel, os.readlink(entry.path)))
            elif entry.is_dir(follow_symlinks=False):
                tree.folders.append(rel)
                visit(entry.path, rel)
            elif entry.is_file(follow_symlinks=False):
                tree.files.append(rel)

    visit(root_str, "")
    return tree


def local_join(root: LocalPath, relative: str) -> str:
    """Join a POSIX relative path (from :class:`LocalTree`) onto a local folder."""
    return os.path.join(os.fspath(root), *relative.split("/"))


class AtomicLocalFile:
    """A local file written under a temporary name and renamed into place on :meth:`commit`.

    Used for downloads: a reader of ``target`` sees the old file or the whole
    new one, never a part.  :meth:`discard` removes the temporary file after
    a failure.  All methods block; call them from a thread in async code.
    """

    def __init__(self, target: LocalPath) -> None:
        self.target = os.fspath(target)
        if os.path.isdir(self.target):
            raise IsADirectoryError(21, "Is a directory", self.target)
        self.temporary = temporary_sibling(self.target, pathmod=os.path)
        self._file = open(self.temporary, "xb")  # closed by commit() or discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self, mode: int | None = None) -> None:
        """Close, set the permission bits (if given) and rename onto the target."""
        self._file.close()
        if mode is not None:
            os.chmod(self.temporary, stat.S_IMODE(mode))
        os.replace(self.temporary, self.target)

    def discard(self) -> None:
        """Close and delete the temporary file; never raises."""
        try:
            self._file.close()
        finally:
            try:
                os.unlink(self.temporary)
            except OSError:
                pass


def write_file_atomically(target: LocalPath, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``target`` through a temporary file; set the permission bits if given."""
    atomic = AtomicLocalFile(target)
    try:
        atomic.write(data)
        atomic.commit(mode)
    except BaseException:
        atomic.discard()
        raise


class LocalSource:
    """A local file read in chunks for an upload.

    Opening it reads the first chunk, so a small file costs a single trip to
    a worker thread; the file is closed as soon as its end is reached.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: from opening ``path``.
    """

    def __init__(self, path: LocalPath, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self._file = open(path, "rb")  # closed by read() at the end, or close()
        try:
            self.mode = stat.S_IMODE(os.fstat(self._file.fileno()).st_mode)
            self.first = self.read()
        except BaseException:
            self._file.close()
            raise

    @property
    def finished(self) -> bool:
        return self._file.closed

    def read(self) -> bytes:
        """The next chunk; a short one is the last."""
        data = self._file.read(self.chunk_size)
        if len(data) < self.chunk_size:
            self._file.close()
        return data

    def close(self) -> None:
        self._file.close()


def copy_file_atomically(source: LocalPath, destination: LocalPath) -> None:
    """Copy a local file's data and permission bits; ``destination`` appears whole or not at all."""
    source_str = os.fspath(source)
    target = AtomicLocalFile(destination)
    try:
        with open(source_str, "rb") as reader:
            shutil.copyfileobj(reader, target._file, 1024 * 1024)
        target.commit(os.stat(source_str).st_mode)
    except BaseException:
        target.discard()
        raise


def replace_with_symlink(target: str, link_path: str) -> None:
    """Create the symlink ``link_path`` → ``target``, replacing a file or link already there."""
    try:
        os.symlink(target, link_path)
    except FileExistsError:
        if os.path.isdir(link_path) and not os.path.islink(link_path):
            raise
        os.unlink(link_path)
        os.symlink(target, link_path)


def copy_local_tree(source: LocalPath, destination: LocalPath) -> None:
    """Copy the local folder ``source`` as ``destination`` (merged into it if it exists).

    Files are copied atomically, symlinks recreated with the same target.
    """
    tree = walk_local_tree(source)
    os.makedirs(destination, exist_ok=True)
    for folder in tree.folders:
        os.makedirs(local_join(destination, folder), exist_ok=True)
    for name in tree.files:
        copy_file_atomically(local_join(source, name), local_join(destination, name))
    for name, link_target in tree.symlinks:
        replace_with_symlink(link_target, local_join(destination, name))
