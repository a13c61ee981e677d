"""Code.get_or_create: a script that sets up its code can run again; a changed set-up is refused."""

from __future__ import annotations

import pytest

from plait.orm import Computer, InstalledCode, PortableCode, StoringNotAllowed, load_code


def test_the_same_installed_code_is_found_again():
    localhost = Computer.get("localhost")
    code, created = InstalledCode.get_or_create("bash", computer=localhost, filepath_executable="/bin/bash")
    assert created and code.is_stored
    again, created = InstalledCode.get_or_create("bash", computer=localhost, filepath_executable="/bin/bash")
    assert not created and again.pk == code.pk
    assert load_code("bash@localhost").pk == code.pk


def test_a_different_code_under_the_same_label_is_refused_naming_what_differs():
    localhost = Computer.get("localhost")
    InstalledCode.get_or_create("sh", computer=localhost, filepath_executable="/bin/sh")
    with pytest.raises(
        StoringNotAllowed, match=r"'sh@localhost' exists already .*filepath_executable differ"
    ):
        InstalledCode.get_or_create("sh", computer=localhost, filepath_executable="/bin/bash")
    with pytest.raises(StoringNotAllowed, match="prepend_text differ"):
        InstalledCode.get_or_create(
            "sh", computer=localhost, filepath_executable="/bin/sh", prepend_text="module load x"
        )


def test_portable_codes_compare_their_files(tmp_path):
    folder = tmp_path / "tool"
    folder.mkdir()
    (folder / "run").write_text("#!/bin/bash\necho one\n")
    code, created = PortableCode.get_or_create("tool", filepath_files=folder, filepath_executable="run")
    again, created_again = PortableCode.get_or_create(
        "tool", filepath_files=folder, filepath_executable="run"
    )
    assert created and not created_again and again.pk == code.pk
    (folder / "run").write_text("#!/bin/bash\necho two\n")
    with pytest.raises(StoringNotAllowed, match="files differ"):
        PortableCode.get_or_create("tool", filepath_files=folder, filepath_executable="run")
