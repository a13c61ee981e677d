"""Errors raised by the node layer."""

from __future__ import annotations

__all__ = ["ModificationNotAllowed", "NotExistentError", "StoringNotAllowed"]


class ModificationNotAllowed(Exception):
    """A stored node was asked to change what is fixed once stored (its attributes or files)."""


class StoringNotAllowed(Exception):
    """A node cannot be stored as it is (e.g. a value that is not JSON, a missing file)."""


class NotExistentError(LookupError):
    """No node (or computer, code) matches the identifier given."""
