"""``plait computer setup|configure|list|show|test``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import plait.storage
from plait.cli.computer import MASK, mask_secrets
from plait.cli.main import cli
from plait.orm import Computer
from plait.transports.testing import LoopbackSshd, free_port, require_sshd

from .helpers import assert_one_line_error

SETUP_CLUSTER = (
    "computer", "setup", "-n",
    "--label", "cluster",
    "--hostname", "login.example.org",
    "--description", "the group's cluster",
    "--transport", "ssh",
    "--scheduler", "slurm",
    "--work-dir", "/scratch/{username}/plait",
)  # fmt: skip


def _local(invoke, label: str, work_dir: Path | str, scheduler: str = "direct") -> None:
    invoke("computer", "setup", "-n", "-L", label, "-T", "local", "-S", scheduler, "-w", str(work_dir))


def _ssh_to(invoke, label: str, work_dir: Path) -> None:
    invoke(
        "computer",
        "setup",
        "-n",
        "-L",
        label,
        "-H",
        "127.0.0.1",
        "-T",
        "ssh",
        "-S",
        "direct",
        "-w",
        str(work_dir),
    )


def _marks(stdout: str) -> list[tuple[str, str]]:
    """``[("✓", "open the connection"), ("✗", ...), ("-", ...)]`` from the checklist of ``computer test``."""
    return [
        (m.group(1), m.group(2).strip())
        for m in re.finditer(r"^([✓✗-]) (.+?)\s{2,}(?:[\d.]+ s|skipped)", stdout, re.M)
    ]


# -- setup --------------------------------------------------------------------------------------------


def test_setup_with_every_option_stores_the_computer(invoke):
    result = invoke(
        *SETUP_CLUSTER,
        "--mpirun-command", "srun --mpi=pmix -n {tot_num_mpiprocs}",
        "--mpiprocs-per-machine", "128",
        "--memory-per-machine", "256000000",
        "--safe-interval", "2.5",
        "--poll-interval", "30",
        "--max-queued-jobs", "50",
        "--retry-interval", "4",
        "--retry-attempts", "3",
        "--max-concurrent-operations", "2",
        "--prepend-text", "module load gcc",
        "--append-text", "echo done",
        "--scheduler-option", "command_timeout=45",
    )  # fmt: skip
    assert "Created computer 'cluster'" in result.stdout
    assert "plait computer configure cluster" in result.stdout

    found = Computer.get("cluster")
    assert (found.hostname, found.transport_type, found.scheduler_type) == (
        "login.example.org",
        "ssh",
        "slurm",
    )
    assert found.work_dir == "/scratch/{username}/plait"
    assert found.description == "the group's cluster"
    options = found.options
    assert options["mpirun_command"] == ["srun", "--mpi=pmix", "-n", "{tot_num_mpiprocs}"]
    assert options["default_mpiprocs_per_machine"] == 128
    assert options["default_memory_per_machine_kb"] == 256000000
    assert options["safe_interval"] == 2.5
    assert options["minimum_poll_interval"] == 30
    assert options["max_queued_jobs"] == 50
    assert options["retry_initial_interval"] == 4
    assert options["retry_max_attempts"] == 3
    assert options["max_concurrent_operations"] == 2
    assert (options["prepend_text"], options["append_text"]) == ("module load gcc", "echo done")
    assert options["scheduler_options"] == {"command_timeout": 45}
    assert found.get_scheduler().options["command_timeout"] == 45
    assert not found.get_config()


def test_setup_local_defaults_the_hostname(invoke, tmp_path):
    result = invoke(
        "computer", "setup", "-n", "-L", "here", "-T", "local", "-S", "direct", "-w", str(tmp_path)
    )
    assert "plait computer test here" in result.stdout
    found = Computer.get("here")
    assert found.hostname == "localhost"
    assert found.options["mpirun_command"] == ["mpirun", "-np", "{tot_num_mpiprocs}"]  # the default


def test_setup_asks_for_what_is_missing(plait_home):
    runner = CliRunner()
    answers = "\n".join(
        [
            "localhost",  # taken: asked again
            "has space",  # invalid: asked again
            "asked",
            "telepathy",  # not a transport: asked again
            "ssh",
            "node7.example.org",
            "",  # the default scheduler: direct
            "/work/{username}",
        ]
    )
    result = runner.invoke(
        cli, ["computer", "setup", "--interactive", "-D", "asked for"], input=answers + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "exists already" in result.output and "no spaces" in result.output
    assert "telepathy" in result.output  # click says the choice is not valid
    found = Computer.get("asked")
    assert (found.hostname, found.transport_type, found.scheduler_type) == (
        "node7.example.org",
        "ssh",
        "direct",
    )
    assert (found.work_dir, found.description) == ("/work/{username}", "asked for")


def test_setup_interactive_proposes_defaults_for_local(plait_home):
    result = CliRunner().invoke(
        cli, ["computer", "setup", "--interactive", "-L", "mine", "-T", "local"], input="\n\n\n"
    )
    assert result.exit_code == 0, result.output
    found = Computer.get("mine")
    assert (found.hostname, found.scheduler_type, found.work_dir) == (
        "localhost",
        "direct",
        "/tmp/plait-{username}",
    )


def test_setup_errors_are_one_line(invoke, tmp_path):
    line = assert_one_line_error(invoke("computer", "setup", "-n", "-L", "x", code=1), "missing option")
    assert "--hostname, --transport, --scheduler, --work-dir" in line
    # stdin is not a terminal here, so nothing is asked even without -n
    assert_one_line_error(
        invoke("computer", "setup", "-L", "x", "-T", "ssh", code=1), "missing options --hostname, --scheduler"
    )
    line = assert_one_line_error(
        invoke(*SETUP_CLUSTER[:-4], "-T", "carrier-pigeon", "-S", "slurm", "-w", "/x", code=1),
        "unknown transport 'carrier-pigeon'",
    )
    assert "local, ssh, ssh-blocking" in line
    line = assert_one_line_error(
        invoke("computer", "setup", "-n", "-L", "x", "-T", "local", "-S", "loadleveler", "-w", "/x", code=1),
        "unknown scheduler 'loadleveler'",
    )
    assert "direct, lsf, pbs, sge, slurm" in line
    invoke(*SETUP_CLUSTER)
    assert_one_line_error(invoke(*SETUP_CLUSTER, code=1), "a computer labelled 'cluster' exists already")
    assert_one_line_error(
        invoke("computer", "setup", "-n", "-L", "a@b", "-T", "local", "-S", "direct", "-w", "/x", code=1),
        "invalid computer label 'a@b'",
    )
    assert_one_line_error(
        invoke(
            "computer", "setup", "-n", "-L", "y", "-T", "local", "-S", "direct", "-w", "/w/{user}", code=1
        ),
        "work_dir may only use the placeholder {username}",
    )
    assert_one_line_error(
        invoke("computer", "setup", "-n", "-L", "y", "-T", "local", "-S", "slurm", "-w", "/x",
               "--scheduler-option", "colour=blue", code=1),
        "--scheduler-option", "unknown option(s) 'colour'",
    )  # fmt: skip
    assert_one_line_error(
        invoke("computer", "setup", "-n", "-L", "y", "-T", "local", "-S", "slurm", "-w", "/x",
               "--scheduler-option", "no-equals-sign", code=None),
        "'no-equals-sign' is not KEY=VALUE", code=2,
    )  # fmt: skip
    assert_one_line_error(
        invoke("computer", "setup", "-n", "-L", "y", "-T", "local", "-S", "direct", "-w", "/x",
               "--mpirun-command", "mpirun 'unclosed", code=1),
        "--mpirun-command",
    )  # fmt: skip
    assert_one_line_error(
        invoke("computer", "setup", "-n", "-L", "y", "--max-queued-jobs", "0", code=None),
        "--max-queued-jobs",
        code=2,
    )
    assert [c.label for c in Computer.list()] == ["localhost", "cluster"]  # nothing half-made


# -- configure, list, show ----------------------------------------------------------------------------


def test_configure_merges_validates_and_shows(invoke, tmp_path):
    invoke(*SETUP_CLUSTER)
    key = tmp_path / "id_test"
    key.write_text("not really a key")
    out = invoke(
        "computer", "configure", "cluster", "--username", "ada", "--port", "2222",
        "--key-filename", str(key), "--proxy-jump", "ada@gate.example.org", "--no-use-agent",
        "--allow-unknown-host-key", "--known-hosts-file", str(tmp_path / "kh"),
        "--param", "connect_timeout=12.5",
    ).stdout  # fmt: skip
    assert "Configuration of 'cluster' for user@localhost (ssh transport)" in out
    assert "plait computer test cluster" in out
    config = Computer.get("cluster").get_config()
    assert config == {
        "username": "ada",
        "port": 2222,
        "key_filenames": [str(key)],
        "proxy_jump": "ada@gate.example.org",
        "use_agent": False,
        "allow_unknown_host_key": True,
        "known_hosts_file": str(tmp_path / "kh"),
        "connect_timeout": 12.5,
    }

    invoke(
        "computer",
        "configure",
        "cluster",
        "--port",
        "22",
        "--unset",
        "proxy_jump",
        "--refuse-unknown-host-key",
    )
    config = Computer.get("cluster").get_config()
    assert config["port"] == 22 and config["username"] == "ada"  # merged into what was there
    assert "proxy_jump" not in config and config["allow_unknown_host_key"] is False

    shown = invoke("computer", "configure", "cluster", "--show").stdout
    assert re.search(r"username\s+ada", shown) and re.search(r"port\s+22", shown)

    invoke("computer", "configure", "cluster", "--reset", "--username", "bob")
    assert Computer.get("cluster").get_config() == {"username": "bob"}


def test_configure_errors_are_one_line(invoke, tmp_path):
    invoke(*SETUP_CLUSTER)
    line = assert_one_line_error(
        invoke("computer", "configure", "cluster", "--param", "colour=blue", code=1),
        "the ssh transport of 'cluster' does not take colour",
    )
    assert "port" in line and "username" in line and "proxy_jump" in line
    assert_one_line_error(
        invoke("computer", "configure", "cluster", "--param", "port=0", code=1),
        "port must be between 1 and 65535",
    )
    assert_one_line_error(
        invoke("computer", "configure", "cluster", "--proxy-jump", "gate:notaport", code=1), "bad port"
    )
    assert_one_line_error(
        invoke("computer", "configure", "cluster", "--key-filename", str(tmp_path / "nope"), code=None),
        "--key-filename",
        code=2,
    )
    assert_one_line_error(
        invoke("computer", "configure", "cluster", "--show", "--port", "22", code=None),
        "--show cannot be",
        code=2,
    )
    assert_one_line_error(
        invoke("computer", "configure", "localhost", "--port", "22", code=1),
        "the local transport",
        "does not take port",
    )
    assert_one_line_error(
        invoke("computer", "configure", "nowhere", code=1), "no computer with label 'nowhere'"
    )
    assert Computer.get("cluster").get_config() == {}  # nothing stored by the failures


def test_configure_local_needs_nothing(invoke):
    out = invoke("computer", "configure", "localhost").stdout
    assert "nothing to configure" in out


def test_list_shows_who_is_configured(invoke):
    listing = invoke("computer", "list").stdout
    assert re.search(r"^1\s+localhost\s+localhost\s+local\s+direct\s+yes", listing, re.M)
    invoke(*SETUP_CLUSTER)
    listing = invoke("computer", "list").stdout
    assert re.search(r"^2\s+cluster\s+login\.example\.org\s+ssh\s+slurm\s+no", listing, re.M)
    assert "plait computer configure cluster" in listing

    invoke("computer", "configure", "cluster", "--param", "config_file=null")  # configured, even if minimal
    listing = invoke("computer", "list").stdout
    assert re.search(r"^2\s+cluster\s+.*\s+yes\s*$", listing, re.M)


def test_show_everything_with_passwords_masked(invoke):
    invoke(*SETUP_CLUSTER, "--max-queued-jobs", "7")
    out = invoke("computer", "show", "cluster").stdout
    assert re.search(r"hostname\s+login\.example\.org", out)
    assert re.search(r"work dir\s+/scratch/\{username\}/plait", out)
    assert re.search(r"max_queued_jobs\s+7\s*\n", out)
    assert re.search(r"retry_max_attempts\s+5\s+\(default\)", out)
    assert "is not configured for user@localhost yet" in out

    # a plugin may take a password: it is never printed
    found = Computer.get("cluster")
    plait.storage.get_backend().set_computer_config(
        found.pk, "user@localhost", {"username": "ada", "sudo_Password": "hunter2"}
    )
    for args in (("computer", "show", "cluster"), ("computer", "configure", "cluster", "--show")):
        out = invoke(*args).stdout
        assert "hunter2" not in out
        assert re.search(rf"sudo_Password\s+{re.escape(MASK)}", out)
        assert re.search(r"username\s+ada", out)
    assert mask_secrets({"password": "", "passwordless": "x"}) == {"password": "", "passwordless": MASK}

    assert_one_line_error(
        invoke("computer", "show", "nowhere", code=1), "no computer with label 'nowhere'", "known"
    )


# -- test ----------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("plait-test-*")) if folder.is_dir() else []


def test_test_localhost_passes_every_check(invoke):
    result = invoke("computer", "test", "localhost")
    marks = _marks(result.stdout)
    assert [title for _, title in marks] == [
        "open the connection",
        "log in (whoami)",
        "create the work and test folders",
        "upload a file and read it back",
        "run a command",
        "ask the scheduler",
        "remove the test folder",
        "close the connection",
    ]
    assert all(mark == "✓" for mark, _ in marks), result.stdout
    assert "All checks passed" in result.stdout
    scratch = Path(Computer.get("localhost").work_dir)
    assert scratch.is_dir() and _leftovers(scratch) == []


def test_test_a_work_dir_under_a_file_fails_cleanly(invoke, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    _local(invoke, "blocked", blocker / "work")
    result = invoke("computer", "test", "blocked", code=1)
    assert_one_line_error(
        result, "computer 'blocked' failed the check 'create the work and test folders'", "mkdir"
    )
    marks = dict((title, mark) for mark, title in _marks(result.stdout))
    assert marks["log in (whoami)"] == "✓"
    assert marks["create the work and test folders"] == "✗"
    assert marks["run a command"] == "-"
    assert marks["close the connection"] == "✓"  # still closed
    assert "hint: the work folder" in result.stdout


def test_test_an_unreachable_host_says_why(invoke, tmp_path):
    _ssh_to(invoke, "dead", tmp_path)
    port = free_port()  # nobody listens there
    invoke(
        "computer", "configure", "dead", "--port", str(port), "--param", "config_file=null", "--no-use-agent"
    )
    result = invoke("computer", "test", "dead", code=1)
    line = assert_one_line_error(
        result, "computer 'dead' failed the check 'open the connection'", "127.0.0.1"
    )
    assert "Traceback" not in result.output
    marks = _marks(result.stdout)
    assert marks[0] == ("✗", "open the connection")
    assert all(mark == "-" for mark, _ in marks[1:])
    assert (
        "reason: " in result.stdout and "hint: check the host name '127.0.0.1' and the port" in result.stdout
    )
    assert line.split(": ", 2)[-1] in result.stdout  # the same reason on stdout and stderr


def test_test_a_missing_scheduler_still_cleans_up(invoke, tmp_path):
    if shutil.which("qstat"):
        pytest.skip("qstat is installed here: PBS would answer")
    _local(invoke, "nopbs", tmp_path / "work", scheduler="pbs")
    result = invoke("computer", "test", "nopbs", code=1)
    assert_one_line_error(result, "failed the check 'ask the scheduler'", "qstat")
    marks = dict((title, mark) for mark, title in _marks(result.stdout))
    assert marks["run a command"] == "✓" and marks["ask the scheduler"] == "✗"
    assert marks["remove the test folder"] == "✓" and marks["close the connection"] == "✓"
    assert (tmp_path / "work").is_dir() and _leftovers(tmp_path / "work") == []


def _slurm_problem() -> str | None:
    if shutil.which("squeue") is None:
        return "squeue is not installed (run .ci/start-slurm.sh)"
    try:
        done = subprocess.run(["squeue", "--noheader"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "squeue did not answer within 20 s"
    return None if done.returncode == 0 else f"squeue failed: {done.stderr.strip()}"


@pytest.mark.slurm
def test_test_with_slurm_asks_squeue(invoke, tmp_path):
    problem = _slurm_problem()
    if problem is not None:
        if os.environ.get("PLAIT_CI"):
            pytest.fail(f"PLAIT_CI is set but SLURM is not usable: {problem}", pytrace=False)
        pytest.skip(problem)
    _local(invoke, "slurmy", tmp_path / "work", scheduler="slurm")
    result = invoke("computer", "test", "slurmy")
    assert "the slurm scheduler answered a status query" in result.stdout


# -- against a real sshd -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    require_sshd()
    server = LoopbackSshd(tmp_path_factory.mktemp("cli-sshd"))
    server.start()
    yield server
    server.stop()


@pytest.mark.sshd
@pytest.mark.parametrize("transport", ["ssh", "ssh-blocking"])
def test_test_over_real_ssh(invoke, sshd, tmp_path, transport):
    work = tmp_path / "remote-work"
    invoke(
        "computer", "setup", "-n", "-L", "loop", "-H", sshd.host, "-T", transport, "-S", "direct",
        "-w", f"{work}/{{username}}",
    )  # fmt: skip
    invoke(
        "computer", "configure", "loop", "--port", str(sshd.port), "--username", sshd.username,
        "--key-filename", str(sshd.client_key), "--known-hosts-file", str(sshd.known_hosts),
        "--param", "config_file=null", "--no-use-agent",
    )  # fmt: skip
    result = invoke("computer", "test", "loop")
    marks = _marks(result.stdout)
    assert len(marks) == 8 and all(mark == "✓" for mark, _ in marks), result.stdout
    assert f"user {sshd.username}" in result.stdout
    assert (work / sshd.username).is_dir() and _leftovers(work / sshd.username) == []


@pytest.mark.sshd
def test_test_an_unknown_host_key_points_to_the_option(invoke, sshd, tmp_path):
    _ssh_to(invoke, "strange", tmp_path / "work")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    invoke(
        "computer", "configure", "strange", "--port", str(sshd.port), "--username", sshd.username,
        "--key-filename", str(sshd.client_key), "--known-hosts-file", str(empty),
        "--param", "config_file=null", "--no-use-agent",
    )  # fmt: skip
    result = invoke("computer", "test", "strange", code=1)
    assert_one_line_error(result, "failed the check 'open the connection'", "host key")
    assert "plait computer configure strange --allow-unknown-host-key" in result.stdout

    invoke("computer", "configure", "strange", "--allow-unknown-host-key")  # the user decides to trust it
    invoke("computer", "test", "strange")
    assert empty.read_text() == ""  # accepted for this connection, never written to the user's file
