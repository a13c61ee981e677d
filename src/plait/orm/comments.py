"""Comments: free-text notes that people attach to a stored node after the fact.

A comment is not provenance: it says what someone thought of a result
("converged but the k-mesh is too coarse"), not how the result was made.
So, unlike a node's attributes, it stays editable, and it records who wrote
it (the profile's ``user_email``) and when it was written and last changed.

Most code reaches comments through the node: :meth:`Node.add_comment
<plait.orm.node.Node.add_comment>`, ``get_comments``, ``update_comment``,
``remove_comment`` (the names aiida-core 1.x had on its nodes; aiida-core 2
moved them to ``node.base.comments``).  A comment is deleted with its node.
"""

from __future__ import annotations

import datetime as _dt
import uuid as _uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.orm.errors import ModificationNotAllowed, NotExistentError, StoringNotAllowed

if TYPE_CHECKING:
    from plait.orm.node import Node
    from plait.storage.backend import StorageBackend

__all__ = ["Comment"]


def _backend() -> StorageBackend:
    from plait.storage import get_backend

    return get_backend()


def _check_content(content: object) -> str:
    if not isinstance(content, str):
        raise TypeError(f"a comment's content is text, not a {type(content).__name__}")
    if not content.strip():
        raise ValueError("a comment needs some text: the content given is empty")
    return content


class Comment:
    """A note on one node, by one user.

    Create it with ``node.add_comment(text)`` (or ``Comment(node, text).store()``);
    load it with :meth:`Comment.get`.  ``pk``, ``uuid``, ``node_pk``,
    ``user_email``, ``ctime`` and ``mtime`` are read-only; the text changes
    with :meth:`set_content`.

    Raises (constructor):
        TypeError: ``content`` is not a string, or ``node`` is not a node.
        ValueError: ``content`` is empty or only white space.
    """

    def __init__(self, node: Node, content: str, *, user_email: str | None = None) -> None:
        from plait.orm.node import Node

        if not isinstance(node, Node):
            raise TypeError(f"a comment is attached to a node, not to a {type(node).__name__}")
        self._node: Node | None = node
        self._node_pk = node.pk
        self._content = _check_content(content)
        self._user_email = user_email
        self._pk: int | None = None
        self._uuid = str(_uuid.uuid4())
        self._ctime: _dt.datetime | None = None
        self._mtime: _dt.datetime | None = None

    # -- identity and content -----------------------------------------------------------
    @property
    def pk(self) -> int | None:
        """The database id (what ``plait node comment remove`` takes), or None before storing."""
        return self._pk

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def is_stored(self) -> bool:
        return self._pk is not None

    @property
    def content(self) -> str:
        return self._content

    @property
    def user_email(self) -> str:
        """Who wrote it: the ``user_email`` of the profile it was written in."""
        if self._user_email is None:
            from plait.storage import get_profile

            return get_profile().user_email
        return self._user_email

    @property
    def ctime(self) -> _dt.datetime | None:
        return self._ctime

    @property
    def mtime(self) -> _dt.datetime | None:
        """When the content last changed (the creation time if it never did)."""
        return self._mtime

    @property
    def node_pk(self) -> int | None:
        """The pk of the node the comment is on."""
        return self._node_pk

    @property
    def node(self) -> Node:
        """The node the comment is on (loaded on first use for a comment read from the database)."""
        if self._node is None:
            from plait.orm.node import load_node

            assert self._node_pk is not None
            self._node = load_node(self._node_pk)
        return self._node

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Comment):
            return self._uuid == other._uuid
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        pk = f"pk={self._pk}" if self._pk is not None else "unstored"
        return f"<Comment {pk} on node {self._node_pk} by {self.user_email}>"

    # -- storing and changing -------------------------------------------------------------
    def store(self) -> Comment:
        """Store the comment; a stored comment is returned unchanged.

        Raises:
            StoringNotAllowed: the node is not stored (comments are on stored nodes only).
        """
        if self._pk is not None:
            return self
        if self._node is not None:
            self._node_pk = self._node.pk
        if self._node_pk is None:
            raise StoringNotAllowed(
                f"cannot comment on {self._node!r}: it is not stored (store the node first)"
            )
        from plait.storage.backend import utcnow

        if self._user_email is None:
            self._user_email = self.user_email
        now = utcnow()
        self._pk = _backend().insert_comment(
            {
                "uuid": self._uuid,
                "node_id": self._node_pk,
                "ctime": now,
                "mtime": now,
                "user_email": self._user_email,
                "content": self._content,
            }
        )
        self._ctime = self._mtime = now
        return self

    def set_content(self, content: str) -> None:
        """Replace the text (written at once for a stored comment; ``mtime`` moves on).

        Raises:
            TypeError, ValueError: as the constructor.
            NotExistentError: the comment was deleted meanwhile.
        """
        content = _check_content(content)
        if self._pk is not None:
            mtime = _backend().update_comment(self._pk, content, uuid=self._uuid)
            if mtime is None:
                raise NotExistentError(f"comment {self._pk} no longer exists (it was removed)")
            self._mtime = mtime
        self._content = content

    def delete(self) -> None:
        """Delete the stored comment (the object becomes unstored).

        Raises:
            ModificationNotAllowed: the comment is not stored.
            NotExistentError: it was deleted already.
        """
        if self._pk is None:
            raise ModificationNotAllowed("this comment is not stored: there is nothing to delete")
        if not _backend().delete_comment(self._pk, uuid=self._uuid):
            raise NotExistentError(f"comment {self._pk} no longer exists (it was removed)")
        self._pk = None

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> Comment:
        comment = cls.__new__(cls)
        comment._node = None
        comment._node_pk = row["node_id"]
        comment._content = row["content"]
        comment._user_email = row["user_email"]
        comment._pk = row["id"]
        comment._uuid = row["uuid"]
        comment._ctime = row["ctime"]
        comment._mtime = row["mtime"]
        return comment

    @classmethod
    def get(cls, pk: int) -> Comment:
        """The stored comment with this pk.

        Raises:
            NotExistentError: there is none in the current profile.
        """
        row = _backend().get_comment(int(pk))
        if row is None:
            from plait.storage import get_profile

            raise NotExistentError(f"no comment with pk {pk} in profile '{get_profile().name}'")
        return cls._from_row(row)

    @classmethod
    def list_for(cls, node_pk: int) -> list[Comment]:
        """The comments on the node ``node_pk``, oldest first (one query)."""
        return [cls._from_row(row) for row in _backend().list_comments(node_pk)]
