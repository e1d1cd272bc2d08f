"""Bad input, generated from ``openapi.json`` by schemathesis: no request gets a 5xx.

Schemathesis generates valid and invalid requests for every operation in the document the
appliance generates from its own code, authenticated as the administrator, and checks that no
response is a server error and that every response conforms to the documented schema (status
codes, content type, body). Runs on SQLite (the API logic is the same on both backends; the
backend-specific paths run in the rest of the API suite twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from octo_appliance.api import API_PREFIX, all_endpoints
from octo_appliance.api.openapi import build_openapi
from octo_appliance.testing import OctoTestAppliance
from tests.api.deploy_support import held_engine

EXAMPLES_PER_OPERATION = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_target(octo_appliance_factory: Any) -> Iterator[OctoTestAppliance]:
    octo: OctoTestAppliance = octo_appliance_factory()
    # Some data so GET/PUT/DELETE by name or id can hit real rows as well as missing ones.
    octo.api.post("/environments", json={"name": "Dev"})
    octo.api.post("/projects", json={"name": "Web"})
    # A running task engine (handlers that wait), so endpoints that queue tasks answer
    # as they do in the server rather than 503.
    with held_engine(octo, kinds=("deployment", "script", "health-check")) as held:
        held.release()
        yield octo


def _operation_labels() -> list[str]:
    spec = build_openapi(all_endpoints(), API_PREFIX)
    schema = schemathesis.openapi.from_dict(spec)
    return [result.ok().label for result in schema.get_all_operations()]


@pytest.mark.parametrize("label", _operation_labels())
def test_no_server_errors(label: str, fuzz_target: OctoTestAppliance) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_target.client.app)
    operation = schema.find_operation_by_label(label)
    headers = {"X-Api-Key": fuzz_target.admin_key}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()
