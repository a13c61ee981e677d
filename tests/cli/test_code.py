"""``plait code create installed|portable``, ``plait code list`` and ``plait code show``."""

from __future__ import annotations

import re

from plait.orm import InstalledCode, Int, PortableCode, load_code

from .helpers import assert_one_line_error


def _bash(invoke, *extra: str) -> None:
    invoke(
        "code", "create", "installed", "--label", "bash", "--computer", "localhost",
        "--filepath-executable", "/usr/bin/bash", *extra,
    )  # fmt: skip


def _portable_folder(tmp_path):
    folder = tmp_path / "tool"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "run.sh").write_text("#!/bin/bash\necho ran\n")
    (folder / "data.txt").write_text("42\n")
    return folder


def test_create_installed_stores_the_code(invoke):
    result = invoke(
        "code", "create", "installed", "--label", "bash", "--computer", "localhost",
        "--filepath-executable", "/usr/bin/bash", "--description", "GNU bash", "--default-plugin", "shell",
        "--prepend-text", "export A=1", "--append-text", "echo end", "--with-mpi",
    )  # fmt: skip
    assert "Created installed code 'bash@localhost'" in result.stdout
    found = load_code("bash@localhost")
    assert isinstance(found, InstalledCode) and found.is_stored
    assert found.filepath_executable == "/usr/bin/bash"
    assert found.computer.label == "localhost"
    assert (found.description, found.default_calc_job_plugin) == ("GNU bash", "shell")
    assert (found.prepend_text, found.append_text, found.with_mpi) == ("export A=1", "echo end", True)


def test_create_installed_without_mpi_and_defaults(invoke):
    _bash(invoke, "--without-mpi")
    found = load_code("bash")
    assert found.with_mpi is False and found.default_calc_job_plugin is None and found.prepend_text == ""


def test_create_portable_stores_the_files(invoke, tmp_path):
    folder = _portable_folder(tmp_path)
    result = invoke(
        "code", "create", "portable", "--label", "tool", "--filepath-files", str(folder),
        "--filepath-executable", "bin/run.sh",
    )  # fmt: skip
    assert "Created portable code 'tool'" in result.stdout
    found = load_code("tool")
    assert isinstance(found, PortableCode)
    assert sorted(found.list_file_paths()) == ["bin/run.sh", "data.txt"]
    assert found.get_object_content("bin/run.sh") == "#!/bin/bash\necho ran\n"
    assert found.get_executable() == "./bin/run.sh"

    single = tmp_path / "one.sh"
    single.write_text("echo one\n")
    invoke("code", "create", "portable", "-L", "one", "-F", str(single), "-X", "one.sh")
    assert load_code("one").list_file_paths() == ["one.sh"]


def test_list_and_filter(invoke, tmp_path):
    assert "No codes yet" in invoke("code", "list").stdout
    _bash(invoke, "--default-plugin", "shell")
    folder = _portable_folder(tmp_path)
    invoke("code", "create", "portable", "-L", "tool", "-F", str(folder), "-X", "bin/run.sh")
    invoke("computer", "setup", "-n", "-L", "other", "-T", "local", "-S", "direct", "-w", str(tmp_path / "w"))
    invoke("code", "create", "installed", "-L", "bash", "-Y", "other", "-X", "/bin/bash")

    bash, tool, other = load_code("bash@localhost"), load_code("tool"), load_code("bash@other")
    listing = invoke("code", "list").stdout
    assert re.search(
        rf"^{bash.pk}\s+bash@localhost\s+installed\s+localhost\s+/usr/bin/bash\s+shell", listing, re.M
    )
    assert re.search(rf"^{tool.pk}\s+tool\s+portable\s+\(any\)\s+bin/run\.sh\s+-", listing, re.M)
    assert re.search(rf"^{other.pk}\s+bash@other\s+installed\s+other\s+/bin/bash", listing, re.M)

    only = invoke("code", "list", "--computer", "other").stdout
    assert "bash@other" in only and "bash@localhost" not in only and "tool" not in only
    assert "No codes on 'localhost'" not in invoke("code", "list", "-Y", "localhost").stdout
    assert_one_line_error(invoke("code", "list", "-Y", "nowhere", code=1), "no computer with label 'nowhere'")


def test_show_by_full_label_label_and_pk(invoke, tmp_path):
    _bash(invoke, "--default-plugin", "shell", "--description", "GNU bash")
    found = load_code("bash@localhost")
    for identifier in ("bash@localhost", "bash", str(found.pk), found.uuid):
        out = invoke("code", "show", identifier).stdout
        assert re.search(r"full label\s+bash@localhost", out)
        assert re.search(rf"pk\s+{found.pk}\b", out)
        assert re.search(r"executable\s+/usr/bin/bash", out)
        assert re.search(r"default plugin\s+shell", out)
        assert re.search(r"with MPI\s+as the job says", out)
        assert re.search(r"used by\s+0 calculations", out)

    folder = _portable_folder(tmp_path)
    invoke("code", "create", "portable", "-L", "tool", "-F", str(folder), "-X", "bin/run.sh", "--without-mpi")
    out = invoke("code", "show", "tool").stdout
    assert "(any: its files are uploaded with every job)" in out
    assert "bin/run.sh (run as ./bin/run.sh)" in out
    assert re.search(r"with MPI\s+never", out)
    assert "Files:" in out and "  data.txt" in out


def test_errors_are_one_line(invoke, tmp_path):
    _bash(invoke)
    assert_one_line_error(
        invoke("code", "create", "installed", "-L", "bash", "-Y", "localhost", "-X", "/bin/sh", code=1),
        "a code 'bash@localhost' exists already",
    )
    assert_one_line_error(
        invoke("code", "create", "installed", "-L", "x", "-Y", "nowhere", "-X", "/bin/sh", code=1),
        "no computer with label 'nowhere'",
    )
    assert_one_line_error(
        invoke("code", "create", "installed", "-L", "x", "-Y", "localhost", "-X", "bin/sh", code=1),
        "'bin/sh' must be an absolute path",
    )
    line = assert_one_line_error(
        invoke("code", "create", "installed", "-L", "x", "-Y", "localhost", "-X", "/bin/sh",
               "--default-plugin", "quantum.espresso", code=1),
        "unknown calculation plugin 'quantum.espresso'",
    )  # fmt: skip
    assert "arithmetic.add" in line and "shell" in line
    assert_one_line_error(
        invoke("code", "create", "installed", "-L", "x", "-Y", "localhost", code=None),
        "Missing option '--filepath-executable'",
        code=2,
    )
    folder = _portable_folder(tmp_path)
    assert_one_line_error(
        invoke("code", "create", "portable", "-L", "p", "-F", str(folder), "-X", "bin/missing.sh", code=1),
        "'bin/missing.sh' is not among its files",
    )
    assert_one_line_error(
        invoke("code", "create", "portable", "-L", "p", "-F", str(folder), "-X", "/abs/run.sh", code=1),
        "must be relative",
    )
    assert_one_line_error(
        invoke("code", "create", "portable", "-L", "p", "-F", str(tmp_path / "nope"), "-X", "a", code=None),
        "--filepath-files",
        code=2,
    )
    assert_one_line_error(invoke("code", "show", "nothing@localhost", code=1), "no code 'nothing@localhost'")
    number = Int(5).store()
    assert_one_line_error(invoke("code", "show", str(number.pk), code=1), "is a Int, not a code")
    assert [c.full_label for c in [load_code("bash")]] == ["bash@localhost"]  # nothing else was stored
    assert "No codes" not in invoke("code", "list").stdout
