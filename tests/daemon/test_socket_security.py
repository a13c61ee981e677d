"""Attack tests: another local user cannot talk to, or pose as, the daemon (issue 11: nobody else gets in).

The attack of the issue: a user who can write in the socket's folder swaps the socket for their
own; ``plait daemon stop`` then asks *their* server for the daemon's pid and kills whatever pid
it names.  So the socket's folder must be this user's and mode 700 (checked before every use),
the supervisor answers only its own user, and the client believes only a supervisor of its own
user.

The tests that need a second user run only as root: a child process switches to uid 65534
(``subprocess``'s ``user=``, no account needed); the kernel's peer credentials are real.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import plait.storage
from plait.daemon import client
from plait.daemon.supervisor import DaemonSocketError, Supervisor, check_peer, daemon_paths, peer_uid
from plait.storage import get_profile

OTHER_UID = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="acting as a second user needs root")


@pytest.fixture
def deep_profile(tmp_path, monkeypatch):
    """A profile whose folder is too deep for a socket path, and a temporary folder of the test's own.

    The socket then goes to ``<tmp>/plait-<uid>/``: the shared place another user could reach.
    """
    home = tmp_path / ("d" * 60) / ("e" * 60) / "plait-home"
    monkeypatch.setenv("PLAIT_HOME", str(home))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("TMPDIR", str(shared))
    plait.storage.reset()
    plait.storage.create_profile("deep")
    monkeypatch.setenv("PLAIT_PROFILE", "deep")
    plait.storage.reset()
    yield shared / f"plait-{os.getuid()}"
    plait.storage.reset()


def test_the_socket_folder_is_made_700(deep_profile):
    socket_path = daemon_paths(get_profile()).socket
    assert socket_path.parent == deep_profile
    assert stat.S_IMODE(deep_profile.stat().st_mode) == 0o700


def test_a_world_writable_socket_folder_is_refused(deep_profile):
    """Another user made ``plait-<uid>`` first, mode 777 (or it was loosened): never used."""
    deep_profile.mkdir()
    os.chmod(deep_profile, 0o777)
    with pytest.raises(DaemonSocketError, match=rf"mode 777.*chmod 700 {deep_profile}"):
        daemon_paths(get_profile()).socket  # noqa: B018 (the property checks the folder)
    with pytest.raises(client.DaemonError, match="socket folder is unsafe"):
        client.status()
    with pytest.raises(client.DaemonError, match="socket folder is unsafe"):
        client.start(wait=5)
    assert not (get_profile().daemon_path / "supervisor.pid").exists()  # no supervisor was started
    assert stat.S_IMODE(deep_profile.stat().st_mode) == 0o777  # refused, not "fixed" behind the user's back


def test_the_cli_says_so_in_one_line(deep_profile):
    from click.testing import CliRunner

    from plait.cli.main import cli

    deep_profile.mkdir()
    os.chmod(deep_profile, 0o757)
    result = CliRunner().invoke(cli, ["daemon", "start"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(deep_profile) in lines[0] and "chmod 700" in lines[0]


@as_root
def test_a_socket_folder_of_another_user_is_refused(deep_profile):
    deep_profile.mkdir(mode=0o700)
    os.chown(deep_profile, OTHER_UID, OTHER_UID)
    with pytest.raises(DaemonSocketError, match=f"belongs to uid {OTHER_UID}"):
        daemon_paths(get_profile()).socket  # noqa: B018 (the property checks the folder)


def test_a_symlinked_socket_folder_is_refused(deep_profile, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    deep_profile.symlink_to(elsewhere)
    with pytest.raises(DaemonSocketError, match="symbolic link"):
        daemon_paths(get_profile()).socket  # noqa: B018 (the property checks the folder)


def test_the_daemon_folder_inside_the_profile_is_tightened(monkeypatch):
    """A short profile path keeps the socket in ``<profile>/daemon``: plait's own folder, closed to 700."""
    import shutil

    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="ph-"))
    monkeypatch.setenv("PLAIT_HOME", str(home))
    plait.storage.reset()
    try:
        folder = get_profile().daemon_path
        folder.mkdir()
        os.chmod(folder, 0o755)  # as an older plait made it
        assert daemon_paths(get_profile()).socket == folder / "supervisor.sock"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        plait.storage.reset()
        shutil.rmtree(home, ignore_errors=True)


