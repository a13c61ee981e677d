"""Archives: a part of the provenance graph in one file, to share, publish and import elsewhere.

``create_archive(path, nodes=..., groups=..., all=False, **traversal_rules)`` writes the nodes
asked for and everything provenance ties to them (AiiDA's export rules); ``import_archive(path)``
reads one into the current profile in one transaction, matching nodes by UUID, so importing twice
adds nothing; ``inspect_archive(path)`` says what an archive holds.  The format (a zip with a
small SQLite database and the content-addressed files, each with its SHA-256) is described in
:mod:`plait.archive.format` and ``docs/archive.md``.

Two formats: ``format="plait"`` (the default) and ``format="aiida"``, the archives of aiida-core
2.x (:mod:`plait.archive.aiida_export`); an import recognises the format from the archive's
members (an AiiDA archive by its ``metadata.json`` and ``db.sqlite3``, read by
:mod:`plait.archive.aiida_import`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.archive.errors import (
    ArchiveError,
    ArchiveExportError,
    ArchiveVersionError,
    CorruptArchiveError,
    ImportConflictError,
    UnsafeArchiveError,
)
from plait.archive.export import ExportResult
from plait.archive.format import DEFAULT_COMPRESSION
from plait.archive.importer import ImportResult

if TYPE_CHECKING:
    from plait.orm import Group, Node
    from plait.storage.backend import StorageBackend

__all__ = [
    "ArchiveError",
    "ArchiveExportError",
    "ArchiveInfo",
    "ArchiveVersionError",
    "CorruptArchiveError",
    "ExportResult",
    "ImportConflictError",
    "ImportResult",
    "UnsafeArchiveError",
    "create_archive",
    "import_archive",
    "inspect_archive",
]

#: the formats :func:`create_archive` writes
FORMATS = ("plait", "aiida")


def create_archive(
    path: str | os.PathLike[str],
    nodes: Iterable[Node | int] | None = None,
    groups: Iterable[Group | str | int] | None = None,
    all: bool = False,
    *,
    format: str = "plait",
    overwrite: bool = False,
    include_comments: bool = True,
    include_logs: bool = True,
    dry_run: bool = False,
    batch_size: int = 2000,
    compression: int = DEFAULT_COMPRESSION,
    backend: StorageBackend | None = None,
    progress: bool | None = None,
    **traversal_rules: bool,
) -> ExportResult:
    """Write the archive ``path``: ``nodes``, the members of ``groups`` (or ``all``), and their provenance.

    ``nodes``: nodes or pks; ``groups``: groups, labels or pks (the groups are exported with
    their members); ``all``: every node, group and computer.  The set grows by the export rules
    (:data:`plait.orm.graph_traversal.EXPORT_RULES`); the switchable ones are keyword arguments
    as in aiida's ``create_archive``: ``input_calc_forward=False``, ``input_work_forward=False``,
    ``create_backward=True``, ``return_backward=False``, ``call_calc_backward=True``,
    ``call_work_backward=True`` (the defaults shown).  The computers the nodes ran on come
    along (never their per-user configuration), and the nodes' comments and logs unless
    ``include_comments``/``include_logs`` are False.  ``dry_run`` counts what would be written
    and writes nothing.  ``progress``: rich bars on stderr (None: only on a terminal).

    Returns an :class:`ExportResult` (path, rows per table, the parameters).

    Raises:
        ArchiveExportError: ``path`` exists (and not ``overwrite``), a process in the set is not
            terminated (named with its state), a pk is no node, the repository lacks a file.
        ValueError: an unknown, fixed or non-bool traversal rule; ``all`` with nodes or groups;
            an unknown ``format``; a bad ``batch_size`` or ``compression``.
        TypeError: an item of ``nodes`` or ``groups`` of the wrong type.
        NotExistentError: a group that does not exist.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown archive format {format!r}: plait writes {', '.join(FORMATS)}")
    if format == "aiida" and not dry_run:  # an archive aiida-core 2.x imports: see plait.archive.aiida_export
        from plait.archive.aiida_export import create_aiida_archive

        return create_aiida_archive(
            path,
            nodes=nodes,
            groups=groups,
            all=all,
            overwrite=overwrite,
            include_comments=include_comments,
            include_logs=include_logs,
            compression=compression,
            backend=backend,
            progress=progress,
            **traversal_rules,
        )
    from plait.archive.export import create_plait_archive

    return create_plait_archive(
        path,
        nodes=nodes,
        groups=groups,
        all=all,
        overwrite=overwrite,
        include_comments=include_comments,
        include_logs=include_logs,
        dry_run=dry_run,
        batch_size=batch_size,
        compression=compression,
        backend=backend,
        progress=progress,
        **traversal_rules,
    )


