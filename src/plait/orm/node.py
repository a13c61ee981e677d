"""Nodes: the vertices of the provenance graph.

A node is created in memory, filled, then stored with :meth:`Node.store`.
Once stored its attributes and files are fixed forever — changing them
raises :class:`~plait.orm.errors.ModificationNotAllowed` — because other
nodes' provenance refers to them.  ``label``, ``description`` and
``extras`` stay writable: they are annotations, not content.

Every stored node gets a content hash (``node_hash``) computed from its type,
attributes and files; the engine's caching (a later feature) looks results
up by it.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import io
import json
import math
import os
import reprlib
import uuid as _uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, Self, overload

from plait.orm.errors import ModificationNotAllowed, NotExistentError, StoringNotAllowed
from plait.transports.relative_paths import UnsafePathError, check_relative_path

if TYPE_CHECKING:
    from plait.orm.comments import Comment
    from plait.storage.backend import StorageBackend
    from plait.storage.repository import FileRepository

__all__ = ["Data", "LinkType", "Node", "NodeLinks", "check_json", "load_node", "node_from_row"]


class LinkType(enum.StrEnum):
    """The kinds of provenance link, from the input node's side to the output node's."""

    INPUT_CALC = "input_calc"  # data -> calculation that used it
    INPUT_WORK = "input_work"  # data -> workflow that used it
    CREATE = "create"  # calculation -> data it created
    RETURN = "return"  # workflow -> data it returned
    CALL_CALC = "call_calc"  # workflow -> calculation it called
    CALL_WORK = "call_work"  # workflow -> workflow it called


#: how deeply JSON values may nest (deeper is refused: the JSON encoders and the databases' JSON
#: functions recurse, and no real parameter set nests this deep).
MAX_JSON_DEPTH = 200


def _make_short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 60, 60
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = short.maxfrozenset = 6
    return short


_SHORT_REPR = _make_short_repr()


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a few levels and characters, for error messages.

    A plain ``repr`` of a value nested thousands of levels deep raises
    ``RecursionError`` (and one of a huge value floods the terminal); an error
    message about a bad value must never fail itself.
    """
    try:
        return _SHORT_REPR.repr(value)
    except Exception:  # a user's __repr__ may raise anything: still name the type
        return f"<{type(value).__name__}>"


def check_json(value: Any, where: str) -> None:
    """Refuse anything that is not plain JSON (dict with str keys, list, str, int, finite float, bool, None).

    Containers may nest at most :data:`MAX_JSON_DEPTH` levels, and a container
    that contains itself is refused (JSON is a tree), both with a clear error
    instead of a ``RecursionError``.

    Raises:
        StoringNotAllowed: naming ``where`` and the offending key path.
    """
    _check_json(value, where, 0, set())


def _check_json(value: Any, where: str, depth: int, path: set[int]) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoringNotAllowed(
                f"{where}: {short_repr(value)} cannot be stored (JSON has no NaN or infinity)"
            )
        return
    if not isinstance(value, (list, tuple, dict)):
        raise StoringNotAllowed(
            f"{where}: a {type(value).__name__} is not JSON (store a node or a plain value)"
        )
    if id(value) in path:
        raise StoringNotAllowed(f"{where}: the value contains itself, which JSON cannot hold")
    if depth >= MAX_JSON_DEPTH:
        shown = where if len(where) <= 80 else f"{where[:60]}...{where[-16:]}"
        raise StoringNotAllowed(f"{shown}: nested more than {MAX_JSON_DEPTH} levels deep")
    path.add(id(value))
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise StoringNotAllowed(
                        f"{where}: key {short_repr(key)} is not a string (JSON keys are strings)"
                    )
                _check_json(item, f"{where}[{key!r}]", depth + 1, path)
        else:
            for index, item in enumerate(value):
                _check_json(item, f"{where}[{index}]", depth + 1, path)
    finally:
        path.discard(id(value))


def _backend() -> StorageBackend:
    from plait.storage import get_backend

    return get_backend()