def test_check_peer_refuses_another_uid():
    check_peer(os.getuid(), "client")
    check_peer(None, "client")  # a platform without SO_PEERCRED: the folder check stands alone
    with pytest.raises(DaemonSocketError, match=f"uid {os.getuid() + 1}"):
        check_peer(os.getuid() + 1, "client")


def test_peer_uid_is_the_kernels_answer():
    import socket

    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_uid(left) == os.getuid()


def _python_for_another_user() -> str:
    """An interpreter uid 65534 can run (this one may live in root's home); skip if there is none."""
    import shutil

    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if not candidate:
            continue
        path = Path(candidate).resolve()
        reachable = all(os.stat(parent).st_mode & 0o001 for parent in path.parents)
        if reachable and os.stat(path).st_mode & 0o001:
            return str(path)
    pytest.skip("no Python interpreter that another user may run")


def _world_reachable_folder() -> Path:
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="plait-peer-"))
    os.chmod(folder, 0o755)
    return folder


_ASK = """
import json, socket, sys
with socket.socket(socket.AF_UNIX) as sock:
    sock.settimeout(10)
    sock.connect(sys.argv[1])
    try:
        sock.sendall(json.dumps({"command": sys.argv[2]}).encode() + b"\\n")
    except BrokenPipeError:  # refused before the request was read: the answer is waiting
        pass
    data = b""
    while not data.endswith(b"\\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
print(data.decode().strip())
"""


@as_root
def test_the_supervisor_answers_no_other_user(plait_home):
    """Even reachable (a socket open to everyone), ``stop`` from uid 65534 is refused and logged."""
    import shutil

    python = _python_for_another_user()
    supervisor = Supervisor(get_profile(), workers=0)
    folder = _world_reachable_folder()
    path = folder / "s.sock"

    async def scenario() -> tuple[str, str]:
        server = await asyncio.start_unix_server(supervisor._serve, path=str(path))
        os.chmod(path, 0o777)
        try:
            other = await asyncio.create_subprocess_exec(
                python,
                "-c",
                _ASK,
                str(path),
                "stop",
                user=OTHER_UID,
                cwd="/",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            other_out, other_err = await other.communicate()
            assert other.returncode == 0, other_err.decode()
            own = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _ASK, str(path), "status", stdout=subprocess.PIPE
            )
            own_out, _ = await own.communicate()
        finally:
            server.close()
        return other_out.decode(), own_out.decode()

    try:
        other_reply, own_reply = asyncio.run(scenario())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    refused = json.loads(other_reply)
    assert refused["ok"] is False and f"uid {OTHER_UID}" in refused["error"]
    assert not supervisor._stopping.is_set()  # the stop was not obeyed
    assert json.loads(own_reply)["ok"] is True


_FAKE_SUPERVISOR = """
import json, socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(5)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.recv(65536)
    conn.sendall(json.dumps({"ok": True, "pid": int(sys.argv[2]), "workers": []}).encode() + b"\\n")
    conn.close()
"""


@as_root
def test_the_client_believes_no_supervisor_of_another_user(plait_home):
    """A socket served by uid 65534 at the daemon's path: ``stop`` must not kill the pid it names."""
    import shutil

    python = _python_for_another_user()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    folder = _world_reachable_folder()
    os.chown(folder, OTHER_UID, OTHER_UID)  # the other user's own folder, where they make their socket
    fake = subprocess.Popen(
        [python, "-c", _FAKE_SUPERVISOR, str(folder / "s.sock"), str(victim.pid)],
        user=OTHER_UID,
        cwd="/",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        target = daemon_paths(get_profile()).socket
        os.rename(folder / "s.sock", target)  # only root can plant it in a 700 folder: the last defence
        with pytest.raises(client.DaemonError, match=f"uid {OTHER_UID}"):
            client.stop(timeout=5)
        time.sleep(0.1)
        assert victim.poll() is None  # still alive
    finally:
        for process in (fake, victim):
            process.send_signal(signal.SIGKILL)
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
