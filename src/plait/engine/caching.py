"""Caching: a calculation launched again with the same inputs reuses the result of the first run.

When a *calculation* (a calcfunction or a calculation job; never a workflow)
is launched with caching on for its class, and a stored process node of the
same node type with the same hash finished ok (exit status 0) and is a valid
cache, the new process is not run: it goes through the lifecycle like any
process (created -> running -> finished, written by
:mod:`plait.engine.lifecycle` only), and its finishing commit links *clones*
of the source's outputs and records the source's uuid in the attribute
:data:`CACHED_FROM_KEY` (``node.cached_from`` reads it back).  Outputs,
the attribute and the finished state are one transaction, so a crash leaves
either a running process that its holder's successor looks up again, or a
finished one.  A top-level launch of a calculation job is looked up before
anything is stored (:func:`launch_from_cache`): a hit is then one transaction
from the inputs to the finished state, with no event loop or runner.

Whether caching is on for a class, by its *identifier* (the entry point name
of a calculation plugin such as ``core.arithmetic.add``, or its class path
``module:QualName``; both are tried), is decided in this order:

1. ``metadata.disable_cache=True`` on the launch: off;
2. the innermost :func:`enable_caching` / :func:`disable_caching` block whose
   identifier matches (or that has none): on / off.  Blocks are held in a
   :mod:`contextvars` variable, so they are per thread and per asyncio task;
3. the profile options ``caching.enabled_for`` / ``caching.disabled_for``
   (lists of identifiers, ``*`` globs allowed): the most specific matching
   pattern wins (a pattern without ``*`` beats any glob, a longer fixed part
   beats a shorter one); the same specificity in both lists is an error;
4. ``caching.default_enabled`` (default False).

The hash (computed when the node is stored, kept in ``nodes.node_hash``)
covers the process class, the version of the plugin distribution that
provides it (see :func:`plugin_version`), the hashes of the input nodes, the
non-database inputs, the options that change results (not the scheduler's
queue, account, qos, priority, wall time or memory: :data:`HASH_IGNORED_OPTIONS`,
as aiida-core) and, for a calculation job, the uuid of its computer; for a
calcfunction also the function's source text.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import functools
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait.orm import CalculationNode, Node, ProcessNode

if TYPE_CHECKING:
    from plait.engine.process import Process

__all__ = [
    "CACHED_FROM_KEY",
    "HASH_IGNORED_OPTIONS",
    "CachingConfig",
    "RehashReport",
    "caching_identifiers",
    "clone_output",
    "compute_node_hash",
    "disable_caching",
    "enable_caching",
    "find_cache_source",
    "get_use_cache",
    "hash_extras",
    "launch_from_cache",
    "may_launch_from_cache",
    "plugin_version",
    "rehash_nodes",
    "reuse_cached_outputs",
]

#: the attribute of a process node created from the cache: the uuid of its source
CACHED_FROM_KEY = ProcessNode.CACHED_FROM_KEY
#: the extra that stops a node from serving as a cache when False (as aiida-core's ``_aiida_valid_cache``)
VALID_CACHE_KEY = ProcessNode.VALID_CACHE_KEY
#: options of a calculation job that do not change its results (left out of the hash, as aiida-core)
HASH_IGNORED_OPTIONS = frozenset(
    {"queue_name", "account", "qos", "priority", "max_wallclock_seconds", "max_memory_kb"}
)


@dataclass(frozen=True)
class _Override:
    enabled: bool
    identifier: str | None


_overrides: contextvars.ContextVar[tuple[_Override, ...]] = contextvars.ContextVar(
    "plait_caching_overrides", default=()
)


def _check_identifier(identifier: str | None) -> None:
    if identifier is not None and (not isinstance(identifier, str) or not identifier.strip()):
        raise ValueError(
            f"identifier must be an entry point name or a class path ('module:QualName'), "
            f"optionally with '*' globs, not {identifier!r}"
        )


@contextlib.contextmanager
def _override(enabled: bool, identifier: str | None) -> Iterator[None]:
    _check_identifier(identifier)
    token = _overrides.set((*_overrides.get(), _Override(enabled, identifier)))
    try:
        yield
    finally:
        _overrides.reset(token)


def enable_caching(*, identifier: str | None = None) -> contextlib.AbstractContextManager[None]:
    """Turn caching on inside a ``with`` block: for every calculation, or for ``identifier`` only.

    ``identifier`` is an entry point name (``core.arithmetic.add``) or a class
    path (``mymodule:MyJob``), ``*`` globs allowed.  The block affects processes
    launched in this thread or asyncio task (not those a daemon runs).

    Raises:
        ValueError: ``identifier`` is empty or not a string.
    """
    return _override(True, identifier)


def disable_caching(*, identifier: str | None = None) -> contextlib.AbstractContextManager[None]:
    """Turn caching off inside a ``with`` block (see :func:`enable_caching`)."""
    return _override(False, identifier)


@dataclass(frozen=True)
class CachingConfig:
    """The caching options of a profile (``[options.caching]`` in its profile.toml)."""

    default_enabled: bool = False
    enabled_for: tuple[str, ...] = ()
    disabled_for: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CachingConfig:
        """Read ``options["caching"]`` (or flat ``"caching.x"`` keys).

        Raises:
            ValueError: an option has the wrong type (naming it).
        """
        section = dict(options.get("caching") or {})
        for key, value in options.items():
            if key.startswith("caching."):
                section[key.split(".", 1)[1]] = value
        unknown = set(section) - {"default_enabled", "enabled_for", "disabled_for"}
        if unknown:
            raise ValueError(f"unknown caching option(s): {', '.join(sorted(unknown))}")
        default = section.get("default_enabled", False)
        if not isinstance(default, bool):
            raise ValueError(f"caching.default_enabled must be true or false, not {default!r}")
        lists = {}
        for name in ("enabled_for", "disabled_for"):
            value = section.get(name, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"caching.{name} must be a list of identifiers, not {value!r}")
            lists[name] = tuple(value)
        return cls(default, lists["enabled_for"], lists["disabled_for"])

    @classmethod
    def current(cls) -> CachingConfig:
        """The options of the loaded profile."""
        from plait.storage import get_profile

        return cls.from_options(get_profile().options)

    def decide(self, identifiers: tuple[str, ...]) -> bool:
        """Whether caching is on for a class known by these identifiers (most specific pattern wins).

        Raises:
            ValueError: the most specific match is in both lists.
        """
        best: tuple[tuple[int, int], bool, str] | None = None
        for enabled, patterns in ((True, self.enabled_for), (False, self.disabled_for)):
            for pattern in patterns:
                if not any(_matches(pattern, ident) for ident in identifiers):
                    continue
                rank = _specificity(pattern)
                if best is None or rank > best[0]:
                    best = (rank, enabled, pattern)
                elif rank == best[0] and enabled != best[1]:
                    raise ValueError(
                        f"caching of {identifiers[0]} is both enabled ('{best[2]}' or '{pattern}') and "
                        "disabled by equally specific patterns in caching.enabled_for/disabled_for"
                    )
        return best[1] if best is not None else self.default_enabled


def _matches(pattern: str, identifier: str) -> bool:
    return fnmatch.fnmatchcase(identifier, pattern)


def _specificity(pattern: str) -> tuple[int, int]:
    return (0 if "*" in pattern else 1, len(pattern.replace("*", "")))


@functools.cache
def _entry_point_names() -> dict[str, str]:
    """class path -> entry point name, for the calculation plugins."""
    from importlib.metadata import entry_points

    return {ep.value: ep.name for ep in entry_points(group="plait.calculations")}


def caching_identifiers(process_class: type[Process]) -> tuple[str, ...]:
    """The names a class is known by in caching options: its entry point name (if any), its class path."""
    path = process_class.process_type_string()
    name = _entry_point_names().get(path)
    return (name, path) if name else (path,)


def get_use_cache(process_class: type[Process], metadata: Mapping[str, Any] | None = None) -> bool:
    """Whether a launch of ``process_class`` (with this ``metadata``) may reuse a cached result.

    Workflows never do.  See the module docstring for the order of the rules.
    """
    if not issubclass(process_class._node_class, CalculationNode):
        return False
    if metadata and metadata.get("disable_cache"):
        return False
    identifiers = caching_identifiers(process_class)
    for override in reversed(_overrides.get()):
        if override.identifier is None or any(_matches(override.identifier, i) for i in identifiers):
            return override.enabled
    return CachingConfig.current().decide(identifiers)


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    """top-level package -> distributions installing it (read once: it scans every installed one)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