class Node:
    """Base class of every node.  See the module docstring for the life cycle."""

    #: the type recorded in the database; subclasses that are not built in get ``module:QualName``.
    node_type: ClassVar[str] = "node"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "node_type" not in cls.__dict__:
            cls.node_type = f"{cls.__module__}:{cls.__qualname__}"

    def __init__(self, *, label: str = "", description: str = "") -> None:
        self._pk: int | None = None
        self._uuid = str(_uuid.uuid4())
        self._label = label
        self._description = description
        self._attributes: dict[str, Any] = {}
        self._extras: dict[str, Any] = {}
        self._files: dict[str, list[Any]] = {}  # relpath -> [sha256, size] once in the repository
        self._pending: dict[str, bytes | Path] = {}  # relpath -> content not yet in the repository
        self._ctime: _dt.datetime | None = None
        self._mtime: _dt.datetime | None = None
        self._node_hash: str | None = None
        self._computer_id: int | None = None

    # -- identity ----------------------------------------------------------------
    @property
    def pk(self) -> int | None:
        """The database id, or None before the node is stored."""
        return self._pk

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def is_stored(self) -> bool:
        return self._pk is not None

    @property
    def ctime(self) -> _dt.datetime | None:
        return self._ctime

    @property
    def mtime(self) -> _dt.datetime | None:
        return self._mtime

    @property
    def node_hash(self) -> str | None:
        """Content hash (type, attributes, files); set when stored."""
        return self._node_hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Node):
            return self._uuid == other._uuid
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        pk = f"pk={self._pk}" if self._pk is not None else "unstored"
        return f"<{type(self).__name__} {pk} uuid={self._uuid[:8]}>"

    # -- annotations (always writable) ---------------------------------------------
    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        self._label = str(value)
        if self._pk is not None:
            _backend().update_node(self._pk, label=self._label)

    @property
    def description(self) -> str:
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = str(value)
        if self._pk is not None:
            _backend().update_node(self._pk, description=self._description)

    @property
    def extras(self) -> dict[str, Any]:
        """A copy of the extras; use :meth:`set_extra` to change them."""
        return dict(self._extras)

    def get_extra(self, key: str, default: Any = None) -> Any:
        return self._extras.get(key, default)

    def set_extra(self, key: str, value: Any) -> None:
        """Set an extra (JSON value); written at once if the node is stored."""
        check_json(value, f"extra '{key}'")
        self._extras[key] = value
        if self._pk is not None:
            _backend().update_node(self._pk, extras=self._extras)

    def delete_extra(self, key: str) -> None:
        self._extras.pop(key, None)
        if self._pk is not None:
            _backend().update_node(self._pk, extras=self._extras)

    # -- comments (always writable; see plait.orm.comments) -------------------------------
    def add_comment(self, content: str, user_email: str | None = None) -> Comment:
        """Attach a note to this stored node (by the profile's user unless ``user_email`` is given).

        Raises:
            StoringNotAllowed: the node is not stored.
            TypeError, ValueError: ``content`` is not text, or is empty.
        """
        from plait.orm.comments import Comment

        return Comment(self, content, user_email=user_email).store()

    def get_comment(self, identifier: int) -> Comment:
        """The comment with pk ``identifier`` on this node.

        Raises:
            NotExistentError: no such comment, or it is on another node.
        """
        from plait.orm.comments import Comment

        comment = Comment.get(identifier)
        if comment.node_pk != self._pk:
            raise NotExistentError(f"{self!r} has no comment {identifier} (it is on node {comment.node_pk})")
        return comment

    def get_comments(self) -> list[Comment]:
        """The comments on this node, oldest first ([] for an unstored node)."""
        from plait.orm.comments import Comment

        return [] if self._pk is None else Comment.list_for(self._pk)

    def update_comment(self, identifier: int, content: str) -> None:
        """Replace the text of comment ``identifier`` of this node.  Raises as :meth:`get_comment`."""
        self.get_comment(identifier).set_content(content)

    def remove_comment(self, identifier: int) -> None:
        """Delete comment ``identifier`` of this node.  Raises as :meth:`get_comment`."""
        self.get_comment(identifier).delete()

    # -- attributes (fixed once stored) ----------------------------------------------
    @property
    def attributes(self) -> dict[str, Any]:
        """A deep copy of the attributes (changing it changes nothing)."""
        return json.loads(json.dumps(self._attributes))

    def get_attribute(self, key: str, default: Any = None) -> Any:
        return self._attributes.get(key, default)

    def _check_mutable(self, what: str) -> None:
        if self.is_stored:
            raise ModificationNotAllowed(
                f"{type(self).__name__} pk={self._pk} is stored and cannot change its {what}; "
                "create a new node instead"
            )

    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute (JSON value).  Raises ModificationNotAllowed once stored."""
        self._check_mutable(f"attribute '{key}'")
        if not isinstance(key, str):
            raise StoringNotAllowed(f"attribute key {key!r} is not a string (JSON keys are strings)")
        check_json(value, f"attribute '{key}'")
        self._attributes[key] = value

    # -- files -------------------------------------------------------------------------
    @staticmethod
    def _clean_relpath(relpath: str) -> str:
        """``relpath`` as a clean relative path, or UnsafePathError (a ValueError): absolute, ``..``, NUL."""
        try:
            return check_relative_path(os.fspath(relpath), "file name")
        except (UnsafePathError, TypeError) as exc:
            raise UnsafePathError(
                f"{relpath!r} is not a relative file path inside the node ({exc})"
            ) from None

    def put_object_from_bytes(self, relpath: str, data: bytes) -> None:
        """Add a file with content ``data`` under ``relpath`` (before storing)."""
        self._check_mutable("files")
        self._pending[self._clean_relpath(relpath)] = bytes(data)

    def put_object_from_file(self, relpath: str, path: str | os.PathLike[str]) -> None:
        """Add the local file ``path`` under ``relpath`` (its content is read when the node is stored)."""
        self._check_mutable("files")
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"'{source}' is not a file")
        self._pending[self._clean_relpath(relpath)] = source

    def put_object_from_tree(self, path: str | os.PathLike[str], relpath: str = "") -> None:
        """Add every file below the local folder ``path`` (symlinks followed)."""
        root = Path(path)
        if not root.is_dir():
            raise NotADirectoryError(f"'{root}' is not a folder")
        for item in sorted(root.rglob("*")):
            if item.is_file():
                rel = item.relative_to(root).as_posix()
                self.put_object_from_file(f"{relpath}/{rel}" if relpath else rel, item)

    def list_object_names(self, path: str = "") -> list[str]:
        """Names directly inside the folder ``path`` of the node ("" is the top)."""
        prefix = self._clean_relpath(path) + "/" if path else ""
        names = set()
        for relpath in list(self._files) + list(self._pending):
            if relpath.startswith(prefix):
                names.add(relpath[len(prefix) :].split("/", 1)[0])
        return sorted(names)

    def list_file_paths(self) -> list[str]:
        """Every file of the node, as relative paths."""
        return sorted(set(self._files) | set(self._pending))

    @overload
    def get_object_content(self, relpath: str, mode: Literal["r"] = "r") -> str: ...
    @overload
    def get_object_content(self, relpath: str, mode: Literal["rb"]) -> bytes: ...
    @overload
    def get_object_content(self, relpath: str, mode: str) -> str | bytes: ...
    def get_object_content(self, relpath: str, mode: str = "r") -> str | bytes:
        """The content of file ``relpath``: ``str`` with mode "r", ``bytes`` with "rb"."""
        data = self._read_file(self._clean_relpath(relpath))
        return data.decode() if mode == "r" else data

    def open(self, relpath: str, mode: str = "r") -> IO[Any]:
        """A read-only file object for ``relpath`` (text with "r", binary with "rb")."""
        if mode not in ("r", "rb"):
            raise ValueError("node files are read-only: use mode 'r' or 'rb'")
        raw = io.BytesIO(self._read_file(self._clean_relpath(relpath)))
        return io.TextIOWrapper(raw, encoding="utf-8") if mode == "r" else raw

    def _read_file(self, relpath: str) -> bytes:
        if relpath in self._pending:
            content = self._pending[relpath]
            return content.read_bytes() if isinstance(content, Path) else content
        if relpath in self._files:
            return _backend().repository.get_bytes(self._files[relpath][0])
        raise FileNotFoundError(
            f"{self!r} has no file '{relpath}' (files: {', '.join(self.list_file_paths())})"
        )

    def copy_file_to(self, relpath: str, destination: str | os.PathLike[str]) -> None:
        """Write file ``relpath`` of the node to the local path ``destination``."""
        relpath = self._clean_relpath(relpath)
        if relpath in self._files:
            _backend().repository.copy_to(self._files[relpath][0], destination)
        else:
            Path(destination).write_bytes(self._read_file(relpath))

    # -- storing -----------------------------------------------------------------------
    def _validate_before_store(self) -> None:
        """Hook: subclasses refuse incomplete content here (raise StoringNotAllowed)."""

    def _compute_hash(self) -> str:
        payload = json.dumps(
            [self.node_type, self._attributes, sorted((k, v[0]) for k, v in self._files.items())],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.blake2b(payload.encode(), digest_size=32).hexdigest()

    def _flush_files(self, repository: FileRepository) -> None:
        for relpath, content in self._pending.items():
            if isinstance(content, Path):
                key = repository.put_file(content)
                size = content.stat().st_size
            else:
                key = repository.put_bytes(content)
                size = len(content)
            self._files[relpath] = [key, size]
        self._pending.clear()

    def _row(self, now: _dt.datetime) -> dict[str, Any]:
        return {
            "uuid": self._uuid,
            "node_type": self.node_type,
            "process_type": None,
            "label": self._label,
            "description": self._description,
            "ctime": now,
            "mtime": now,
            "attributes": self._attributes,
            "extras": self._extras,
            "files": self._files,
            "node_hash": self._node_hash,
            "computer_id": self._computer_id,
        }

    def store(self) -> Self:
        """Store the node (and nothing else); a stored node is returned unchanged."""
        if not self.is_stored:
            store_nodes([self])
        return self

    def _after_store(self, pk: int, now: _dt.datetime) -> None:
        self._pk = pk
        self._ctime = self._mtime = now

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> Self:
        node = cls.__new__(cls)
        node._pk = row["id"]
        node._uuid = row["uuid"]
        node._label = row["label"]
        node._description = row["description"]
        node._attributes = dict(row["attributes"] or {})
        node._extras = dict(row["extras"] or {})
        node._files = dict(row["files"] or {})
        node._pending = {}
        node._ctime = row["ctime"]
        node._mtime = row["mtime"]
        node._node_hash = row["node_hash"]
        node._computer_id = row["computer_id"]
        node._init_loaded(row)
        return node

    def _init_loaded(self, row: Mapping[str, Any]) -> None:
        """Hook for subclasses that keep more state than the node row."""

    # -- provenance --------------------------------------------------------------------
    @property
    def inputs(self) -> NodeLinks:
        """Incoming links by label: ``node.inputs.x`` or ``node.inputs['x']``."""
        return NodeLinks(self, incoming=True)

    @property
    def outputs(self) -> NodeLinks:
        """Outgoing links by label: ``node.outputs.result``."""
        return NodeLinks(self, incoming=False)

    def get_incoming(self, link_types: tuple[LinkType, ...] = ()) -> list[tuple[str, LinkType, Node]]:
        """``(label, link type, node)`` for every incoming link."""
        return self._links(True, link_types)

    def get_outgoing(self, link_types: tuple[LinkType, ...] = ()) -> list[tuple[str, LinkType, Node]]:
        """``(label, link type, node)`` for every outgoing link."""
        return self._links(False, link_types)

    def _links(self, incoming: bool, link_types: tuple[LinkType, ...]) -> list[tuple[str, LinkType, Node]]:
        if self._pk is None:
            return []
        rows = _backend().get_links(self._pk, incoming=incoming, link_types=[t.value for t in link_types])
        return links_from_rows(rows)


class Data(Node):
    """A node holding data: an input or output of processes."""

    node_type = "data.core.data"

    @property
    def creator(self) -> Node | None:
        """The calculation that created this node, if any."""
        found = self.get_incoming((LinkType.CREATE,))
        return found[0][2] if found else None


class NodeLinks(Mapping[str, Node]):
    """The neighbours of a node by link label, read when first accessed.

    Nested namespaces are stored with ``__`` in labels (``"parameters__x"``)
    and read back as attributes of attributes: ``node.inputs.parameters.x``.
    """

    _CALL = (LinkType.CALL_CALC, LinkType.CALL_WORK)

    def __init__(self, node: Node, incoming: bool, prefix: str = "") -> None:
        self._node = node
        self._incoming = incoming
        self._prefix = prefix
        self._cache: dict[str, Node] | None = None

    def _load(self) -> dict[str, Node]:
        if self._cache is None:
            links = self._node._links(self._incoming, ())
            self._cache = {
                label[len(self._prefix) :]: node
                for label, kind, node in links
                if kind not in self._CALL and label.startswith(self._prefix)
            }
        return self._cache

    def _namespace(self, key: str) -> NodeLinks | None:
        nested = key + "__"
        if any(label.startswith(nested) for label in self._load()):
            return NodeLinks(self._node, self._incoming, self._prefix + nested)
        return None

    def __getitem__(self, key: str) -> Any:
        key = key.replace(".", "__")
        found = self._load()
        if key in found:
            return found[key]
        namespace = self._namespace(key)
        if namespace is not None:
            return namespace
        side = "input" if self._incoming else "output"
        raise KeyError(f"{self._node!r} has no {side} '{key}' (has: {', '.join(sorted(found)) or 'none'})")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __dir__(self) -> list[str]:
        return sorted(self._load())


def links_from_rows(rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[str, LinkType, Node]]:
    """``(label, link type, node)`` for the storage's ``(label, link type, neighbour row)`` links."""
    return [(label, LinkType(kind), node_from_row(row)) for label, kind, row in rows]


