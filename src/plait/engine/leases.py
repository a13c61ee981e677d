"""Who holds a process: lease-owner ids, and whether the interpreter behind one still lives.

A lease owner id is ``host:pid:kind:random``: readable in ``plait process
list``, unique per runner, and enough for a process on the same host to
tell that the holder died (its pid is gone or a zombie) without waiting for
the lease to expire.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

__all__ = ["live_holder", "new_owner_id", "owner_is_dead", "owner_pid"]


def new_owner_id(kind: str = "run") -> str:
    """``host:pid:kind:random`` — who holds a lease, readable in ``plait process list``."""
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True if ``owner`` was an interpreter on this host that no longer exists."""
    if not owner:
        return True
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def owner_pid(owner: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a lease owner id, or None if it is not one."""
    parts = owner.split(":")
    try:
        return parts[0], int(parts[1])
    except (IndexError, ValueError):
        return None


def live_holder(owner: str | None, expires: float | None) -> str | None:
    """``owner`` if it holds a lease that has not expired and its interpreter lives, else None."""
    if not owner or (expires is not None and expires < time.time()):
        return None
    return None if owner_is_dead(owner) else owner
