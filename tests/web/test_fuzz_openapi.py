"""Fuzz the REST API from its own OpenAPI spec (schemathesis, bounded and derandomized): no request,
however malformed, makes the server answer 5xx, and every refusal is JSON naming what was wrong."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import plait
from plait.orm import Float
from plait.workflows.demo import NewtonSqrtWorkChain as NewtonSqrt


@pytest.fixture
def web_schema(web_server):
    plait.run(NewtonSqrt, a=Float(2.0))  # something for the pks to find
    return schemathesis.openapi.from_url(
        f"{web_server.url}/openapi.json", headers={"Authorization": f"Bearer {web_server.token}"}
    )


schema = schemathesis.pytest.from_fixture("web_schema")


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case, web_server):
    if case.path.endswith("/events"):
        pytest.skip("an event stream runs until its process ends; test_api covers it")
    response = case.call(headers={"Authorization": f"Bearer {web_server.token}"}, timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert body["error"] and "Traceback" not in response.text