@functools.cache
def _distribution_version(path: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, entry_points, version

    for ep in entry_points(group="plait.calculations"):
        if ep.value == path and ep.dist is not None:
            return f"{ep.dist.name}=={ep.dist.version}"
    top = path.split(":", 1)[0].split(".", 1)[0]
    # a class of the running script: no distribution installs __main__, so skip the scan of every
    # installed one (0.5-0.7 s on a first launch)
    for dist in _packages_distributions().get(top, []) if top != "__main__" else ():
        with contextlib.suppress(PackageNotFoundError):
            return f"{dist}=={version(dist)}"
    module = sys.modules.get(top)
    found = getattr(module, "__version__", None)
    return f"{top}=={found}" if isinstance(found, str) else None


def plugin_version(process_class: type[Process]) -> str | None:
    """``dist==version`` of the distribution that provides the class, or None for a loose script.

    The distribution of the class's ``plait.calculations`` entry point, else the
    one that installs the class's top-level package, else that package's
    ``__version__``.  It is part of the hash, so upgrading a plugin makes its
    old results stop serving (``plait node rehash`` recomputes stored hashes).
    """
    return _distribution_version(process_class.process_type_string())


def hash_extras(process: Process) -> dict[str, Any]:
    """What the hash of ``process``'s node covers besides the class path and the inputs."""
    extras: dict[str, Any] = {"plugin_version": plugin_version(type(process))}
    func = getattr(type(process), "_func", None)
    if func is not None:
        try:
            extras["source"] = inspect.getsource(func)
        except (OSError, TypeError):  # defined interactively: its compiled code stands in
            extras["source"] = func.__code__.co_code.hex()
    computer = getattr(process, "computer", None) if hasattr(type(process), "computer") else None
    if computer is not None:
        extras["computer"] = computer.uuid
    return extras


def hashed_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The options that change results (:data:`HASH_IGNORED_OPTIONS` left out)."""
    if options is None:
        return None
    return {k: v for k, v in options.items() if k not in HASH_IGNORED_OPTIONS}


def find_cache_source(node: ProcessNode) -> ProcessNode | None:
    """The oldest valid cache for ``node``: same node type and hash, finished ok, not ``node`` itself.

    One query on the indexed ``nodes.node_hash`` joined with ``processes``;
    the rare candidates marked ``is_valid_cache = False`` are skipped here.
    """
    from plait.orm import load_node

    if not node.node_hash:
        return None
    found = _find_source(node.node_hash, node.node_type, node.pk)
    if found is None:
        return None
    source = load_node(found[0])
    assert isinstance(source, ProcessNode)
    return source


@functools.cache
def _source_query(excluding: bool) -> Any:
    """The look-up of :func:`_find_source`, built once (parameters ``h``, ``t`` and ``x``)."""
    from sqlalchemy import bindparam, select

    from plait.storage.schema import nodes, processes

    conditions = [
        nodes.c.node_hash == bindparam("h"),
        nodes.c.node_type == bindparam("t"),
        processes.c.state == "finished",
        processes.c.exit_status == 0,
    ]
    if excluding:
        conditions.append(nodes.c.id != bindparam("x"))
    return (
        select(nodes.c.id, nodes.c.uuid, nodes.c.extras)
        .join(processes, processes.c.node_id == nodes.c.id)
        .where(*conditions)
        .order_by(nodes.c.id)
        .limit(20)
    )


def _find_source(
    node_hash: str, node_type: str, exclude: int | None, conn: Any = None
) -> tuple[int, str] | None:
    """``(pk, uuid)`` of :func:`find_cache_source`'s node by hash and node type (in ``conn`` if given)."""
    from plait.storage import get_backend

    query, parameters = _source_query(exclude is not None), {"h": node_hash, "t": node_type, "x": exclude}
    if conn is not None:
        rows = conn.execute(query, parameters).all()
    else:
        with get_backend().database.read() as reading:
            rows = reading.execute(query, parameters).all()
    for pk, uuid, extras in rows:
        if (extras or {}).get(VALID_CACHE_KEY, True) is not False:
            return int(pk), str(uuid)
    return None


def clone_output(node: Node) -> Node:
    """An unstored copy of an output node: same class, attributes, files and computer, no extras.

    A :class:`~plait.orm.RemoteData` whose folder was cleaned stays marked cleaned.
    """
    from plait.orm import RemoteData

    cls = type(node)
    clone = cls.__new__(cls)
    Node.__init__(clone, label=node.label, description=node.description)
    clone._attributes = dict(node._attributes)
    clone._files = {key: list(value) for key, value in node._files.items()}
    clone._computer_id = node._computer_id
    if isinstance(node, RemoteData) and node.is_cleaned:
        clone._extras[RemoteData.KEY_EXTRA_CLEANED] = True
    return clone


def reuse_cached_outputs(process: Process) -> bool:
    """If ``process`` may use the cache and a source exists: register clones of its outputs.

    Returns True when it did (the process then finishes ok without running:
    the clones and :data:`CACHED_FROM_KEY` are written with that finishing
    commit), False when the process must run.  Called when a calculation
    starts (not on a resume past its start), in the thread or task that runs it.
    """
    decision = process.__dict__.get("_use_cache")
    if decision is None:
        decision = get_use_cache(type(process), process._inputs_raw.get("metadata"))
    if not decision:
        return False
    node = process.node
    source = _find_source(node.node_hash, node.node_type, node.pk) if node.node_hash else None
    if source is None:
        return False
    _reuse(process, *source)
    return True


def _reuse(process: Process, pk: int, uuid: str) -> None:
    """Register clones of the outputs that process ``pk`` created; record it as the source."""
    from plait.orm import LinkType
    from plait.orm.node import node_from_row
    from plait.storage import get_backend

    for label, _, row in get_backend().get_links(pk, incoming=False, link_types=[LinkType.CREATE.value]):
        process.out(label.replace("__", "."), clone_output(node_from_row(row)))
    process.node.set_runtime_attributes(**{CACHED_FROM_KEY: uuid})
    process.report(f"reused the outputs of process {pk} from the cache (same hash)")


def may_launch_from_cache(process: Any, inputs: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether :func:`launch_from_cache` could answer this launch (cheap: no storage is read).

    True for a calculation job whose caching is on (see :func:`get_use_cache`).
    """
    from plait.engine.calcjob import CalcJob
    from plait.engine.resolve import resolve_process

    try:
        cls, merged = resolve_process(process, inputs, kwargs)
    except TypeError:
        return False  # the launch itself reports it
    if not issubclass(cls, CalcJob):
        return False
    metadata = merged.get("metadata")
    return get_use_cache(cls, metadata if isinstance(metadata, Mapping) else None)


def launch_from_cache(
    process: Any, inputs: Any, kwargs: Mapping[str, Any]
) -> tuple[dict[str, Any], Any] | None:
    """A top-level launch of a calculation job answered from the cache, or None to launch it as usual.

    The hash of the launch is computed before anything is stored (the inputs' hashes, the class,
    its plugin version, the computer) and looked up.  With no valid source, nothing is stored and
    the launch goes on as usual (the runner looks again when the job starts).  With one, ONE
    transaction stores the inputs and the new process node, clones the source's outputs, records
    :data:`CACHED_FROM_KEY` and the finished state; no event loop, runner, lease, heartbeat or
    control server is involved, as a top-level process function runs.  Nothing can see the process
    before it is finished, so nothing can kill or take it meanwhile.  ``on_terminated`` runs
    after the commit.  Returns ``(nested outputs, node)``.

    Called by ``run``/``run_get_node`` in a thread without a running loop and by a runner's
    ``arun_get_node`` (in its database thread) for launches without a caller.

    Raises:
        InputValidationError: bad inputs (nothing stored), as the launch would.
    """
    from plait.engine.ports import extract_non_db, flatten_nodes
    from plait.engine.resolve import resolve_process
    from plait.orm import ProcessState
    from plait.storage import get_backend

    if not may_launch_from_cache(process, inputs, kwargs):
        return None
    cls, merged = resolve_process(process, inputs, kwargs)
    instance = cls(cls.prepare_inputs(merged), runner=None)
    spec = cls.spec()
    raw = instance._inputs_raw
    node_hash = instance._process_hash(flatten_nodes(raw, spec.inputs), extract_non_db(raw, spec.inputs))
    node_type = cls._node_class.node_type
    if _find_source(node_hash, node_type, None) is None:
        return None
    backend = get_backend()
    instance._on_terminated_called = True  # held back until the transaction has committed
    with backend.transaction() as conn:
        source = _find_source(node_hash, node_type, None, conn)  # again, in the writing transaction
        if source is None:
            return None  # it went meanwhile: nothing was stored
        node = instance._store_new(state=ProcessState.RUNNING, parent=None)
        if node.node_hash != node_hash:  # pragma: no cover - the hash is a function of the inputs
            raise RuntimeError(f"process {node.pk}: its stored hash differs from the one looked up")
        _reuse(instance, *source)
        instance._finish(None)
    instance._on_terminated_called = False
    instance._call_on_terminated()
    return instance.nested_outputs(), node


@dataclass
class RehashReport:
    """What :func:`rehash_nodes` did: nodes whose hash changed, kept, and process nodes it could not
    hash (their class cannot be imported any more: their old hash is kept)."""

    changed: int = 0
    unchanged: int = 0
    skipped: list[int] = field(default_factory=list)


def compute_node_hash(node: Node) -> str:
    """The hash ``node`` would get if stored now: for a process node, from its class as installed now.

    Raises:
        ImportError: the class of a process node cannot be imported.
    """
    if not isinstance(node, ProcessNode):
        return node._compute_hash()
    from plait.engine.ports import extract_non_db, flatten_nodes
    from plait.engine.resolve import load_process_class

    cls = load_process_class(node)
    process = cls._load(node, None)
    spec = cls.spec()
    inputs = process._inputs_raw
    return process._process_hash(flatten_nodes(inputs, spec.inputs), extract_non_db(inputs, spec.inputs))


def rehash_nodes(pks: Sequence[int] | None = None, *, batch_size: int = 1000) -> RehashReport:
    """Recompute and store ``node_hash`` of the nodes ``pks`` (all nodes when None), in batches.

    Run it after upgrading a plugin (whose version is part of its calculations'
    hashes) or after a change of plait's hashing.  Each batch is one transaction.

    Raises:
        NotExistentError: a pk of ``pks`` names no node (nothing is changed).
        ValueError: ``batch_size`` is not positive.
    """
    from sqlalchemy import select

    from plait.orm.errors import NotExistentError
    from plait.orm.node import node_from_row
    from plait.storage import get_backend
    from plait.storage.schema import nodes

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    backend = get_backend()
    report = RehashReport()
    if pks is not None:
        missing = set(pks) - backend.existing_node_ids(pks)
        if missing:
            raise NotExistentError(f"no node with pk {', '.join(map(str, sorted(missing)))}")
    wanted = sorted(set(pks)) if pks is not None else None
    last = 0
    while True:
        query = select(nodes).where(nodes.c.id > last).order_by(nodes.c.id).limit(batch_size)
        if wanted is not None:
            batch_ids = [pk for pk in wanted if pk > last][:batch_size]
            if not batch_ids:
                break
            query = select(nodes).where(nodes.c.id.in_(batch_ids)).order_by(nodes.c.id)
        with backend.database.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query).all()]
        if not rows:
            break
        last = rows[-1]["id"]
        changes: list[tuple[int, str]] = []
        for row in rows:
            try:
                new = compute_node_hash(node_from_row(row))
            except ImportError:
                report.skipped.append(row["id"])
                continue
            if new != row["node_hash"]:
                changes.append((row["id"], new))
            else:
                report.unchanged += 1
        if changes:
            with backend.transaction():
                for pk, new in changes:
                    backend.update_node(pk, node_hash=new)
            report.changed += len(changes)
    return report
