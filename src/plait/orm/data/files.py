"""``SinglefileData`` and ``FolderData``: nodes whose content is files in the repository."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any, Literal, overload

from plait.orm.errors import StoringNotAllowed
from plait.orm.node import Data

__all__ = ["FolderData", "SinglefileData"]


class SinglefileData(Data):
    """One file.

    ``SinglefileData("input.txt")`` reads a local file;
    ``SinglefileData(b"content", filename="x.txt")`` or a binary stream takes
    the content directly.
    """

    node_type = "data.core.singlefile"

    def __init__(
        self,
        file: str | os.PathLike[str] | bytes | IO[bytes] | None = None,
        *,
        filename: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if file is not None:
            self.set_file(file, filename=filename)

    def set_file(
        self, file: str | os.PathLike[str] | bytes | IO[bytes], *, filename: str | None = None
    ) -> None:
        """Replace the file (before storing)."""
        self._check_mutable("file")
        if isinstance(file, (bytes, bytearray)):
            name = filename or "file.txt"
            self._pending.clear()
            self.put_object_from_bytes(name, bytes(file))
        elif isinstance(file, (str, os.PathLike)):
            path = Path(file)
            name = filename or path.name
            self._pending.clear()
            self.put_object_from_file(name, path)
        else:
            name = filename or os.path.basename(getattr(file, "name", "") or "") or "file.txt"
            self._pending.clear()
            self.put_object_from_bytes(name, file.read())
        if "/" in name:
            raise ValueError(f"filename '{name}' must not contain '/'")
        self.set_attribute("filename", name)

    @property
    def filename(self) -> str:
        return self.get_attribute("filename", "")

    @overload
    def get_content(self, mode: Literal["r"] = "r") -> str: ...
    @overload
    def get_content(self, mode: Literal["rb"]) -> bytes: ...
    @overload
    def get_content(self, mode: str) -> str | bytes: ...
    def get_content(self, mode: str = "r") -> str | bytes:
        """The file's content: text with ``"r"``, bytes with ``"rb"``."""
        return self.get_object_content(self.filename, mode)

    def open(self, relpath: str | None = None, mode: str = "r") -> IO[Any]:
        return super().open(relpath or self.filename, mode)

    def _validate_before_store(self) -> None:
        if not self.filename:
            raise StoringNotAllowed("SinglefileData has no file: give a path, bytes or a stream")


class FolderData(Data):
    """A folder of files.  ``FolderData(tree="path/to/folder")`` copies a local folder.

    File names are relative paths inside the folder: an absolute name, a
    ``..`` part or a NUL character is refused with a ``ValueError`` when the
    file is added, and again when the folder is written out (:meth:`copy_tree_to`).
    """

    node_type = "data.core.folder"

    def __init__(self, *, tree: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if tree is not None:
            self.put_object_from_tree(tree)

    def copy_tree_to(self, destination: str | os.PathLike[str]) -> None:
        """Write every file of the folder below the local folder ``destination``.

        Every name is checked first (relative, no ``..``, no NUL), so a folder
        whose stored names were tampered with (a hostile database or archive)
        writes nothing outside ``destination``.

        Raises:
            ValueError: a file name that would leave ``destination``; nothing was written.
        """
        root = Path(destination)
        relpaths = [self._clean_relpath(relpath) for relpath in self.list_file_paths()]
        for relpath in relpaths:
            target = root / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file_to(relpath, target)

    @overload
    def get_content(self, relpath: str, mode: Literal["r"] = "r") -> str: ...
    @overload
    def get_content(self, relpath: str, mode: Literal["rb"]) -> bytes: ...
    @overload
    def get_content(self, relpath: str, mode: str) -> str | bytes: ...
    def get_content(self, relpath: str, mode: str = "r") -> str | bytes:
        return self.get_object_content(relpath, mode)

    def __contains__(self, relpath: object) -> bool:
        return isinstance(relpath, str) and relpath in self.list_file_paths()

    def open_stream(self, relpath: str) -> io.BufferedIOBase:
        return io.BytesIO(self._read_file(self._clean_relpath(relpath)))
