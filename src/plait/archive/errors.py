"""Errors of the archive layer: each message names the archive member (or entity) and the reason."""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ArchiveExportError",
    "ArchiveVersionError",
    "CorruptArchiveError",
    "ImportConflictError",
    "UnsafeArchiveError",
]


class ArchiveError(Exception):
    """Base of every archive error; nothing was written when it is raised."""


class ArchiveExportError(ArchiveError):
    """An archive cannot be written: a process not terminated, a file that exists, a missing object."""


class CorruptArchiveError(ArchiveError):
    """The file is no archive, is truncated, or a member's content does not match its checksum."""


class UnsafeArchiveError(ArchiveError):
    """A member that would leave the target (``..``, absolute path, symlink) or a zip bomb."""


class ArchiveVersionError(ArchiveError):
    """The archive's format or format version is not one this plait reads."""


class ImportConflictError(ArchiveError):
    """A node (by UUID) exists in the profile with other content than in the archive."""
