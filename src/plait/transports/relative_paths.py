"""Names that become paths inside a folder: the one check, and the one way to pass them to a command.

A calculation job turns many names into paths: its options
(``input_filename``, ``scheduler_stdout``...), the lists its plugin returns
(``local_copy_list`` targets, ``retrieve_list`` items...), a ``ShellJob``'s
``outputs``, the file names of a ``FolderData``.  Each of these comes from an
input, a plugin or the remote side, and each must stay inside the folder it
is meant for (the job's sandbox, its work folder on the computer, the folder
the retrieved files are fetched into).  :func:`check_relative_path` is the
check every layer uses; :func:`as_operand` keeps a name that begins with
``-`` from being read as an option by the command it is given to.

This module imports nothing of plait, so that every layer (transports,
schedulers, orm, engine, calculations) may use it.
"""

from __future__ import annotations

__all__ = ["UnsafePathError", "as_operand", "check_relative_path"]


class UnsafePathError(ValueError):
    """A name that would not stay inside its folder (absolute, ``..``, NUL, empty or not a string)."""


def check_relative_path(value: object, what: str, *, allow_empty: bool = False) -> str:
    """``value`` as a clean relative POSIX path (``a/./b/`` becomes ``a/b``), or an error.

    Refused: anything but a string, an absolute path (``/x``), any ``..``
    part (even ``a/../b``: the check is on the text, so it never depends on
    what the folder holds, such as a symlink), a NUL character, and the empty
    path unless ``allow_empty`` (then ``""`` and ``"."`` give ``""``).  Wildcards
    are plain characters here, so a glob passes when its text is a safe path.

    ``what`` names the value in the message (``"metadata.options.input_filename"``).

    Raises:
        UnsafePathError: naming ``what``, the value and the reason.
    """
    if not isinstance(value, str):
        raise UnsafePathError(f"{what}: {value!r} is not a file name (a string)")
    if "\0" in value:
        raise UnsafePathError(f"{what}: {value!r} contains a NUL character")
    if value.startswith("/"):
        raise UnsafePathError(f"{what}: {value!r} is an absolute path; give a path relative to the folder")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{what}: {value!r} contains '..'; the path must stay inside the folder")
    if not parts and not allow_empty:
        raise UnsafePathError(f"{what}: {value!r} names no file inside the folder")
    return "/".join(parts)


def as_operand(name: str) -> str:
    """``name`` such that a command reads it as a file, never as an option: ``-rf`` becomes ``./-rf``.

    For relative names (absolute ones never begin with ``-``).  Use it where
    ``--`` does not work for every program the name is given to (``qsub --``
    means "run this executable" to PBS, a program of the user may not know
    ``--``); quote the result for a shell as usual.
    """
    return f"./{name}" if name.startswith("-") else name
