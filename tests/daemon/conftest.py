"""A real daemon (supervisor and worker subprocesses) on the test's own profile."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


class DaemonHandle:
    def __init__(self, workers: int) -> None:
        from plait.daemon import client

        self.client = client
        self.status = client.start(workers=workers)
        self.pid = self.status["pid"]

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.client.status()["workers"] if w["alive"]]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop(timeout=60)
        for pid in [self.pid, *_children_of(self.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DaemonHandle]]:
    """Start the daemon with ``daemon(workers=1, lease=30)``; always stopped (and killed) afterwards."""
    started: list[DaemonHandle] = []
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))

    def start(workers: int = 1, lease: float | None = None) -> DaemonHandle:
        if lease is not None:
            monkeypatch.setenv("PLAIT_LEASE_SECONDS", str(lease))
        handle = DaemonHandle(workers)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