def node_from_row(row: Mapping[str, Any]) -> Node:
    from plait.orm.registry import node_class_for

    return node_class_for(row["node_type"])._from_row(row)


def store_nodes(new_nodes: list[Node]) -> None:
    """Store several unstored nodes in one transaction (files first, then rows)."""
    from plait.storage.backend import utcnow

    backend = _backend()
    for node in new_nodes:
        node._validate_before_store()
        node._flush_files(backend.repository)
        if node._node_hash is None:
            node._node_hash = node._compute_hash()
    now = utcnow()
    pks = backend.insert_nodes([node._row(now) for node in new_nodes])
    for node, pk in zip(new_nodes, pks, strict=True):
        node._after_store(pk, now)


#: the largest pk a database can hold (SQLite INTEGER and PostgreSQL BIGINT are 64-bit signed).
MAX_PK = 2**63 - 1
_UUID_CHARS = frozenset("0123456789abcdef-")


def parse_identifier(identifier: int | str) -> tuple[int | None, str | None]:
    """``(pk, None)`` or ``(None, uuid_prefix)`` for what a user typed to name a node (or group).

    A pk is an int, or a string of ASCII digits (``"٣"`` is *not* pk 3: Python's
    ``str.isdigit`` accepts every script's digits).  Anything else is a uuid or a
    uuid prefix, lower-cased; a prefix is matched literally, so one holding a
    character no uuid has (``%``, ``_``) matches nothing instead of acting as a
    SQL ``LIKE`` wildcard.  A pk above :data:`MAX_PK` is returned as is: it names
    no row, and the caller says so instead of letting the database overflow.

    Raises:
        TypeError: ``identifier`` is a bool or neither an int nor a str.
    """
    if isinstance(identifier, bool) or not isinstance(identifier, (int, str)):
        raise TypeError(f"a node is named by a pk (int) or a uuid (str), not {identifier!r}")
    if isinstance(identifier, int):
        return identifier, None
    text = identifier.strip()
    if text.isascii() and text.isdigit():
        return int(text), None
    return None, text.lower()


