"""A content-addressed file repository for node files.

Every file is stored once, under the SHA-256 of its content, in
``objects/<2 hex>/<62 hex>``.  A node records, for each of its files, the
relative path and the hash; two nodes with the same file share one object.
Objects are written to a temporary file in the same folder and renamed into
place, so a crash never leaves a half-written object under its final name.

Objects are never modified; an object no node refers to any more is removed
by :meth:`FileRepository.collect_garbage`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["FileRepository", "ObjectNotFoundError"]

_CHUNK = 1 << 20


class ObjectNotFoundError(KeyError):
    """The repository holds no object with that hash."""


class FileRepository:
    """The object store of one profile (thread-safe: writes are atomic renames)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"

    def _path(self, key: str) -> Path:
        return self._objects / key[:2] / key[2:]

    def _commit_temp(self, tmp: Path, key: str) -> str:
        final = self._path(key)
        if final.exists():
            tmp.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        return key

    def _tempfile(self) -> tuple[int, Path]:
        self._objects.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._objects, prefix=".incoming-")
        return fd, Path(name)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its hash."""
        key = hashlib.sha256(data).hexdigest()
        if self._path(key).exists():
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
        """Delete every object not in ``referenced``; return how many were deleted."""
        keep = set(referenced)
        removed = 0
        for key in list(self.iter_keys()):
            if key not in keep:
                self._path(key).unlink(missing_ok=True)
                removed += 1
        return removed
