"""``/api/v1/projects/{ref}/process`` on SQLite and PostgreSQL, with the built-in step types
(``run-script``, ``manual-intervention``) and a third-party one loaded as a plugin."""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.db import AuditEvent, ProjectProcess
from octo_appliance.hookspecs import hookimpl
from octo_appliance.steps.base import FieldProblem, StepType
from tests.api.helpers import make_user

SCRIPT = {"syntax": "bash", "body": "echo hello #{Name}"}


def script_step(step_name: str, **extra: Any) -> dict[str, Any]:
    return {"name": step_name, "type": "run-script", "roles": ["web"], "properties": SCRIPT} | extra


@pytest.fixture
def world(api):  # type: ignore[no-untyped-def]
    ids = {}
    for name in ("Dev", "Prod"):
        ids[name] = api.post("/environments", json={"name": name}).json()["id"]
    for name in ("Shop", "Blog"):
        ids[name] = api.post("/projects", json={"name": name}).json()["id"]
    return ids


def put(api, steps, project="Shop", **extra):  # type: ignore[no-untyped-def]
    return api.put(f"/projects/{project}/process", json={"steps": steps, **extra})


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [detail["field"] for detail in response.json()["error"]["details"]]


def test_empty_process(api, world):
    assert api.get("/projects/Shop/process").json() == {
        "project_id": world["Shop"],
        "version": 0,
        "steps": [],
    }
    assert api.get("/projects/Nope/process").status_code == 404
    assert put(api, [], project="Nope").status_code == 404


def test_put_get_defaults_and_versions(api, world):
    steps = [
        {"name": "Deploy web", "type": "run-script", "roles": ["web", "web"], "properties": SCRIPT},
        {
            "name": "Approve",
            "type": "manual-intervention",
            "properties": {"instructions": "check #{Url}", "responsible_teams": []},
            "condition": "always",
            "environments": ["Prod"],
        },
        {
            "name": "Migrate",
            "type": "run-script",
            "roles": ["db"],
            "properties": {**SCRIPT, "run_on": "targets"},
            "condition": {"variable": "#{if Migrate}true#{/if}"},
            "environments": [world["Dev"], "Prod"],
            "start_with_previous": True,
            "window": 2,
            "required": True,
            "retries": 3,
            "timeout": 600,
        },
        {
            "name": "Notify",
            "type": "run-script",
            "properties": {"syntax": "python", "body": "print(1)", "run_on": "appliance"},
            "condition": "failure",
        },
    ]
    response = put(api, steps)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["version"] == 1
    assert got == api.get(f"/projects/{world['Shop']}/process").json()
    first, approve, migrate, notify = got["steps"]
    assert first == {
        "name": "Deploy web",
        "type": "run-script",
        "roles": ["web"],
        "properties": SCRIPT,
        "condition": "success",
        "environments": [],
        "start_with_previous": False,
        "window": None,
        "required": False,
        "retries": 0,
        "timeout": None,
        "disabled": False,
    }
    assert approve["roles"] == [] and approve["environments"] == [world["Prod"]]
    assert migrate["condition"] == {"variable": "#{if Migrate}true#{/if}"}
    assert migrate["environments"] == [world["Dev"], world["Prod"]]
    assert (migrate["window"], migrate["retries"], migrate["timeout"]) == (2, 3, 600)
    assert migrate["start_with_previous"] and migrate["required"]
    assert notify["condition"] == "failure" and notify["roles"] == []

    # a GET answer is a valid body; each PUT bumps the version
    again = api.put("/projects/Shop/process", json=got)
    assert again.status_code == 200, again.text
    assert again.json() == {**got, "version": 2}
    event = (
        AuditEvent.select()
        .where(AuditEvent.resource_type == "process")
        .order_by(AuditEvent.occurred_at.desc())
        .first()
    )
    assert event.details == {"version": 2, "steps": ["Deploy web", "Approve", "Migrate", "Notify"]}
    assert event.resource_id == world["Shop"]


def test_script_body_is_kept_byte_for_byte(api, world):
    body = "  echo 'a'  \n\techo b\n"
    step = script_step("S", properties={"syntax": "sh", "body": body})
    assert put(api, [step]).json()["steps"][0]["properties"]["body"] == body


def test_stale_version_is_a_conflict(api, world):
    first = put(api, [script_step("A")]).json()
    assert put(api, [script_step("B")], version=first["version"]).status_code == 200
    stale = put(api, [script_step("C")], version=first["version"])
    assert stale.status_code == 409
    assert "it is 2 now" in stale.json()["error"]["message"]
    assert api.get("/projects/Shop/process").json()["steps"][0]["name"] == "B"


def test_step_names_are_unique(api, world):
    response = put(api, [script_step("Deploy"), script_step("other"), script_step("deploy")])
    assert fields(response) == ["steps.2.name"]
    assert "step 0" in response.json()["error"]["details"][0]["message"]


