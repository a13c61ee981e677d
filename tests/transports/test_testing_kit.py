"""The test kit itself: CI never skips the SSH tests silently; the fault helpers really kill."""

from __future__ import annotations

import time

import paramiko
import pytest

import plait.transports.testing as kit
from plait.transports.testing import LoopbackSshd, require_sshd, sshd_missing_reason


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by its new parent) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_a_missing_sshd_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        kit, "sshd_missing_reason", lambda: "/usr/sbin/sshd is missing (install openssh-server)"
    )
    monkeypatch.setenv("PLAIT_CI", "1")
    with pytest.raises(pytest.fail.Exception, match=r"PLAIT_CI is set.*openssh-server"):
        require_sshd()
    monkeypatch.delenv("PLAIT_CI")
    with pytest.raises(pytest.skip.Exception, match="openssh-server"):
        require_sshd()


def test_the_missing_binary_is_named() -> None:
    assert "/nonexistent/sshd is missing" in (sshd_missing_reason("/nonexistent/sshd") or "")


@pytest.mark.sshd
def test_kill_takes_the_session_processes_down_too(fault_sshd: LoopbackSshd) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(str(fault_sshd.known_hosts))
    client.connect(
        fault_sshd.host,
        fault_sshd.port,
        username=fault_sshd.username,
        key_filename=str(fault_sshd.client_key),
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        sessions = fault_sshd.session_pids()
        assert sessions, "a connected client has a session process"
        fault_sshd.kill()
        assert not fault_sshd.running
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in sessions) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(alive(pid) for pid in sessions)
    finally:
        client.close()
    fault_sshd.start()  # the same port again
    assert fault_sshd.running
