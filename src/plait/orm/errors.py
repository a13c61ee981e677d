"""Errors raised by the node layer."""

from __future__ import annotations

__all__ = [
    "InvalidQueryError",
    "ModificationNotAllowed",
    "MultipleObjectsError",
    "NotExistentError",
    "StoringNotAllowed",
]


class ModificationNotAllowed(Exception):
    """A stored node was asked to change what is fixed once stored (its attributes or files)."""


class StoringNotAllowed(Exception):
    """A node cannot be stored as it is (e.g. a value that is not JSON, a missing file)."""


class NotExistentError(LookupError):
    """No node (or computer, code) matches the identifier given."""


class MultipleObjectsError(LookupError):
    """Exactly one result was asked for (``QueryBuilder.one()``) and several were found.

    aiida-core's ``MultipleObjectsError``; its ``NotExistent`` is :class:`NotExistentError` here.
    """


class InvalidQueryError(ValueError):
    """A ``QueryBuilder`` query that cannot mean anything, refused before the database is asked.

    The message names the problem: an unknown tag, field or operator, a relationship to a tag not
    appended yet, a class that is neither a node class nor ``Group``, a value of the wrong type.
    """
