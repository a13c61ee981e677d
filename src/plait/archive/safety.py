"""Checks of an untrusted zip before anything is read from it, and reads that cannot overrun.

An archive comes from someone else.  Before its content is trusted, :func:`open_checked` refuses,
naming the member and the reason:

* a file that is no zip, or whose central directory is cut off (truncated download);
* a member name that would leave a target folder if extracted (``../x``, ``/etc/x``, ``C:x``,
  backslashes), a symlink entry, an encrypted member, a compression other than stored/deflate,
  a name given twice;
* a zip bomb: members whose declared sizes add up to more than :data:`MAX_EXPANSION_RATIO` times
  the archive's size (and more than :data:`EXPANSION_FLOOR`, so small archives of very
  compressible text pass).

Then :func:`copy_member` reads a member in chunks, never more than its declared size (a member
that yields more is refused: its header lied), and checks its SHA-256 and the zip's CRC-32.
plait never extracts members by their names: objects go into the repository by their hash and
the database to a temporary file, so the path checks are a second line of defence.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from plait.archive.errors import CorruptArchiveError, UnsafeArchiveError

__all__ = ["EXPANSION_FLOOR", "MAX_EXPANSION_RATIO", "check_member_name", "copy_member", "open_checked"]

#: how many times its own size an archive may expand to (deflate gives at most ~1000x on zeros)
MAX_EXPANSION_RATIO = 200
#: below this many expanded bytes the ratio is not checked
EXPANSION_FLOOR = 256 * 1024 * 1024
_CHUNK = 1 << 20


def check_member_name(name: str) -> None:
    """Refuse a member name that could leave a target folder.

    Raises:
        UnsafeArchiveError: naming the member and what is wrong with it.
    """
    if not name or "\0" in name:
        raise UnsafeArchiveError(f"archive member {name!r}: empty name or NUL character")
    if "\\" in name:
        raise UnsafeArchiveError(f"archive member {name!r}: backslash in the path (refused)")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive member {name!r}: absolute path, would leave the target")
    if any(part == ".." for part in name.split("/")):
        raise UnsafeArchiveError(f"archive member {name!r}: '..' in the path, would leave the target")


def _check_info(info: zipfile.ZipInfo) -> None:
    check_member_name(info.filename)
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"archive member {info.filename!r}: a symbolic link (refused)")
    if info.flag_bits & 0x1:
        raise UnsafeArchiveError(f"archive member {info.filename!r}: encrypted (refused)")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnsafeArchiveError(
            f"archive member {info.filename!r}: compression method {info.compress_type} "
            "(only stored and deflate are read)"
        )


def open_checked(path: str | os.PathLike[str]) -> zipfile.ZipFile:
    """Open the zip at ``path`` after checking every member's header (see the module docstring).

    Raises:
        CorruptArchiveError: no such file, not a zip, or truncated.
        UnsafeArchiveError: a member fails a check.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptArchiveError(f"'{path}' is not a file")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CorruptArchiveError(f"'{path}' is not a zip archive or is truncated ({exc})") from None
    except (OSError, ValueError) as exc:
        raise CorruptArchiveError(f"'{path}' cannot be read as a zip archive ({exc})") from None
    try:
        seen: set[str] = set()
        total = 0
        for info in archive.infolist():
            _check_info(info)
            if info.filename in seen:
                raise UnsafeArchiveError(f"archive member {info.filename!r} appears twice")
            seen.add(info.filename)
            total += info.file_size
        size = path.stat().st_size
        if total > EXPANSION_FLOOR and total > MAX_EXPANSION_RATIO * max(size, 1):
            worst = max(archive.infolist(), key=lambda i: i.file_size / max(i.compress_size, 1))
            raise UnsafeArchiveError(
                f"archive '{path.name}' would expand to {total} bytes from {size} "
                f"(more than {MAX_EXPANSION_RATIO} times its size: a zip bomb?); largest ratio: "
                f"member {worst.filename!r} ({worst.file_size} bytes from {worst.compress_size})"
            )
    except BaseException:
        archive.close()
        raise
    return archive


def copy_member(
    archive: zipfile.ZipFile,
    name: str,
    write: Callable[[bytes], object] | None = None,
    *,
    sha256: str | None = None,
) -> str:
    """Stream member ``name`` to ``write`` (or nowhere); return its SHA-256.

    At most the member's declared size is read; a member that holds more, fails its CRC-32 or
    (with ``sha256``) has another hash is refused.

    Raises:
        CorruptArchiveError: naming the member and the reason.
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise CorruptArchiveError(f"the archive has no member {name!r}") from None
    digest = hashlib.sha256()
    left = info.file_size
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(min(_CHUNK, left + 1))
                if not chunk:
                    break
                left -= len(chunk)
                if left < 0:
                    raise UnsafeArchiveError(
                        f"archive member {name!r} holds more than the {info.file_size} bytes it declares"
                    )
                digest.update(chunk)
                if write is not None:
                    write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CorruptArchiveError(f"archive member {name!r} is corrupt or truncated ({exc})") from None
    if left:
        raise CorruptArchiveError(f"archive member {name!r} is truncated ({left} bytes missing)")
    found = digest.hexdigest()
    if sha256 is not None and found != sha256:
        raise CorruptArchiveError(
            f"archive member {name!r}: checksum mismatch (sha256 {found}, the archive says {sha256})"
        )
    return found


class MemberReader:
    """A file-like reader of one member, checked as :func:`copy_member` checks (for put_stream)."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.name = name
        self._info = archive.getinfo(name)
        self._stream: BinaryIO = archive.open(self._info)  # type: ignore[assignment]
        self._left = self._info.file_size

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self._stream.read(self._left + 1 if size < 0 else min(size, self._left + 1))
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise CorruptArchiveError(
                f"archive member {self.name!r} is corrupt or truncated ({exc})"
            ) from None
        self._left -= len(chunk)
        if self._left < 0:
            raise UnsafeArchiveError(f"archive member {self.name!r} holds more than it declares")
        return chunk

    def close(self) -> None:
        self._stream.close()
