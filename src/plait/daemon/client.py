"""Starting, stopping and asking the daemon of a profile (what ``plait daemon ...`` calls).

All functions are blocking and talk to the supervisor through its UNIX
socket; none needs an event loop.  They raise :class:`DaemonError` with a
one-line message when something is wrong (not running, already running,
no answer).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from plait.daemon.supervisor import DaemonSocketError, check_peer, daemon_paths, peer_uid

__all__ = [
    "DaemonError",
    "DaemonNotRunning",
    "decr",
    "follow_logs",
    "incr",
    "is_running",
    "start",
    "status",
    "stop",
    "wait_until_stopped",
]


class DaemonError(RuntimeError):
    """The daemon cannot do what was asked (the message says why)."""


class DaemonNotRunning(DaemonError):
    """The daemon of the profile is not running."""


def _profile(profile: Any | None) -> Any:
    if profile is not None:
        return profile
    from plait.storage import get_profile

    return get_profile()


def _ask(profile: Any, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one command to the supervisor and return its reply.

    The socket's folder is checked first (this user's, mode 700) and the process that answers
    must run as this user (``SO_PEERCRED``): a reply names a pid that ``stop`` may kill.

    Raises:
        DaemonNotRunning: nothing listens on the socket.
        DaemonError: no answer in time, an unsafe socket folder, a supervisor of another user, or
            the supervisor refused.
    """
    try:
        path = str(daemon_paths(profile).socket)
    except DaemonSocketError as exc:
        raise DaemonError(str(exc)) from None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            try:
                check_peer(peer_uid(sock), "supervisor")
            except DaemonSocketError as exc:
                raise DaemonError(f"{path}: {exc}") from None
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonNotRunning(f"the daemon of profile '{profile.name}' is not running") from None
    except TimeoutError:
        raise DaemonError(
            f"the daemon of profile '{profile.name}' did not answer within {timeout:g} s"
        ) from None
    reply = json.loads(data or b"{}")
    if not reply.get("ok", False):
        raise DaemonError(reply.get("error", "the daemon refused the request"))
    return reply


def is_running(profile: Any | None = None) -> bool:
    try:
        _ask(_profile(profile), {"command": "status"}, timeout=3.0)
    except DaemonError:
        return False
    return True


def start(
    profile: Any | None = None, workers: int = 1, *, wait: float = 30.0, worker_slots: int = 200
) -> dict[str, Any]:
    """Start the supervisor in the background with ``workers`` workers; return its status.

    Raises:
        DaemonError: it is already running, or did not come up within ``wait`` seconds.
    """
    profile = _profile(profile)
    try:
        daemon_paths(profile).socket  # noqa: B018 (an unsafe socket folder is refused before anything starts)
    except DaemonSocketError as exc:
        raise DaemonError(str(exc)) from None
    if is_running(profile):
        pid = status(profile)["pid"]
        raise DaemonError(f"the daemon of profile '{profile.name}' is already running (pid {pid})")
    paths = daemon_paths(profile)
    paths.logs.mkdir(parents=True, exist_ok=True)
    with open(paths.logs / "supervisor.out", "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plait.daemon.supervisor",
                "--profile",
                profile.name,
                "--workers",
                str(workers),
                "--worker-slots",
                str(worker_slots),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ),
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (paths.logs / "supervisor.out").read_text(errors="replace").strip().splitlines()[-3:]
            raise DaemonError(
                f"the daemon did not start: {' / '.join(tail) or 'exit code ' + str(process.returncode)}"
            )
        try:
            reply = _ask(profile, {"command": "status"}, timeout=2.0)
        except DaemonError:
            time.sleep(0.05)
            continue
        if _workers_registered(reply):
            return reply
        time.sleep(0.05)
    raise DaemonError(f"the daemon did not answer within {wait:g} s (see {paths.logs})")


def _workers_registered(reply: dict[str, Any]) -> bool:
    """True once every worker the supervisor started has announced itself in the database."""
    pids = {w["pid"] for w in reply.get("workers", []) if w.get("pid")}
    if len(pids) < len(reply.get("workers", [])):
        return False
    try:
        from plait.storage import get_backend

        registered = {row["pid"] for row in get_backend().list_workers()}
    except Exception:  # the database is not reachable from here: do not wait for it
        return True
    return pids <= registered


def status(profile: Any | None = None, *, timeout: float = 10.0) -> dict[str, Any]:
    """The supervisor's status with, per worker, its memory and the processes it holds.

    Raises:
        DaemonNotRunning: no supervisor answers on the profile's socket.
        DaemonError: it did not answer within ``timeout`` seconds.
    """
    profile = _profile(profile)
    reply = _ask(profile, {"command": "status"}, timeout=timeout)
    try:
        from plait.storage import get_backend

        rows = {row["pid"]: row for row in get_backend().list_workers()}
    except Exception:  # the database may be unreachable: show what the supervisor knows
        rows = {}
    for worker in reply.get("workers", []):
        pid = worker.get("pid")
        worker["rss_kib"] = _rss_kib(pid)
        row = rows.get(pid)
        worker["worker_id"] = row["id"] if row else None
        worker["held"] = (row["info"] or {}).get("held") if row else None
        worker["heartbeat"] = row["heartbeat"] if row else None
    return reply


def _rss_kib(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def stop(profile: Any | None = None, *, wait: bool = True, timeout: float = 120.0) -> None:
    """Ask the supervisor to stop its workers (gracefully) and itself."""
    profile = _profile(profile)
    pid = status(profile)["pid"]
    _ask(profile, {"command": "stop"})
    if wait:
        wait_until_stopped(profile, pid, timeout)


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our own child, e.g. started by :func:`start`)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def wait_until_stopped(profile: Any, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise DaemonError(f"the daemon (pid {pid}) did not stop within {timeout:g} s and was killed")


def incr(profile: Any | None = None, n: int = 1) -> dict[str, Any]:
    return _ask(_profile(profile), {"command": "incr", "n": n})


def decr(profile: Any | None = None, n: int = 1) -> dict[str, Any]:
    return _ask(_profile(profile), {"command": "decr", "n": n}, timeout=120.0)


def follow_logs(profile: Any | None = None, *, follow: bool = False, lines: int = 50) -> Iterator[str]:
    """The last ``lines`` lines of every daemon log, then (with ``follow``) new lines as they come."""
    profile = _profile(profile)
    folder = daemon_paths(profile).logs
    if not folder.is_dir():
        raise DaemonError(f"no daemon logs for profile '{profile.name}' yet ({folder})")
    files = sorted(p for p in folder.glob("*.log"))
    positions: dict[str, int] = {}
    for path in files:
        text = path.read_text(errors="replace").splitlines()
        for line in text[-lines:]:
            yield f"{path.stem}: {line}"
        positions[str(path)] = path.stat().st_size
    while follow:
        time.sleep(0.5)
        for path in sorted(folder.glob("*.log")):
            start = positions.get(str(path), 0)
            size = path.stat().st_size
            if size > start:
                with path.open(errors="replace") as handle:
                    handle.seek(start)
                    for line in handle.read().splitlines():
                        yield f"{path.stem}: {line}"
                positions[str(path)] = size
