"""A real OpenSSH server on loopback, for tests and benchmarks.

:class:`LoopbackSshd` generates a host key and a user key with
``ssh-keygen`` into a folder of its own, writes an ``sshd_config`` that
listens on ``127.0.0.1`` only, starts ``/usr/sbin/sshd -D -e -f <config>``
and waits until the port answers with an SSH banner.  Nothing outside that
folder is touched except ``/run/sshd`` (OpenSSH's privilege-separation
folder, created when running as root).

It can also misbehave on purpose, to test what clients do when a server
goes away: :meth:`LoopbackSshd.kill` kills the listener *and* every session
process below it (``SIGKILL``, no goodbye), :meth:`LoopbackSshd.freeze`
stops them all (``SIGSTOP``: the server neither answers nor closes).
Processes are found through ``/proc``, so this needs Linux.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["SSHD_PATH", "LoopbackSshd", "free_port", "sshd_missing_reason"]

#: where Debian/Ubuntu/RHEL install the OpenSSH server.
SSHD_PATH = "/usr/sbin/sshd"


def sshd_missing_reason(sshd_path: str = SSHD_PATH) -> str | None:
    """Why a loopback sshd cannot run here, or None when it can."""
    if not os.path.isfile(sshd_path):
        return f"{sshd_path} is missing (install openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing (install openssh-client)"
    if not os.path.isdir("/proc"):
        return "no /proc: the loopback sshd helper needs Linux"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                text = stat_file.read().decode(errors="replace")
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after the last ')'.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents first."""
    children = _children_by_parent()
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(children.get(pid, []))
    return tree


def _command_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return None


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )


class LoopbackSshd:
    """An OpenSSH server on ``127.0.0.1:port`` that accepts one generated user key.

    Args:
        directory: where keys, configuration, logs and the pid file go (created).
        port: the port to listen on; a free one when None.  Stays the same
            across :meth:`stop`/:meth:`start`, so clients can reconnect.
        sshd_path: the ``sshd`` binary (OpenSSH wants an absolute path).

    Attributes:
        host, port, username: where and as whom to connect.
        client_key: the private key the server accepts.
        known_hosts: a known_hosts file with the server's key for ``[127.0.0.1]:port``.
        host_public_key: the server's public key line (``ssh-ed25519 AAAA...``).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, port: int | None = None, sshd_path: str = SSHD_PATH
    ):
        self.directory = Path(directory)
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.username = getpass.getuser()
        self.sshd_path = sshd_path
        self.host_key = self.directory / "ssh_host_ed25519_key"
        self.client_key = self.directory / "id_ed25519"
        self.known_hosts = self.directory / "known_hosts"
        self.config = self.directory / "sshd_config"
        self.log = self.directory / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LoopbackSshd({self.host}:{self.port}, {self.directory})"

    @property
    def host_public_key(self) -> str:
        text = (self.directory / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{text[0]} {text[1]}"

    def transport_options(self) -> dict[str, Any]:
        """Keyword arguments for the SSH plugins that reach this server and nothing else."""
        return {
            "port": self.port,
            "username": self.username,
            "key_filenames": [str(self.client_key)],
            "known_hosts_file": str(self.known_hosts),
            "config_file": None,
            "use_agent": False,
        }

    def write_known_hosts(self, path: str | os.PathLike[str], public_key: str | None = None) -> None:
        """Write a known_hosts file naming ``public_key`` (default: the real one) for this server."""
        key = public_key if public_key is not None else self.host_public_key
        Path(path).write_text(f"[{self.host}]:{self.port} {key}\n")

    def prepare(self) -> None:
        """Create keys and configuration (idempotent)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _keygen(self.host_key, "plait-test-host")
        _keygen(self.client_key, "plait-test-user")
        authorized = self.directory / "authorized_keys"
        authorized.write_text((self.directory / "id_ed25519.pub").read_text())
        self.write_known_hosts(self.known_hosts)
        self.config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.host}",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "AllowTcpForwarding yes",
                    "MaxStartups 100:30:200",
                    "PrintMotd no",
                    "LogLevel INFO",
                    "Subsystem sftp internal-sftp",
                    # bash reads ~/.bashrc for commands sent over SSH when SHLVL < 2; a heavy
                    # one (pyenv init) would then cost every command a tenth of a second.
                    "SetEnv SHLVL=1",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and return once it answers on its port.

        Raises:
            RuntimeError: sshd exited or did not answer in time (its log is in the message).
        """
        if self.running:
            return
        self.prepare()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.sshd_path, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                self._wait_for_no_sessions(deadline)  # the probe's pre-auth child exits on its own
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"sshd on port {self.port} did not start; its log:\n{self.log.read_text()[-3000:]}"
        )

    def _wait_for_no_sessions(self, deadline: float) -> None:
        while self.session_pids() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                return sock.recv(8).startswith(b"SSH-")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def session_pids(self) -> list[int]:
        """The pids of the listener's descendants (one or two per client connection)."""
        if not self.running:
            return []
        assert self.process is not None
        return _process_tree(self.process.pid)[1:]

    def kill(self) -> None:
        """Kill the listener and every session process at once (``SIGKILL``)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGSTOP)  # no new sessions while we look
        _signal_all(_process_tree(self.process.pid), signal.SIGKILL)
        self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """Stop the listener and its sessions (``SIGSTOP``): connections stay up but nothing answers."""
        if self.process is not None:
            _signal_all(_process_tree(self.process.pid), signal.SIGSTOP)

    def thaw(self) -> None:
        """Undo :meth:`freeze`."""
        if self.process is not None:
            _signal_all(_process_tree(self.process.pid), signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server and its sessions; a no-op when not running."""
        if self.process is None:
            return
        pids = _process_tree(self.process.pid)
        _signal_all(pids, signal.SIGCONT)
        _signal_all(pids, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _signal_all(_process_tree(self.process.pid), signal.SIGKILL)
            self.process.wait()
        survivors = [pid for pid in pids[1:] if _command_name(pid) == "sshd"]
        _signal_all(survivors, signal.SIGKILL)  # sessions that outlived their listener
        self.process = None

    def __enter__(self) -> LoopbackSshd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
