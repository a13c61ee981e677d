"""The conformance suite over the entry points ``--plait-transport`` names.

Collected only when :mod:`plait.transports.testing.pytest_plugin` adds this
file to the run; each test runs once per selected name.  The transport is
built from the entry point the way the engine builds it, so the constructor
contract is checked too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ..contract import Transport
from ..plugins import get_transport_class
from .conformance import EngineConfiguration, TransportConformance, build_transport
from .pytest_plugin import selected_transport_names, transport_options

pytestmark = pytest.mark.asyncio  # also in pytest-asyncio's strict mode


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "plait_transport_name" in metafunc.fixturenames:
        names = selected_transport_names(metafunc.config)
        metafunc.parametrize("plait_transport_name", names, ids=names)


class TestTransportEntryPoint(TransportConformance):
    """:class:`TransportConformance` on the plugin registered as ``plait_transport_name``."""

    @pytest.fixture
    def engine_configuration(
        self, plait_transport_name: str, pytestconfig: pytest.Config
    ) -> EngineConfiguration:
        return EngineConfiguration(
            get_transport_class(plait_transport_name),
            pytestconfig.getoption("--plait-transport-hostname"),
            transport_options(pytestconfig),
        )

    @pytest_asyncio.fixture
    async def transport(self, engine_configuration: EngineConfiguration) -> AsyncIterator[Transport]:
        async with build_transport(engine_configuration) as transport:
            yield transport