def test_unknown_type_lists_the_registered_ones(api, world):
    response = put(api, [{"name": "X", "type": "deploy-nuget", "roles": ["web"]}])
    assert fields(response) == ["steps.0.type"]
    message = response.json()["error"]["details"][0]["message"]
    assert "manual-intervention" in message and "run-script" in message
    assert "deploy-package" in message


def test_properties_are_checked_per_field(api, world):
    response = put(
        api,
        [
            script_step("A", properties={"syntax": "cobol", "run_on": "moon", "extra": 1}),
            {"name": "B", "type": "manual-intervention", "properties": {}},
        ],
    )
    assert set(fields(response)) == {
        "steps.0.properties.extra",
        "steps.0.properties.syntax",
        "steps.0.properties.body",
        "steps.0.properties.run_on",
        "steps.1.properties.instructions",
    }


def test_roles_needed_only_for_steps_on_targets(api, world):
    on_targets = put(api, [script_step("A", roles=[])])
    assert fields(on_targets) == ["steps.0.roles"]
    appliance = script_step("A", roles=[], properties={**SCRIPT, "run_on": "appliance"})
    approval = {"name": "B", "type": "manual-intervention", "properties": {"instructions": "ok"}}
    assert put(api, [appliance, approval]).status_code == 200


def test_other_rules(api, world):
    assert fields(put(api, [script_step("A", start_with_previous=True)])) == [
        "steps.0.start_with_previous"
    ]
    assert fields(put(api, [script_step("A", environments=["Nowhere"])])) == [
        "steps.0.environments"
    ]
    bad_expression = put(api, [script_step("A", condition={"variable": "#{if X}open"})])
    assert fields(bad_expression) == ["steps.0.condition.variable"]
    assert fields(put(api, [script_step("A")], project_id=world["Blog"])) == ["project_id"]


BAD_CHANGES = [
    {"condition": "sometimes"},
    {"condition": {"variable": ""}},
    {"condition": {"expression": "x"}},
    {"window": 0},
    {"retries": -1},
    {"retries": 101},
    {"timeout": 0},
    {"roles": [""]},
    {"properties": []},
    {"name": ""},
    {"colour": "red"},
]


def test_bad_step_shapes(api, world):
    for change in BAD_CHANGES:
        assert put(api, [script_step("A", **change)]).status_code == 422, change
    assert put(api, {"name": "A"}).status_code == 422
    assert not ProjectProcess.select().exists()


def test_permissions(octo, api, world):
    put(api, [script_step("A")])
    viewer = api.as_key(make_user(octo, "vera", "viewer"))
    assert viewer.get("/projects/Shop/process").status_code == 200
    assert put(viewer, []).status_code == 403
    scoped = api.as_key(make_user(octo, "sam", "project-deployer", projects=[world["Shop"]]))
    assert put(scoped, [script_step("B")]).status_code == 200
    assert put(scoped, [script_step("B")], project="Blog").status_code == 403
    assert scoped.get("/projects/Blog/process").status_code == 403
    assert api.as_key(None).get("/projects/Shop/process").status_code == 401


class _Fussy(StepType):
    """A third-party step type: one required property; runs nowhere near targets."""

    name = "send-mail"
    summary = "Send a mail"

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        if properties.get("to") == "crash":
            raise RuntimeError("the plugin has a bug")
        return [] if properties.get("to") else [FieldProblem("to", "is required")]

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return False


class _MailPlugin:
    OCTO_PLUGIN_API = 2

    @hookimpl
    def register_step_types(self, registry: Any) -> None:
        registry.add(_Fussy)


def test_plugin_step_types(octo_appliance_factory, database_url):
    octo = octo_appliance_factory(extra_plugins=(_MailPlugin(),), database=database_url)
    api = octo.api
    api.post("/projects", json={"name": "Shop"})
    ok = put(api, [{"name": "Mail", "type": "send-mail", "properties": {"to": "ops"}}])
    assert ok.status_code == 200, ok.text
    assert fields(put(api, [{"name": "Mail", "type": "send-mail"}])) == ["steps.0.properties.to"]
    broken = put(api, [{"name": "Mail", "type": "send-mail", "properties": {"to": "crash"}}])
    assert fields(broken) == ["steps.0.properties"]  # a plugin's bug is no 500


def test_deleted_environment_stays_narrow_and_round_trips(api, world):
    put(api, [script_step("A", environments=["Prod"])])
    assert api.delete("/environments/Prod").status_code == 200
    got = api.get("/projects/Shop/process").json()
    assert got["steps"][0]["environments"] == [world["Prod"]]  # not widened to all
    assert api.put("/projects/Shop/process", json=got).status_code == 200
    assert fields(put(api, [script_step("A", environments=["Prod"])])) == ["steps.0.environments"]
