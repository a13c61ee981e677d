"""A kit for testing scheduler plugins: the conformance mixin and the transports it talks to.

* :class:`SchedulerConformance`: subclass it in a ``Test...`` class, fill in
  the plugin class and what its tools print, and pytest runs the checks the
  engine relies on (see :mod:`plait.schedulers.testing.conformance`).
* :class:`FakeTransport`: answers commands from a script, records them.
* :class:`CountingTransport`: wraps a real transport and records its commands.

The built-in ``direct``, ``slurm``, ``pbs``, ``lsf`` and ``sge`` plugins pass
the mixin (tests/schedulers/test_conformance.py; test_conformance_broken.py shows
the mistakes it catches).  Importing this module does not
import pytest: the mixin's checks are plain ``assert`` statements.
"""

from __future__ import annotations

from plait.schedulers.testing.conformance import AWKWARD_NAME, SchedulerConformance
from plait.schedulers.testing.transports import Call, CountingTransport, FakeTransport

__all__ = ["AWKWARD_NAME", "Call", "CountingTransport", "FakeTransport", "SchedulerConformance"]
