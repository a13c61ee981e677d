"""Fixtures for the transport tests: real OpenSSH servers on loopback.

``sshd`` is one server for the whole session (conformance and option tests);
``fault_sshd`` is a fresh server per test, for tests that kill or freeze it.
Without ``/usr/sbin/sshd`` the SSH tests skip, except in CI (``PLAIT_CI``
set), where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.transports.testing import LoopbackSshd, require_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    require_sshd()
    server = LoopbackSshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    require_sshd()
    server = LoopbackSshd(tmp_path / "fault-sshd")
    server.start()
    yield server
    server.thaw()
    server.stop()
