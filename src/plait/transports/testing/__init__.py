"""A test kit for transport plugins: the conformance suite and a loopback OpenSSH server.

* :class:`TransportConformance` — inherit it in a test class and provide a
  ``transport`` fixture; see :mod:`plait.transports.testing.conformance`.
* :class:`EngineConfiguration` and :func:`build_transport` — a plugin built
  the way the engine builds it (``cls(hostname=..., **options)``, wrapped
  with ``as_async`` when blocking); the suite's constructor test uses them.
* ``pytest --plait-transport=NAME`` — the suite on an installed
  ``plait.transports`` entry point, with no test code at all (the pytest
  plugin :mod:`plait.transports.testing.pytest_plugin`).
* :class:`LoopbackSshd` — a real ``sshd`` on 127.0.0.1 with generated keys,
  for testing SSH-based plugins (and for benchmarks).
* :func:`require_sshd` — skip a test when ``sshd`` is missing, except in CI
  (``PLAIT_CI`` set), where a missing server is a failure, never a silent skip.

This module imports pytest; it is meant for test code.
"""

from __future__ import annotations

import os

import pytest

from .conformance import AWKWARD_NAMES, EngineConfiguration, TransportConformance, build_transport
from .sshd import SSHD_PATH, LoopbackSshd, free_port, sshd_missing_reason

__all__ = [
    "AWKWARD_NAMES",
    "SSHD_PATH",
    "EngineConfiguration",
    "LoopbackSshd",
    "TransportConformance",
    "build_transport",
    "free_port",
    "require_sshd",
    "sshd_missing_reason",
]


def require_sshd() -> None:
    """Fail (in CI) or skip (elsewhere) the calling test when a loopback sshd cannot run.

    CI is recognised by the ``PLAIT_CI`` environment variable.
    """
    reason = sshd_missing_reason()
    if reason is None:
        return
    if os.environ.get("PLAIT_CI"):
        pytest.fail(f"PLAIT_CI is set but the SSH tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"SSH tests need a local OpenSSH server: {reason}")
