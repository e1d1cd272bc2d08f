"""Generated input from the live ``openapi.json``, on both backends: the document tells the truth.

Schemathesis reads the document the running appliance serves and generates requests for every
operation, authenticated as the administrator, with a fixed seed (``derandomize``) and a bounded
number of examples, so a run is repeatable and takes well under three minutes:

- schema-valid requests (positive mode) must never be refused by the schema checks the API runs
  itself: a 400/422 saying the body, query or path does not match the schema is a failure,
  because the document promised the request was fine (a rule violation such as an unknown
  reference is still a legitimate 404/409/422);
- schema-invalid requests (negative mode) must be refused with a documented 4xx;
- in both modes no answer is a 5xx, and every answer matches the documented status codes,
  content type and response schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from octo_appliance.api import API_PREFIX, all_endpoints
from octo_appliance.api.openapi import build_openapi
from octo_appliance.api.routing import SCHEMA_REJECTIONS
from octo_appliance.config import CONFIG_FILE_NAME
from octo_appliance.testing import OctoTestAppliance, start_test_appliance
from tests.api.deploy_support import held_engine
from tests.builds.support import put_stand_in
from tests.conftest import reset_pg_schema

EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 4}


def schema_valid_request_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request generated from the schema is not refused by the API's own schema checks."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 422):
        return None
    message = response.json().get("error", {}).get("message", "")
    if message in SCHEMA_REJECTIONS:
        raise AssertionError(
            f"a schema-valid request was refused ({response.status_code}: {message}): "
            f"{response.text}"
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    schema_valid_request_accepted,
]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OctoTestAppliance]:
    """One appliance per backend for every operation (a fresh one each would double the run)."""
    database = None
    if request.param == "postgres":
        database = request.getfixturevalue("pg_url")
        reset_pg_schema(database)
    data_dir = tmp_path_factory.mktemp("fuzz")
    # an agent build to serve (a stand-in), so GET /agent answers as it does once built
    cache = put_stand_in(tmp_path_factory.mktemp("agent-builds"))
    (data_dir / CONFIG_FILE_NAME).write_text(f"agent_build_dir = {json.dumps(str(cache))}\n")
    octo = start_test_appliance(data_dir, database=database)
    # Some data so GET/PUT/DELETE by name or id can hit real rows as well as missing ones.
    octo.api.post("/environments", json={"name": "Dev"})
    octo.api.post("/projects", json={"name": "Web"})
    # A running task engine (handlers that wait), so endpoints that queue tasks answer
    # as they do in the server rather than 503.
    try:
        with held_engine(octo, kinds=("deployment", "script", "health-check")) as held:
            held.release()
            yield octo
    finally:
        octo.client.close()
        octo.appliance.close()


def _cases() -> list[Any]:
    """(operation, mode) pairs: negative only where there is input to get wrong."""
    spec = build_openapi(all_endpoints(), API_PREFIX)
    cases = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            has_input = "parameters" in operation or "requestBody" in operation
            for mode in EXAMPLES:
                if mode is GenerationMode.POSITIVE or has_input:
                    cases.append(pytest.param(label, mode, id=f"{label}-{mode.value}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("label", "mode"), _cases())
def test_operation_keeps_its_document(
    label: str, mode: GenerationMode, fuzz_target: OctoTestAppliance
) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_target.client.app)
    operation = schema.find_operation_by_label(label)
    headers = {"X-Api-Key": fuzz_target.admin_key}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()
