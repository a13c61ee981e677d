"""Groups: named sets of stored nodes, as AiiDA's groups.

A group collects nodes of any kind (data, calculations, workflows) under a
unique ``label``: "the relaxations of batch 7", "the structures to publish".
Membership is not provenance: adding a node to a group or removing it
changes nothing about the node, and deleting a group never deletes its nodes
(``plait group delete --delete-nodes`` does that on purpose, through
:func:`plait.orm.delete_nodes` and its provenance rules).

A group is made in memory, then stored::

    group = Group(label="relaxations", description="batch 7").store()
    group.add_nodes([n1, n2])        # stored nodes; adding one twice is a no-op
    len(group.nodes), group.count()  # 2, 2
    load_group("relaxations")        # by label, pk or (prefix of) uuid

Large groups stay fast: nodes are added and removed with one statement per
few thousand nodes (:attr:`StorageBackend.ID_BATCH
<plait.storage.backend.StorageBackend.ID_BATCH>`), counted in the database,
and :attr:`Group.nodes` reads members page by page, each page of rows in one
query.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid as _uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Self, overload

from plait.orm.errors import ModificationNotAllowed, NotExistentError, StoringNotAllowed
from plait.orm.node import MAX_PK, Node, check_json, node_from_row

if TYPE_CHECKING:
    from plait.storage.backend import StorageBackend

__all__ = ["Group", "GroupNodes", "load_group"]

#: the longest label or type string the database column holds
MAX_LABEL_LENGTH = 255
_UUID_PREFIX = re.compile(r"^[0-9a-fA-F][0-9a-fA-F-]*$")


def _backend() -> StorageBackend:
    from plait.storage import get_backend

    return get_backend()


def _profile_name() -> str:
    from plait.storage import get_profile

    return get_profile().name


def _check_label(label: object, what: str = "group label") -> str:
    if not isinstance(label, str):
        raise TypeError(f"a {what} is a string, not a {type(label).__name__}")
    if not label.strip():
        raise ValueError(f"a {what} cannot be empty")
    if label != label.strip():
        raise ValueError(f"{what} {label!r} begins or ends with white space")
    if len(label) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"{what} '{label[:40]}...' is {len(label)} characters long (at most {MAX_LABEL_LENGTH})"
        )
    return label


def _as_node_list(nodes: Node | Iterable[Node], group: Group, verb: str) -> list[Node]:
    """``nodes`` as a list of stored nodes.

    Raises:
        TypeError: an item is not a node.
        ValueError: a node is not stored (named, with the group).
    """
    items = [nodes] if isinstance(nodes, Node) else list(nodes)
    for index, item in enumerate(items):
        if not isinstance(item, Node):
            raise TypeError(
                f"cannot {verb} group '{group.label}': item {index} is a {type(item).__name__}, not a node"
            )
    unstored = [item for item in items if item.pk is None]
    if unstored:
        shown = ", ".join(repr(item) for item in unstored[:3]) + (" ..." if len(unstored) > 3 else "")
        raise ValueError(
            f"cannot {verb} group '{group.label}': {len(unstored)} node(s) are not stored ({shown}); "
            "store them first"
        )
    return items


class Group:
    """A named set of nodes.  See the module docstring.

    ``Group(label, description="", type_string="core", extras=None)``:
    ``type_string`` tells user groups (``core``, the default) from groups
    that tools make for themselves (``plait group list`` shows only ``core``
    ones unless asked for all).

    Every change of a stored group (label, description, extras, members,
    deletion) raises :class:`NotExistentError` if the group was deleted
    meanwhile, by another process say, rather than touch another group.

    Raises (constructor):
        TypeError, ValueError: a label or type string that is not a non-empty
            string of at most 255 characters without surrounding white space.
        StoringNotAllowed: an extra that is not JSON.
    """

    DEFAULT_TYPE_STRING = "core"

    def __init__(
        self,
        label: str,
        *,
        description: str = "",
        type_string: str = DEFAULT_TYPE_STRING,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        self._label = _check_label(label)
        self._type_string = _check_label(type_string, "group type string")
        self._description = str(description)
        self._extras: dict[str, Any] = {}
        for key, value in (extras or {}).items():
            check_json(value, f"extra '{key}' of group '{label}'")
            self._extras[str(key)] = value
        self._pk: int | None = None
        self._uuid = str(_uuid.uuid4())
        self._ctime: _dt.datetime | None = None
        self._user_email: str | None = None

    # -- identity -----------------------------------------------------------------------
    @property
    def pk(self) -> int | None:
        """The database id, or None before the group is stored."""
        return self._pk

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def is_stored(self) -> bool:
        return self._pk is not None

    @property
    def type_string(self) -> str:
        return self._type_string

    @property
    def ctime(self) -> _dt.datetime | None:
        """When the group was stored."""
        return self._ctime

    @property
    def time(self) -> _dt.datetime | None:
        """The same as :attr:`ctime` (aiida-core's name)."""
        return self._ctime

    @property
    def user_email(self) -> str:
        """Who made the group: the ``user_email`` of the profile it was stored in."""
        if self._user_email is None:
            from plait.storage import get_profile

            return get_profile().user_email
        return self._user_email

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Group):
            return self._uuid == other._uuid
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        pk = f"pk={self._pk}" if self._pk is not None else "unstored"
        return f"<Group '{self._label}' {pk} [{self._type_string}]>"

    def _stored_pk(self, action: str) -> int:
        if self._pk is None:
            raise ModificationNotAllowed(
                f"cannot {action} group '{self._label}': it is not stored (call .store())"
            )
        return self._pk

    def _check_still_stored(self, backend: StorageBackend, action: str) -> None:
        """Refuse to write membership of a group deleted meanwhile (by another process, say).

        The uuid is compared too: SQLite gives a deleted group's pk to the next group stored.
        """
        row = backend.get_group(pk=self._pk)
        if row is None or row["uuid"] != self._uuid:
            raise NotExistentError(
                f"cannot {action} group '{self._label}': it no longer exists (pk {self._pk} was deleted)"
            )

    def _update(self, action: str, **fields: Any) -> bool:
        """Write columns of this stored group; False if a new label is taken (see update_group)."""
        backend = _backend()
        assert self._pk is not None
        with backend.transaction():
            self._check_still_stored(backend, action)
            return backend.update_group(self._pk, **fields)

    # -- annotations (writable, also once stored) ---------------------------------------
    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        """Relabel; for a stored group the new label is written at once.

        Raises:
            TypeError, ValueError: as for the constructor.
            StoringNotAllowed: another group has that label (nothing changes).
        """
        value = _check_label(value)
        if self._pk is not None and value != self._label:
            if not self._update("relabel", label=value):
                raise StoringNotAllowed(
                    f"cannot relabel group '{self._label}' to '{value}': "
                    f"a group labelled '{value}' exists already"
                )
        self._label = value

    @property
    def description(self) -> str:
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = str(value)
        if self._pk is not None:
            self._update("describe", description=self._description)

    @property
    def extras(self) -> dict[str, Any]:
        """A copy of the extras; use :meth:`set_extra` to change them."""
        return dict(self._extras)

    def get_extra(self, key: str, default: Any = None) -> Any:
        return self._extras.get(key, default)

    def set_extra(self, key: str, value: Any) -> None:
        """Set an extra (JSON value); written at once if the group is stored.

        Raises:
            StoringNotAllowed: the value is not JSON (named with its key).
        """
        check_json(value, f"extra '{key}' of group '{self._label}'")
        self._extras[key] = value
        if self._pk is not None:
            self._update("set an extra of", extras=self._extras)

    def delete_extra(self, key: str) -> None:
        """Remove an extra (no error if there is none of that key)."""
        self._extras.pop(key, None)
        if self._pk is not None:
            self._update("delete an extra of", extras=self._extras)

    # -- storing and deleting -------------------------------------------------------------
    def store(self) -> Self:
        """Store the group; a stored group is returned unchanged.

        The label check and the INSERT are one atomic step, so two processes
        storing the same label at the same moment give one group and a clear
        error for the other, never a database error.

        Raises:
            StoringNotAllowed: a group with this label exists already.
        """
        if self._pk is not None:
            return self
        from plait.storage.backend import utcnow

        now = utcnow()
        email = self.user_email
        pk = _backend().insert_group(
            {
                "uuid": self._uuid,
                "label": self._label,
                "type_string": self._type_string,
                "description": self._description,
                "ctime": now,
                "user_email": email,
                "extras": self._extras,
            }
        )
        if pk is None:
            existing = _backend().get_group(label=self._label)
            where = f" (pk {existing['id']})" if existing is not None else ""
            raise StoringNotAllowed(
                f"a group labelled '{self._label}' exists already{where}: choose another label, "
                f"or use load_group('{self._label}')"
            )
        self._pk, self._ctime, self._user_email = pk, now, email
        return self

    def delete(self) -> None:
        """Delete the group (its nodes stay, as in aiida-core); the object becomes unstored.

        Raises:
            ModificationNotAllowed: the group is not stored.
            NotExistentError: the group was deleted meanwhile.
        """
        pk = self._stored_pk("delete")
        backend = _backend()
        with backend.transaction():
            self._check_still_stored(backend, "delete")
            backend.delete_group(pk)
        self._pk = None

    # -- membership -----------------------------------------------------------------------
    def add_nodes(self, nodes: Node | Iterable[Node]) -> None:
        """Add one stored node or many; nodes already in the group are left as they are.

        Raises:
            ModificationNotAllowed: the group is not stored.
            TypeError: something that is not a node.
            ValueError: a node that is not stored.
            NotExistentError: a node, or the group, was deleted from the database (nothing is added).
        """
        pk = self._stored_pk("add nodes to")
        items = _as_node_list(nodes, self, "add nodes to")
        if not items:
            return
        wanted = {node.pk for node in items if node.pk is not None}
        backend = _backend()
        with backend.transaction():
            self._check_still_stored(backend, "add nodes to")
            missing = wanted - backend.existing_node_ids(wanted)
            if missing:
                shown = ", ".join(str(p) for p in sorted(missing)[:10])
                raise NotExistentError(
                    f"cannot add nodes to group '{self._label}': no node with pk {shown} "
                    f"in profile '{_profile_name()}' (nothing added)"
                )
            backend.add_group_nodes(pk, wanted)

    def remove_nodes(self, nodes: Node | Iterable[Node]) -> None:
        """Remove one stored node or many (the nodes stay); nodes not in the group are ignored.

        Raises:
            ModificationNotAllowed: the group is not stored.
            TypeError, ValueError: as :meth:`add_nodes`.
        """
        pk = self._stored_pk("remove nodes from")
        items = _as_node_list(nodes, self, "remove nodes from")
        backend = _backend()
        with backend.transaction():
            self._check_still_stored(backend, "remove nodes from")
            backend.remove_group_nodes(pk, [node.pk for node in items if node.pk is not None])

    def add_nodes_from(self, source: Group) -> int:
        """Add every node of group ``source`` (one statement, however large); the number newly added.

        Raises:
            ModificationNotAllowed: this group or ``source`` is not stored.
            NotExistentError: this group was deleted meanwhile.
        """
        pk = self._stored_pk("add nodes to")
        if not isinstance(source, Group):
            raise TypeError(f"cannot add the nodes of a {type(source).__name__} to group '{self._label}'")
        source_pk = source._stored_pk("copy the nodes of")
        backend = _backend()
        with backend.transaction():
            self._check_still_stored(backend, "add nodes to")
            return backend.copy_group_nodes(source_pk, pk)

    def clear(self) -> None:
        """Remove every node from the group (the nodes stay)."""
        if self._pk is not None:
            backend = _backend()
            with backend.transaction():
                self._check_still_stored(backend, "clear")
                backend.clear_group(self._pk)

    def count(self) -> int:
        """The number of nodes in the group (counted by the database)."""
        return 0 if self._pk is None else _backend().count_group_nodes(self._pk)

    @property
    def is_empty(self) -> bool:
        return not self.nodes

    @property
    def nodes(self) -> GroupNodes:
        """The members, as loaded nodes by ascending pk: iterate, ``len()``, index or slice."""
        return GroupNodes(self._pk)

    # -- finding ---------------------------------------------------------------------------
    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> Group:
        group = cls.__new__(cls)
        group._pk = row["id"]
        group._uuid = row["uuid"]
        group._label = row["label"]
        group._type_string = row["type_string"]
        group._description = row["description"]
        group._extras = dict(row["extras"] or {})
        group._ctime = row["ctime"]
        group._user_email = row["user_email"]
        return group

    @classmethod
    def get(cls, label: str | None = None, *, pk: int | None = None, uuid: str | None = None) -> Group:
        """The stored group with exactly this label, or this pk, or this uuid (a unique prefix will do).

        Raises:
            ValueError: not exactly one of ``label``, ``pk``, ``uuid`` is given.
            NotExistentError: there is no such group.
            LookupError: a uuid prefix matches several groups.
        """
        given = [name for name, value in (("label", label), ("pk", pk), ("uuid", uuid)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                f"Group.get needs exactly one of label, pk, uuid (got {', '.join(given) or 'none'})"
            )
        if pk is not None and not 0 < pk <= MAX_PK:  # names no row; the database would overflow
            row = None
        elif uuid is not None and not _UUID_PREFIX.match(uuid):
            row = None  # a prefix is matched literally: '%' and '_' are no wildcards
        else:
            row = _backend().get_group(label=label, pk=pk, uuid=uuid.lower() if uuid else uuid)
        if row is None:
            what = (
                f"label '{label}'"
                if label is not None
                else f"pk {pk}"
                if pk is not None
                else f"uuid '{uuid}'"
            )
            raise NotExistentError(f"no group with {what} in profile '{_profile_name()}'")
        return cls._from_row(row)

    @classmethod
    def get_or_create(cls, label: str, **kwargs: Any) -> tuple[Group, bool]:
        """``(group, True)`` after storing a new group ``Group(label, **kwargs)``, or ``(existing, False)``.

        Safe against another process creating the same label at the same moment.
        """
        for _ in range(5):  # the group may be deleted between our failed insert and our read
            row = _backend().get_group(label=label)
            if row is not None:
                return cls._from_row(row), False
            try:
                return cls(label, **kwargs).store(), True
            except StoringNotAllowed:
                continue
        raise StoringNotAllowed(f"group '{label}' keeps being created and deleted by others: try again")


class GroupNodes:
    """The nodes of a group, read from the database when used.

    Iterating reads :attr:`PAGE` node rows per query (keyset paging by pk),
    so a group of 100,000 nodes is never held in memory at once;
    ``len()`` counts in the database; ``nodes[i]`` and ``nodes[a:b]`` read
    only what they return.  Each use reads afresh: nodes added meanwhile
    are seen.
    """

    PAGE = 1000

    def __init__(self, group_pk: int | None) -> None:
        self._group_pk = group_pk

    def _rows(self) -> Iterator[dict[str, Any]]:
        if self._group_pk is None:
            return
        backend, after = _backend(), None
        while True:
            rows = backend.group_node_rows(self._group_pk, after_id=after, limit=self.PAGE)
            yield from rows
            if len(rows) < self.PAGE:
                return
            after = rows[-1]["id"]

    def __iter__(self) -> Iterator[Node]:
        for row in self._rows():
            yield node_from_row(row)

    def pks(self) -> Iterator[int]:
        """The members' pks, ascending, without making node objects."""
        for row in self._rows():
            yield int(row["id"])

    def __len__(self) -> int:
        return 0 if self._group_pk is None else _backend().count_group_nodes(self._group_pk)

    def __bool__(self) -> bool:
        if self._group_pk is None:
            return False
        return bool(_backend().group_node_rows(self._group_pk, limit=1))

    @overload
    def __getitem__(self, index: int) -> Node: ...
    @overload
    def __getitem__(self, index: slice) -> list[Node]: ...
    def __getitem__(self, index: int | slice) -> Node | list[Node]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            if stop <= start or self._group_pk is None:
                return []
            rows = _backend().group_node_rows(self._group_pk, offset=start, limit=stop - start)
            return [node_from_row(row) for row in rows]
        if not isinstance(index, int):
            raise TypeError(f"group nodes are indexed by integers or slices, not {type(index).__name__}")
        position = index + len(self) if index < 0 else index
        rows = (
            _backend().group_node_rows(self._group_pk, offset=position, limit=1)
            if self._group_pk is not None and position >= 0
            else []
        )
        if not rows:
            raise IndexError(f"group node index {index} out of range")
        return node_from_row(rows[0])

    def __repr__(self) -> str:
        return f"<GroupNodes of group pk={self._group_pk}: {len(self)} nodes>"


def load_group(
    identifier: int | str | None = None,
    *,
    pk: int | None = None,
    uuid: str | None = None,
    label: str | None = None,
) -> Group:
    """Load a stored group by label, pk or uuid (a unique prefix of at least 4 characters will do).

    ``load_group("relaxations")``, ``load_group(12)``, ``load_group("3fa2c1b0")``,
    or explicitly ``load_group(label=...)``, ``pk=``, ``uuid=``.  A string
    identifier is tried in this order: an exact label, then a pk (all
    digits), then a uuid prefix; so a group labelled ``"2024"`` is found by
    its label even if a group has pk 2024 (``load_group(2024)`` gives that one).

    Raises:
        ValueError: not exactly one of ``identifier``, ``pk``, ``uuid``, ``label``.
        NotExistentError: no group matches (the message names the identifier).
        LookupError: a uuid prefix matches several groups.
    """
    given = [
        name
        for name, value in (("identifier", identifier), ("pk", pk), ("uuid", uuid), ("label", label))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            f"load_group needs exactly one of identifier, pk, uuid, label (got {', '.join(given) or 'none'})"
        )
    if identifier is None:
        return Group.get(label, pk=pk, uuid=uuid)
    if isinstance(identifier, bool) or not isinstance(identifier, (int, str)):
        raise TypeError(f"a group identifier is a label, pk or uuid, not a {type(identifier).__name__}")
    if isinstance(identifier, int):
        return Group.get(pk=identifier)
    backend = _backend()
    row = backend.get_group(label=identifier)
    if row is None and identifier.isascii() and identifier.isdigit() and 0 < int(identifier) <= MAX_PK:
        row = backend.get_group(pk=int(identifier))  # ASCII digits only: '٣' is not pk 3
    if row is None and len(identifier) >= 4 and _UUID_PREFIX.match(identifier):
        row = backend.get_group(uuid=identifier.lower())
    if row is None:
        raise NotExistentError(
            f"no group with label, pk or uuid '{identifier}' in profile '{_profile_name()}'"
        )
    return Group._from_row(row)
