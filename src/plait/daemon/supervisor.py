"""The daemon's supervisor: starts the workers, restarts one that dies, stops them all gracefully.

plait's own small supervisor, on asyncio subprocesses (no circus).  One per
profile: it holds an exclusive lock on ``<profile>/daemon/supervisor.lock``
for its whole life, so a second ``plait daemon start`` on the same profile
is refused.  It writes its pid file and answers commands on the UNIX socket
``<profile>/daemon/supervisor.sock`` (one JSON object per line):
``status``, ``incr``, ``decr``, ``stop``.

Nobody else gets in (docs/security.md): the socket's folder is checked to be
this user's and mode 700 before the socket is made or connected to (see
:attr:`DaemonPaths.socket`), and the supervisor asks the kernel who is on the
other end of every connection (``SO_PEERCRED``) and answers only its own
user; the client checks the same of the supervisor before it believes a
reply (``plait daemon stop`` kills the pid the reply names).

Workers log to ``<profile>/daemon/log/worker-<n>.log``; the supervisor to
``supervisor.log``.  A worker that exits without being asked to is
restarted, after a pause that grows if it keeps dying (so a broken set-up
does not spin).

A worker that dies (SIGKILL, out of memory, a crash) cannot release its
leases.  The supervisor knows the moment it reaps it, and knows its pid:
it frees at once every lease whose owner id is ``<host>:<pid>:...``
(:meth:`~plait.storage.backend.StorageBackend.release_leases_of_dead_worker`,
in a thread, off the supervisor's loop) and rings the work bell, so the
other workers continue those processes from their checkpoints now rather
than when the leases would have expired.  Leases of a worker on another
machine, or of a supervisor that died with its workers, still expire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DaemonSocketError",
    "Supervisor",
    "check_peer",
    "daemon_paths",
    "main",
    "peer_uid",
    "release_dead_worker",
]

LOGGER = logging.getLogger("plait.supervisor")


@dataclass
class DaemonPaths:
    folder: Path

    @property
    def lock(self) -> Path:
        return self.folder / "supervisor.lock"

    @property
    def pid(self) -> Path:
        return self.folder / "supervisor.pid"

    @property
    def socket(self) -> Path:
        """The supervisor's UNIX socket, in a folder checked to be this user's alone.

        It is ``<profile>/daemon/supervisor.sock`` when that path fits in a
        socket address (about 100 bytes); the daemon folder is then made (or
        tightened to) mode 700.  A deeper profile folder gets
        ``<runtime>/plait-<uid>/<hash of the profile folder>.sock``, where
        ``<runtime>`` is ``$XDG_RUNTIME_DIR`` when that is this user's and
        mode 700, else the temporary folder; ``plait-<uid>`` is made mode 700,
        and an existing one that another user owns or that group/others can
        enter is refused (whoever made it could have swapped the socket).

        Raises:
            DaemonSocketError: the socket's folder is not this user's alone.
        """
        from plait.storage.permissions import InsecurePathError, private_folder

        beside = self.folder / "supervisor.sock"
        try:
            if len(os.fsencode(beside.absolute())) <= _SOCKET_PATH_MAX:
                private_folder(self.folder, tighten=True)  # inside the profile folder (mode 700)
                return beside
            digest = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:20]
            base = _runtime_folder() / f"plait-{os.getuid()}"
            private_folder(base, tighten=False)
        except (InsecurePathError, NotADirectoryError) as exc:
            raise DaemonSocketError(f"the daemon's socket folder is unsafe: {exc}") from None
        return base / f"{digest}.sock"

    @property
    def logs(self) -> Path:
        return self.folder / "log"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"


def daemon_paths(profile: Any) -> DaemonPaths:
    return DaemonPaths(Path(profile.daemon_path))


#: the longest socket path used (Linux allows 107 bytes, macOS 103)
_SOCKET_PATH_MAX = 100


class DaemonSocketError(RuntimeError):
    """The daemon's control socket, its folder or the process on its other end is not this user's."""


def _runtime_folder() -> Path:
    """``$XDG_RUNTIME_DIR`` if it is this user's and mode 700, else the temporary folder.

    The temporary folder must be this user's, or not writable by others, or sticky (``/tmp``):
    otherwise another user could rename ``plait-<uid>`` away and put their own in its place.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        try:
            info = os.lstat(runtime)
        except OSError:
            info = None
        if (
            info is not None
            and stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and info.st_mode & 0o077 == 0
        ):
            return Path(runtime)
    temp = Path(tempfile.gettempdir())
    info = os.stat(temp)
    shared = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
    if shared and info.st_uid not in (0, os.getuid()):
        raise DaemonSocketError(
            f"the temporary folder {temp} is writable by others and not sticky: "
            "set XDG_RUNTIME_DIR or TMPDIR to a folder of your own"
        )
    return temp


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process on the other end of a UNIX socket (``SO_PEERCRED``), or None where the
    platform cannot tell (then only the socket folder's mode keeps others out)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def check_peer(uid: int | None, what: str) -> None:
    """Refuse a peer whose ``uid`` is not this process's (None: the platform cannot tell; accepted).

    Raises:
        DaemonSocketError: naming ``what`` the peer is (``"client"``, ``"supervisor"``) and its uid.
    """
    if uid is not None and uid != os.getuid():
        raise DaemonSocketError(
            f"the daemon's {what} runs as uid {uid}, not as you (uid {os.getuid()}): refused"
        )


@dataclass
class _WorkerSlot:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    stopping: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


def restart_pause(lived: float, delay: float) -> float:
    """Seconds to wait before restarting a worker that died after ``lived`` seconds.

    A worker that died within 5 s of its start waits ``delay``, which doubles
    (up to 60 s) with each quick death, so a broken set-up does not spin; one
    that ran longer is restarted after 0.2 s.  The log says this pause, the
    one really waited.
    """
    return delay if lived < 5 else 0.2


class Supervisor:
    """Keeps ``workers`` worker processes running for one profile."""

    def __init__(self, profile: Any, workers: int = 1, *, worker_slots: int = 200) -> None:
        self.profile = profile
        self.paths = daemon_paths(profile)
        self.target = max(0, workers)
        self.worker_slots = worker_slots
        self.slots: list[_WorkerSlot] = []
        self._stopping = asyncio.Event()
        self._lock_fd: int | None = None
        self._next_index = 0
        self.started = time.time()

    # -- lifecycle -----------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Take the profile's daemon lock.  Raises RuntimeError if another supervisor holds it."""
        from plait.storage.permissions import InsecurePathError, private_folder

        try:
            private_folder(self.paths.folder, tighten=True)
        except (InsecurePathError, NotADirectoryError) as exc:
            raise DaemonSocketError(str(exc)) from None
        fd = os.open(self.paths.lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"the daemon of profile '{self.profile.name}' is already running") from None
        self._lock_fd = fd

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        socket_path = self.paths.socket  # its folder checked: this user's, mode 700
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        server = await asyncio.start_unix_server(self._serve, path=str(socket_path))
        os.chmod(socket_path, 0o600)
        self.paths.pid.write_text(
            json.dumps({"pid": os.getpid(), "started": self.started, "socket": str(socket_path)})
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        LOGGER.info(
            "supervisor %d started for profile %s with %d worker(s)",
            os.getpid(),
            self.profile.name,
            self.target,
        )
        for _ in range(self.target):
            self._add_worker()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await self._stop_all()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                self.paths.pid.unlink()
            LOGGER.info("supervisor %d stopped", os.getpid())

    # -- workers ---------------------------------------------------------------------------------
    def _add_worker(self) -> _WorkerSlot:
        slot = _WorkerSlot(index=self._next_index)
        self._next_index += 1
        self.slots.append(slot)
        slot.watcher = asyncio.get_running_loop().create_task(self._keep_alive(slot))
        return slot

    async def _spawn(self, slot: _WorkerSlot) -> None:
        log = open(self.paths.logs / f"worker-{slot.index}.log", "ab")  # noqa: ASYNC230 - opening a log is instant
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "plait.daemon.worker",
                "--profile",
                self.profile.name,
                "--slots",
                str(self.worker_slots),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PLAIT_SUPERVISOR_PID": str(os.getpid())},
            )
        finally:
            log.close()
        slot.started = time.time()
        LOGGER.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    async def _keep_alive(self, slot: _WorkerSlot) -> None:
        delay = 1.0
        while not slot.stopping:
            await self._spawn(slot)
            assert slot.process is not None
            code = await slot.process.wait()
            if slot.stopping or self._stopping.is_set():
                return  # _stop_worker releases what it left
            await self._release_leases(slot.process.pid)
            lived = time.time() - slot.started
            delay = 1.0 if lived > 60 else min(delay * 2, 60.0)
            pause = restart_pause(lived, delay)
            slot.restarts += 1
            LOGGER.warning(
                "worker %d (pid %d) died with exit code %s after %.0f s; restarting in %.1f s",
                slot.index,
                slot.process.pid,
                code,
                lived,
                pause,
            )
            await asyncio.sleep(pause)

    async def _release_leases(self, pid: int) -> None:
        """Free the leases of the reaped worker ``pid`` and ring the work bell; logs, never raises."""
        try:
            freed = await asyncio.to_thread(release_dead_worker, pid)
        except Exception as exc:  # the database may be down: the leases then expire by themselves
            LOGGER.warning("could not release the leases of worker pid %d (%s); they will expire", pid, exc)
            return
        if freed:
            LOGGER.info(
                "released the lease(s) of %d process(es) held by worker pid %d: %s",
                len(freed),
                pid,
                " ".join(map(str, freed)),
            )

    async def _stop_worker(self, slot: _WorkerSlot, timeout: float = 90.0) -> None:
        slot.stopping = True
        process = slot.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                LOGGER.warning("worker %d did not stop within %.0f s; killing it", slot.index, timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process is not None and process.returncode != 0:  # killed, or died: it released nothing
            await self._release_leases(process.pid)
        if slot.watcher is not None:
            slot.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.watcher

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop_worker(slot) for slot in self.slots))
        self.slots.clear()

    # -- commands ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "profile": self.profile.name,
            "started": self.started,
            "workers": [
                {
                    "index": slot.index,
                    "pid": slot.process.pid if slot.process else None,
                    "started": slot.started,
                    "restarts": slot.restarts,
                    "alive": slot.process is not None and slot.process.returncode is None,
                }
                for slot in self.slots
            ],
        }

    async def _command(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "status":
            return {"ok": True, **self.status()}
        if command == "incr":
            for _ in range(max(1, int(request.get("n", 1)))):
                self._add_worker()
            await asyncio.sleep(0)
            return {"ok": True, **self.status()}
        if command == "decr":
            n = max(1, int(request.get("n", 1)))
            victims = self.slots[-n:] if n <= len(self.slots) else list(self.slots)
            for slot in victims:
                self.slots.remove(slot)
            await asyncio.gather(*(self._stop_worker(slot) for slot in victims))
            return {"ok": True, **self.status()}
        if command == "stop":
            self._stopping.set()
            return {"ok": True, "stopping": True}
        return {"ok": False, "error": f"unknown command {command!r}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                check_peer(peer_uid(writer.get_extra_info("socket")), "client")
            except DaemonSocketError as exc:
                LOGGER.warning("refused a command: %s", exc)
                writer.write(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
                await writer.drain()
                return
            line = await reader.readline()
            try:
                request = json.loads(line or b"{}")
                reply = await self._command(request)
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


def release_dead_worker(pid: int) -> list[int]:
    """Free every lease of the dead worker ``pid`` of this host; ring the work bell if any was freed.

    Blocking (database and broker): the supervisor runs it in a thread.
    """
    from plait.engine import lifecycle

    # the bell never raises; a lost one costs the other workers one poll interval
    return lifecycle.release_dead_interpreter(socket.gethostname(), pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plait.daemon.supervisor")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker-slots", type=int, default=200)
    args = parser.parse_args(argv)
    from plait.storage import load_profile

    profile = load_profile(args.profile)
    from plait.daemon.options import DaemonOptionsError, daemon_options_of

    try:
        daemon_options_of(profile)  # a bad [options.daemon] stops here, before the lock and any worker
    except DaemonOptionsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    paths = daemon_paths(profile)
    paths.logs.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s supervisor [%(process)d]: %(message)s",
        handlers=[logging.FileHandler(paths.supervisor_log), logging.StreamHandler(sys.stderr)],
    )
    supervisor = Supervisor(profile, args.workers, worker_slots=args.worker_slots)
    try:
        supervisor.acquire_lock()
        supervisor.paths.socket  # noqa: B018 (checks the socket's folder before anything starts)
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 3
    asyncio.run(supervisor.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