def load_node(identifier: int | str | None = None, *, pk: int | None = None, uuid: str | None = None) -> Node:
    """Load a stored node by pk, uuid or unique uuid prefix.

    ``load_node(5)``, ``load_node("5")``, ``load_node("3fa2c1")``, ``load_node(uuid=...)``.

    Identifiers are read by :func:`parse_identifier`: a pk too large for the
    database, a non-ASCII digit or a prefix with ``%``/``_`` simply names no node.
    A string of digits is a pk first; when no node has that pk and it has at
    least 4 digits, it is tried as a uuid prefix (``"78113212"`` may begin a uuid).

    Raises:
        NotExistentError: no such node in the current profile (naming the value).
        LookupError: a uuid prefix matches more than one node.
        TypeError: the identifier is neither an int nor a str.
    """
    if identifier is not None:
        pk, uuid = parse_identifier(identifier)
    elif pk is not None:
        pk, _ = parse_identifier(pk)
    elif uuid is not None:
        uuid = str(uuid).strip().lower()
    if pk is None and uuid is None:
        raise ValueError("load_node needs a pk or a uuid")
    row = None
    if pk is not None and 0 < pk <= MAX_PK:
        row = _backend().get_node(pk=pk)
    elif uuid and _UUID_CHARS.issuperset(uuid):
        row = _backend().get_node(uuid=uuid)
    digits = identifier.strip() if isinstance(identifier, str) else ""
    if row is None and pk is not None and len(digits) >= 4 and _UUID_CHARS.issuperset(digits):
        row = _backend().get_node(uuid=digits)  # all digits, no such pk: perhaps a uuid prefix
    if row is None:
        from plait.storage import get_profile

        what = f"pk {pk}" if pk is not None else f"uuid '{uuid}'"
        raise NotExistentError(f"no node with {what} in profile '{get_profile().name}'")
    return node_from_row(row)