def import_archive(
    path: str | os.PathLike[str],
    group: str | None = None,
    *,
    backend: StorageBackend | None = None,
    batch_size: int = 2000,
    progress: bool | None = None,
    pk_map: bool = True,
) -> ImportResult:
    """Import the archive ``path`` into the profile, all or nothing; importing it again adds nothing.

    Nodes, comments, groups and computers are matched by UUID: what the profile has already is
    kept as it is (its labels, extras and logs included), and the rest is added with new pks.
    A computer or group whose label is taken by another one is imported as ``label-imported-N``
    (listed in ``result.relabelled``).  ``group``: the label of a group (created if needed) that
    receives every node of the archive, new or not.  ``pk_map=False`` leaves
    ``result.node_pks`` empty (for archives of millions of nodes).

    Returns an :class:`ImportResult`: rows ``added`` and ``existing`` per kind, and the maps of
    archive pks to profile pks.

    Raises:
        CorruptArchiveError: not a zip, truncated, a checksum that does not match, a reference to
            a record the archive lacks (the member or record is named).
        UnsafeArchiveError: a member path that leaves the target, a symlink, a zip bomb, a
            member that is not part of the format.
        ArchiveVersionError: another format or an unknown version.
        ImportConflictError: a node UUID in the profile with other content (what differs is named).
        In every case nothing was imported.
    """
    from plait.archive.aiida_import import import_aiida_archive, is_aiida_archive
    from plait.archive.importer import import_plait_archive
    from plait.archive.safety import open_checked

    with open_checked(path) as probe:
        aiida = is_aiida_archive(probe)
    if aiida:  # an archive of aiida-core 2.x (metadata.json and db.sqlite3): see plait.archive.aiida_import
        return import_aiida_archive(
            path, group=group, backend=backend, batch_size=batch_size, progress=progress, pk_map=pk_map
        )
    return import_plait_archive(
        path, group=group, backend=backend, batch_size=batch_size, progress=progress, pk_map=pk_map
    )


@dataclass
class ArchiveInfo:
    """What :func:`inspect_archive` reads from an archive's manifest."""

    path: Path
    format: str
    version: int
    created: str
    plait_version: str
    size: int
    #: rows per table of the archive's database; ``objects`` counts the files
    counts: dict[str, int] = field(default_factory=dict)
    #: how the set was chosen (nodes, groups, all, traversal rules)
    parameters: dict[str, Any] = field(default_factory=dict)


def inspect_archive(path: str | os.PathLike[str]) -> ArchiveInfo:
    """The format, version and contents of the archive ``path``, read from its manifest (nothing imported).

    Raises:
        CorruptArchiveError, UnsafeArchiveError, ArchiveVersionError: as :func:`import_archive`.
    """
    from plait.archive.importer import read_manifest
    from plait.archive.safety import open_checked

    with open_checked(path) as archive:
        manifest = read_manifest(archive)
    return ArchiveInfo(
        path=Path(path),
        format=str(manifest["format"]),
        version=int(manifest["version"]),
        created=str(manifest.get("created", "")),
        plait_version=str(manifest.get("plait_version", "")),
        size=Path(path).stat().st_size,
        counts={str(k): int(v) for k, v in dict(manifest.get("counts") or {}).items()},
        parameters=dict(manifest.get("parameters") or {}),
    )
