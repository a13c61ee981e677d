"""Codes: the executables calculation jobs run.

* :class:`InstalledCode` — an executable already on a computer
  (``/usr/bin/bash`` on ``localhost``, ``/opt/qe/bin/pw.x`` on a cluster).
* :class:`PortableCode` — an executable (and the files beside it) stored in
  plait and uploaded with every job, so it runs on any computer.

Codes are data nodes: every calculation that used one links to it, so the
provenance says exactly which executable made each result.  Find one by
``label@computer`` with :func:`load_code`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, cast

from plait.orm.computer import Computer
from plait.orm.errors import NotExistentError, StoringNotAllowed
from plait.orm.node import Data, Node

__all__ = ["Code", "InstalledCode", "PortableCode", "load_code"]


#: the longest label the database column holds.
MAX_LABEL_LENGTH = 255


def _check_code_label(label: str) -> None:
    """Refuse a label that ``label@computer`` could not find again, or the column cannot hold.

    Raises:
        ValueError: naming the label and the reason.
    """
    if "@" in label:
        raise ValueError(f"invalid code label {label!r}: no '@' (a code is addressed as label@computer)")
    if any(c in label for c in "\n\r\0"):
        raise ValueError(f"invalid code label {label!r}: no newline or NUL character")
    if len(label) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"invalid code label {label[:40]!r}...: {len(label)} characters, at most {MAX_LABEL_LENGTH}"
        )


class Code(Data):
    """What both kinds of code share: label, default plugin, text around the command, MPI."""

    node_type = "data.core.code"

    def __init__(
        self,
        *,
        default_calc_job_plugin: str | None = None,
        prepend_text: str = "",
        append_text: str = "",
        with_mpi: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_code_label(self.label)
        self.set_attribute("default_calc_job_plugin", default_calc_job_plugin)
        self.set_attribute("prepend_text", prepend_text)
        self.set_attribute("append_text", append_text)
        self.set_attribute("with_mpi", with_mpi)

    @property
    def default_calc_job_plugin(self) -> str | None:
        return self.get_attribute("default_calc_job_plugin")

    @property
    def prepend_text(self) -> str:
        return self.get_attribute("prepend_text", "")

    @property
    def append_text(self) -> str:
        return self.get_attribute("append_text", "")

    @property
    def with_mpi(self) -> bool | None:
        return self.get_attribute("with_mpi")

    @property
    def full_label(self) -> str:
        return f"{self.label}@{self.computer_label}"

    @property
    def computer_label(self) -> str:
        return self.get_attribute("computer", "")

    def get_executable(self) -> str:
        """The path of the executable on the computer the job runs on."""
        raise NotImplementedError

    @classmethod
    def get_or_create(cls, label: str, **kwargs: Any) -> tuple[Self, bool]:
        """``(code, True)`` after storing a new ``cls(label=label, **kwargs)``, or ``(existing, False)``.

        The existing code is the one stored as ``label@computer``, returned only
        when it is the same code (same kind, attributes and files): a script
        that sets up its code can run again, and a changed set-up is refused
        rather than silently ignored.

        Raises:
            StoringNotAllowed: a different code has this label on this computer (what differs is named).
        """
        candidate = cls(label=label, **kwargs)
        existing = _find_codes(label, candidate.computer_label)
        if not existing:
            return candidate.store(), True
        found = existing[0]
        differences = _differences(found, candidate)
        if differences:
            raise StoringNotAllowed(
                f"a different code '{candidate.full_label}' exists already (pk {found.pk}): its "
                f"{', '.join(differences)} differ; choose another label, or load it with load_code"
            )
        return cast(Self, found), False

    def _validate_before_store(self) -> None:
        if not self.label:
            raise StoringNotAllowed(f"a {type(self).__name__} needs a label (found later as label@computer)")
        try:
            _check_code_label(self.label)
        except ValueError as exc:
            raise StoringNotAllowed(str(exc)) from None
        existing = _find_codes(self.label, self.computer_label)
        if existing:
            raise StoringNotAllowed(f"a code '{self.full_label}' exists already (pk {existing[0].pk})")


class InstalledCode(Code):
    """An executable installed on a computer."""

    node_type = "data.core.code.installed"

    def __init__(
        self, *, computer: Computer | None = None, filepath_executable: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if computer is not None:
            self.computer = computer
        if filepath_executable is not None:
            if not str(filepath_executable).startswith("/"):
                raise ValueError(f"filepath_executable '{filepath_executable}' must be an absolute path")
            self.set_attribute("filepath_executable", str(filepath_executable))

    @property
    def computer(self) -> Computer:
        return Computer.get(pk=self._computer_id)

    @computer.setter
    def computer(self, computer: Computer) -> None:
        self._check_mutable("computer")
        if computer.pk is None:
            raise StoringNotAllowed("store the computer before creating a code on it")
        self._computer_id = computer.pk
        self.set_attribute("computer", computer.label)

    @property
    def filepath_executable(self) -> str:
        return self.get_attribute("filepath_executable", "")

    def get_executable(self) -> str:
        return self.filepath_executable

    def _validate_before_store(self) -> None:
        if self._computer_id is None or not self.filepath_executable:
            raise StoringNotAllowed("an InstalledCode needs a computer and filepath_executable")
        super()._validate_before_store()


class PortableCode(Code):
    """An executable stored in plait and uploaded into every job's folder."""

    node_type = "data.core.code.portable"

    def __init__(
        self,
        *,
        filepath_files: str | os.PathLike[str] | None = None,
        filepath_executable: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if filepath_files is not None:
            root = Path(filepath_files)
            if root.is_file():
                self.put_object_from_file(root.name, root)
            else:
                self.put_object_from_tree(root)
        if filepath_executable is not None:
            self.set_attribute("filepath_executable", str(filepath_executable))
        self.set_attribute("computer", "")

    @property
    def filepath_executable(self) -> str:
        return self.get_attribute("filepath_executable", "")

    def get_executable(self) -> str:
        return f"./{self.filepath_executable}"

    def _validate_before_store(self) -> None:
        if self.filepath_executable not in self.list_file_paths():
            raise StoringNotAllowed(
                f"PortableCode: the executable '{self.filepath_executable}' is not among its files "
                f"({', '.join(self.list_file_paths()) or 'none'})"
            )
        super()._validate_before_store()


def _code_from_row(row: Mapping[str, Any]) -> Code:
    """The code of a row found by a query for the code node types."""
    from plait.orm.node import node_from_row

    node = node_from_row(row)
    if not isinstance(node, Code):  # the built-in code types always load as Code subclasses
        raise TypeError(f"node {row.get('id')} is a {type(node).__name__}, not a code")
    return node


def _differences(stored: Code, candidate: Code) -> list[str]:
    """What makes ``candidate`` another code than ``stored`` (empty when they are the same)."""
    if type(stored) is not type(candidate):
        return [f"kind ({type(stored).__name__}, not {type(candidate).__name__})"]
    found = [
        key
        for key in sorted(set(stored.attributes) | set(candidate.attributes))
        if stored.attributes.get(key) != candidate.attributes.get(key)
    ]
    paths = stored.list_file_paths()
    if paths != candidate.list_file_paths() or any(
        stored.get_object_content(p, "rb") != candidate.get_object_content(p, "rb") for p in paths
    ):
        found.append("files")
    return found


def _find_codes(label: str, computer_label: str) -> list[Code]:
    from plait.storage import get_backend

    rows = get_backend().find_nodes(node_types=["data.core.code.installed", "data.core.code.portable"])
    found = []
    for row in rows:
        if row["label"] == label and (row["attributes"] or {}).get("computer", "") == computer_label:
            found.append(_code_from_row(row))
    return found


def load_code(identifier: str | int) -> Code:
    """A code by ``label@computer``, ``label`` (if unique), pk or uuid.

    Raises:
        NotExistentError: no such code (the message lists the codes that exist).
    """
    from plait.orm.node import load_node

    if isinstance(identifier, int) or (isinstance(identifier, str) and identifier.isdigit()):
        node = load_node(identifier)
        if not isinstance(node, Code):
            raise NotExistentError(f"node {identifier} is a {type(node).__name__}, not a code")
        return node
    label, _, computer = str(identifier).partition("@")
    from plait.storage import get_backend

    rows = get_backend().find_nodes(node_types=["data.core.code.installed", "data.core.code.portable"])
    matches = [
        r
        for r in rows
        if r["label"] == label and (not computer or (r["attributes"] or {}).get("computer", "") == computer)
    ]
    if len(matches) == 1:
        return _code_from_row(matches[0])
    if len(matches) > 1:
        raise NotExistentError(f"code label '{label}' is ambiguous: write it as label@computer")
    if not computer and len(label) >= 4:  # maybe a uuid or uuid prefix
        by_uuid: Node | None
        try:
            by_uuid = load_node(uuid=label)
        except (NotExistentError, LookupError):
            by_uuid = None
        if isinstance(by_uuid, Code):
            return by_uuid
    known = ", ".join(f"{r['label']}@{(r['attributes'] or {}).get('computer', '')}" for r in rows) or "none"
    raise NotExistentError(f"no code '{identifier}' (codes: {known})")
