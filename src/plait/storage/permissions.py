"""Owner-only folders and files: what keeps other local users out of a profile.

plait's profile folder holds the database (SQLite), the file repository,
``profile.toml`` (possibly with a password) and the daemon's control socket.
On a shared login node every one of them must be readable and writable by
its owner only, whatever the user's umask.  This module holds the two checks
that every place creating or using such a path goes through:

* :func:`private_folder` makes a folder mode 700, or checks an existing one:
  owned by this user and closed to group and others.  A folder this user owns
  that is looser (made by an older plait, or by hand) is tightened when the
  caller says plait owns it (``tighten=True``); otherwise, and always when
  another user owns it, :class:`InsecurePathError` is raised with the
  command that fixes it.
* :func:`private_file` sets a file plait made (or owns) to mode 600.

Modes are set with ``chmod`` after creation, so the umask never loosens them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "InsecurePathError",
    "create_private_file",
    "is_private",
    "make_private_folders",
    "owner_only",
    "private_file",
    "private_folder",
]

#: the mode of every folder plait makes for a profile
FOLDER_MODE = 0o700
#: the mode of every file plait makes for a profile
FILE_MODE = 0o600


class InsecurePathError(PermissionError):
    """A folder or file that should be this user's alone is not (the message says how to fix it)."""


def is_private(mode: int) -> bool:
    """True when a ``st_mode`` grants nothing to group and others."""
    return stat.S_IMODE(mode) & 0o077 == 0


def owner_only(path: Path) -> None:
    """Check that ``path`` (a folder or file) is this user's and closed to group and others.

    Raises:
        InsecurePathError: it is a symbolic link, another user owns it, or group/others have access.
    """
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise InsecurePathError(f"{path} is a symbolic link: plait uses only a real folder or file here")
    if info.st_uid != os.getuid():
        raise InsecurePathError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): "
            "another user could read or replace what plait keeps there; remove it or choose another place"
        )
    if not is_private(info.st_mode):
        fix = "chmod 700" if stat.S_ISDIR(info.st_mode) else "chmod 600"
        raise InsecurePathError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):o}: group or others can use it; run `{fix} {path}`"
        )


def private_folder(path: Path, *, tighten: bool) -> Path:
    """Make ``path`` (and missing parents) mode 700, or check the existing folder.

    Args:
        tighten: plait owns this folder (a profile folder, a folder inside one): an existing
            folder of this user with looser modes is set to 700.  With ``False`` (a folder in
            a shared place such as ``/tmp``) looser modes are refused instead, because another
            user may already have put something inside.

    Raises:
        InsecurePathError: the folder is another user's, a symbolic link, or (``tighten=False``) open
            to group/others.
        NotADirectoryError: ``path`` is a file.
    """
    make_private_folders(path)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        raise NotADirectoryError(f"{path} is a file, not a folder")
    if (
        tighten
        and not stat.S_ISLNK(info.st_mode)
        and info.st_uid == os.getuid()
        and not is_private(info.st_mode)
    ):
        os.chmod(path, FOLDER_MODE)
    owner_only(path)
    return path


def make_private_folders(path: Path) -> None:
    """Make ``path`` and its missing parents, each mode 700 whatever the umask (existing ones: untouched)."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and not probe.is_symlink():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # made by a concurrent process meanwhile
            continue
        os.chmod(folder, FOLDER_MODE)


def private_file(path: Path) -> None:
    """Set ``path`` (a file this user owns) to mode 600; files of other users are left alone."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)


def create_private_file(path: Path) -> bool:
    """Create an empty ``path`` with mode 600 if it does not exist; True if it was made now."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True
