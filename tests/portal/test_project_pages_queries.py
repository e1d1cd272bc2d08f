"""The project pages' database work does not grow with what they list (no query per row):
the same number of queries for a few projects, steps, variables or releases as for many."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from octo_appliance.testing import OctoTestAppliance
from tests.portal.support import sign_in


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    octo = octo_appliance_factory()
    sign_in(octo.client, "admin", octo.admin_password)
    return octo


def queries(octo: OctoTestAppliance, path: str, caplog: pytest.LogCaptureFixture) -> int:
    octo.client.get(path)  # warm: caches (principal, step types) are filled once
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        answer = octo.client.get(path)
    assert answer.status_code == 200, path
    return sum(1 for record in caplog.records if record.name == "peewee")


def grows(
    octo: OctoTestAppliance,
    caplog: pytest.LogCaptureFixture,
    path: str,
    add: Callable[[int], None],
) -> tuple[int, int]:
    add(3)
    few = queries(octo, path, caplog)
    add(40)
    return few, queries(octo, path, caplog)


def test_the_pages_query_the_same_for_few_rows_as_for_many(
    octo: OctoTestAppliance, caplog: pytest.LogCaptureFixture
) -> None:
    api = octo.api
    for name in ("Dev", "Test", "Prod"):
        api.post("/environments", json={"name": name})
    pid = api.post("/projects", json={"name": "Main"}).json()["id"]
    made = {"projects": 0, "releases": 0}

    def projects(count: int) -> None:
        for _ in range(count):
            made["projects"] += 1
            api.post("/projects", json={"name": f"P{made['projects']:03d}"})

    def releases(count: int) -> None:
        for _ in range(count):
            made["releases"] += 1
            api.post(f"/projects/{pid}/releases", json={"version": f"1.0.{made['releases']}"})

    def steps(count: int) -> None:
        step = {"type": "manual-intervention", "properties": {"instructions": "x"}}
        body = {"steps": [{**step, "name": f"S{i}"} for i in range(count)]}
        assert api.put(f"/projects/{pid}/process", json=body).status_code == 200

    def variables(count: int) -> None:
        items = [
            {"name": f"V{i}", "value": "v", "sensitive": i % 2 == 0, "scope": {"roles": ["web"]}}
            for i in range(count)
        ]
        assert api.put(f"/projects/{pid}/variables", json={"variables": items}).status_code == 200

    for path, add in (
        ("/projects", projects),
        (f"/projects/{pid}", releases),
        (f"/projects/{pid}/releases", releases),
        (f"/projects/{pid}/process", steps),
        (f"/projects/{pid}/variables", variables),
    ):
        few, many = grows(octo, caplog, path, add)
        assert few == many, (path, few, many)
        assert few > 0
