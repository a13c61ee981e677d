"""A content-addressed file repository for node files.

Every file is stored once, under the SHA-256 of its content, in
``objects/<2 hex>/<62 hex>``.  A node records, for each of its files, the
relative path and the hash; two nodes with the same file share one object.
Objects are written to a temporary file in the same folder and renamed into
place, so a crash never leaves a half-written object under its final name.

Objects are never modified.  Deleting a node leaves its objects in place
(another node may share them); :meth:`FileRepository.remove_unreferenced`
(run by ``plait storage maintain``) removes those no node refers to any
more.  A node's files reach the repository *before* its row commits, so an
object nobody refers to yet may be about to be referred to: every put
refreshes the object's modification time, even when the content was
already there, and only objects whose time is older than a cut-off the
caller chooses are removed (see :meth:`FileRepository.remove_unreferenced`
for the whole argument).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from plait.storage.permissions import make_private_folders

__all__ = ["FileRepository", "ObjectNotFoundError", "RepositoryCleanup"]

_CHUNK = 1 << 20
_INCOMING = ".incoming-"  # a put being written (or left by a crash)
_TRASH = ".trash-"  # an object being removed by remove_unreferenced (or left by a crash)


class ObjectNotFoundError(KeyError):
    """The repository holds no object with that hash."""


@dataclass
class RepositoryCleanup:
    """What :meth:`FileRepository.remove_unreferenced` found and removed (or would remove)."""

    #: objects in the repository when it was scanned
    objects: int = 0
    #: objects that no node refers to and that were removed (with ``dry_run``: would be removed)
    removed: int = 0
    removed_bytes: int = 0
    #: objects that no node refers to but that are newer than the cut-off: kept
    kept_recent: int = 0
    kept_recent_bytes: int = 0
    #: half-written files of puts that crashed, removed (or, with ``dry_run``, found)
    leftovers: int = 0


class FileRepository:
    """The object store of one profile (thread-safe: writes are atomic renames)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"

    def _path(self, key: str) -> Path:
        return self._objects / key[:2] / key[2:]

    @staticmethod
    def _refresh(path: Path) -> bool:
        """Set the modification time of an existing object to now; False if there is no such object.

        A put of content that is already stored refreshes the object instead of writing it again,
        so :meth:`remove_unreferenced` never takes an object that a node is about to refer to.
        """
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except PermissionError:  # a repository shared read-only: the object is there, leave it be
            return path.is_file()
        return True

    def _commit_temp(self, tmp: Path, key: str) -> str:
        final = self._path(key)
        if self._refresh(final):
            tmp.unlink()
        else:
            make_private_folders(final.parent)
            os.replace(tmp, final)
        return key

    def _tempfile(self) -> tuple[int, Path]:
        make_private_folders(self._objects)
        # mode 600 whatever the umask (the rename into place keeps it): objects are the owner's alone
        fd, name = tempfile.mkstemp(dir=self._objects, prefix=_INCOMING)
        return fd, Path(name)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its hash."""
        key = hashlib.sha256(data).hexdigest()
        if self._refresh(self._path(key)):
            return key
        fd, tmp = self._tempfile()
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return self._commit_temp(tmp, key)

    def put_stream(self, stream: BinaryIO) -> str:
        """Store everything read from ``stream`` (read in chunks); return its hash."""
        digest = hashlib.sha256()
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._commit_temp(tmp, digest.hexdigest())

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store the content of the local file ``path``; return its hash."""
        with open(path, "rb") as handle:
            return self.put_stream(handle)

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def get_bytes(self, key: str) -> bytes:
        """The content of object ``key``.  Raises ObjectNotFoundError."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None

    def open(self, key: str) -> BinaryIO:
        """A binary file object reading object ``key``.  Raises ObjectNotFoundError."""
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None

    def copy_to(self, key: str, destination: str | os.PathLike[str]) -> None:
        """Write object ``key`` to the local file ``destination``."""
        with self.open(key) as source, open(destination, "wb") as target:
            shutil.copyfileobj(source, target, _CHUNK)

    def iter_keys(self) -> Iterator[str]:
        if not self._objects.is_dir():
            return
        for sub in self._objects.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                for obj in sub.iterdir():
                    yield sub.name + obj.name

    def collect_garbage(self, referenced: Iterable[str]) -> int:
        """Delete every object not in ``referenced`` at once, however new; return how many were deleted.

        Only for a repository nothing else writes to (tests, a profile being taken apart):
        :meth:`remove_unreferenced` is the safe form.
        """
        keep = set(referenced)
        return self.remove_unreferenced(lambda: keep, older_than=float("inf")).removed

    def remove_unreferenced(
        self,
        referenced: Callable[[], Collection[str]],
        *,
        older_than: float,
        dry_run: bool = False,
    ) -> RepositoryCleanup:
        """Remove the objects that no node refers to and that were last put before ``older_than``.

        ``referenced`` is called *after* the repository has been scanned and returns the hashes
        that nodes refer to (read from the database then).  ``older_than`` is a Unix time: an
        object put (or put again, which refreshes it) at or after it is kept even when nothing
        refers to it yet, because a node that is being stored writes its files first and commits
        its row after.  The guard, step by step:

        1. the scan lists every object with its modification time;
        2. ``referenced()`` reads the database: a node committed before this is seen;
        3. each candidate (unreferenced, older than the cut-off) is renamed aside atomically and
           its time read again: a put that refreshed it since the scan makes it be put back; a put
           that comes after the rename finds no object and writes it anew.

        So the only object that can be lost is one whose node took longer than
        ``now - older_than`` between putting its files and committing its row: the caller picks
        the cut-off to make that impossible (``StorageBackend.maintain_storage`` takes it before
        the oldest process still running, and a grace period before that).

        With ``dry_run`` nothing is removed and the counts say what would be.  Half-written files
        of crashed puts older than the cut-off are removed too.
        """
        report = RepositoryCleanup()
        if not self._objects.is_dir():
            return report
        self._restore_trash()
        scanned: list[tuple[str, int, float]] = []
        with os.scandir(self._objects) as top:
            prefixes = [
                entry.path for entry in top if entry.is_dir(follow_symlinks=False) and len(entry.name) == 2
            ]
        for prefix in prefixes:
            with os.scandir(prefix) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        scanned.append((os.path.basename(prefix) + entry.name, stat.st_size, stat.st_mtime))
        report.objects = len(scanned)
        keep = referenced()
        for key, size, mtime in scanned:
            if key in keep:
                continue
            if mtime >= older_than:
                report.kept_recent += 1
                report.kept_recent_bytes += size
                continue
            if not dry_run and not self._remove_if_stale(key, older_than):
                report.kept_recent += 1
                report.kept_recent_bytes += size
                continue
            report.removed += 1
            report.removed_bytes += size
        report.leftovers = self._remove_leftovers(older_than, dry_run)
        return report

    def _remove_if_stale(self, key: str, older_than: float) -> bool:
        """Rename object ``key`` aside, then delete it unless a put refreshed it meanwhile."""
        final = self._path(key)
        trash = self._objects / f"{_TRASH}{key}"
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return False  # gone already (another maintenance run)
        try:
            if trash.stat().st_mtime >= older_than:  # put again between the scan and the rename
                os.replace(trash, final)  # same content: harmless even if a put wrote it anew meanwhile
                return False
            trash.unlink()
        except FileNotFoundError:  # a maintenance run starting at this moment put it back
            return False
        return True

    def _restore_trash(self) -> None:
        """Put back the objects a crashed maintenance run left renamed aside (they are judged again)."""
        for entry in self._objects.iterdir():
            if entry.name.startswith(_TRASH) and entry.is_file():
                key = entry.name[len(_TRASH) :]
                final = self._path(key)
                make_private_folders(final.parent)
                os.replace(entry, final)

    def _remove_leftovers(self, older_than: float, dry_run: bool) -> int:
        found = 0
        for entry in self._objects.iterdir():
            if entry.name.startswith(_INCOMING) and entry.is_file() and entry.stat().st_mtime < older_than:
                found += 1
                if not dry_run:
                    entry.unlink(missing_ok=True)
        return found
