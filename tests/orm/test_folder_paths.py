"""File names in FolderData stay inside the folder (issue 11): refused when added, checked when
written out, even if the stored names were tampered with in the database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from plait.orm import FolderData, SinglefileData, load_node
from plait.storage import get_backend
from plait.transports.relative_paths import UnsafePathError, as_operand, check_relative_path


@pytest.mark.parametrize("name", ["../escape", "/abs/file", "a/../../b", "a\0b", "", "./"])
def test_folder_data_refuses_names_that_leave_the_folder(name: str) -> None:
    folder = FolderData()
    with pytest.raises(ValueError, match="not a relative file path inside the node"):
        folder.put_object_from_bytes(name, b"x")
    assert folder.list_file_paths() == []


def test_single_file_data_refuses_a_nul_in_its_name() -> None:
    with pytest.raises(ValueError, match="NUL"):
        SinglefileData(b"x", filename="a\0b")


def test_copy_tree_to_writes_nothing_outside_for_a_tampered_name(tmp_path: Path) -> None:
    folder = FolderData()
    folder.put_object_from_bytes("inside.txt", b"fine")
    folder.put_object_from_bytes("sub/escape.txt", b"evil")
    folder.store()
    url = get_backend().database.engine.url
    database = url.database
    assert url.drivername.startswith("sqlite") and database
    files = {"inside.txt": folder._files["inside.txt"], "../../escape.txt": folder._files["sub/escape.txt"]}
    with sqlite3.connect(database) as connection:  # what a hostile database or archive could hold
        connection.execute("UPDATE nodes SET files = ? WHERE id = ?", (json.dumps(files), folder.pk))
    tampered = load_node(folder.pk)
    assert isinstance(tampered, FolderData)
    destination = tmp_path / "a" / "b" / "out"
    destination.mkdir(parents=True)
    with pytest.raises(ValueError, match=r"\.\./\.\./escape\.txt"):
        tampered.copy_tree_to(destination)
    assert not (tmp_path / "a" / "escape.txt").exists()
    assert list(destination.iterdir()) == []  # checked before writing anything


def test_the_one_check_cleans_and_refuses() -> None:
    assert check_relative_path("a/./b//c/", "x") == "a/b/c"
    assert check_relative_path(".", "x", allow_empty=True) == ""
    assert check_relative_path("out/*.txt", "x") == "out/*.txt"
    for bad in ("..", "a/..", "/", "/a", "a\0", 3):
        with pytest.raises(UnsafePathError, match=r"^x: "):
            check_relative_path(bad, "x")
    assert as_operand("-rf") == "./-rf" and as_operand("a-b") == "a-b"
