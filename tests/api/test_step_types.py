"""``GET /api/v1/step-types`` and the process API's validation from the declared schemas, on
SQLite and PostgreSQL, with the built-in step types and a third-party one."""

from __future__ import annotations

from typing import Any

from octo_appliance.plugin_api import PLUGIN_API_VERSION, Property, StepType, hookimpl
from tests.api.helpers import make_user


class Notify(StepType):
    name = "notify-chat"
    summary = "Post a message to a chat room"
    properties = (
        Property("room", "string", "The room to post to.", required=True),
        Property("message", "text", "What to post; #{...} is substituted.", required=True),
        Property("token", "string", "The bot's token.", required=True, secret=True),
        Property("priority", "integer", "1 (low) to 5.", default=3, minimum=1, maximum=5),
        Property("format", "string", "How to render it.", default="plain", enum=("plain", "md")),
    )

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return False


class NotifyPlugin:
    __name__ = "notify_plugin"
    OCTO_PLUGIN_API = PLUGIN_API_VERSION

    @hookimpl
    def register_step_types(self, registry: Any) -> None:
        registry.add(Notify)


def _put(api: Any, properties: dict[str, Any]) -> Any:
    step = {"name": "Tell", "type": "notify-chat", "properties": properties}
    return api.put("/projects/Shop/process", json={"steps": [step]})


def test_step_types_lists_every_schema_third_party_included(octo_appliance_factory, database_url):
    octo = octo_appliance_factory(extra_plugins=(NotifyPlugin(),), database=database_url)
    listed = octo.api.get("/step-types")
    assert listed.status_code == 200, listed.text
    rows = {row["name"]: row for row in listed.json()["items"]}
    assert set(rows) == {"run-script", "deploy-package", "manual-intervention", "notify-chat"}
    assert listed.json()["total"] == 4
    notify = {prop["name"]: prop for prop in rows["notify-chat"]["properties"]}
    assert notify["token"]["secret"] is True and notify["token"]["required"] is True
    assert notify["room"]["secret"] is False
    assert notify["priority"] == {
        "name": "priority",
        "type": "integer",
        "help": "1 (low) to 5.",
        "required": False,
        "secret": False,
        "default": 3,
        "minimum": 1,
        "maximum": 5,
    }
    assert notify["format"]["enum"] == ["plain", "md"]
    assert rows["notify-chat"]["plugin"] == "notify_plugin"
    script = {prop["name"]: prop for prop in rows["run-script"]["properties"]}
    assert script["syntax"]["enum"] == ["bash", "sh", "python", "pwsh"]
    assert script["body"]["required"] and script["body"]["type"] == "text"
    assert {p["name"] for p in rows["deploy-package"]["properties"]} >= {"package", "deploy"}


def test_the_process_api_validates_from_the_schema(octo_appliance_factory, database_url):
    octo = octo_appliance_factory(extra_plugins=(NotifyPlugin(),), database=database_url)
    api = octo.api
    api.post("/projects", json={"name": "Shop"})
    good = {"room": "ops", "message": "deployed #{Octopus.Release.Number}", "token": "#{Bot}"}
    assert _put(api, good).status_code == 200, _put(api, good).text

    bad = _put(api, {"room": "a\nb", "token": "", "priority": 9, "format": "html", "colour": 1})
    assert bad.status_code == 422
    details = {d["field"]: d["message"] for d in bad.json()["error"]["details"]}
    assert details == {
        "steps.0.properties.colour": "is not a property of notify-chat (its properties: "
        "room, message, token, priority, format)",
        "steps.0.properties.room": "must be one line of text, without line breaks",
        "steps.0.properties.message": "is required",
        "steps.0.properties.token": "is required",
        "steps.0.properties.priority": "must be at most 5",
        "steps.0.properties.format": "must be one of plain, md",
    }
    wrong_type = _put(api, {**good, "priority": "high"})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["details"] == [
        {"field": "steps.0.properties.priority", "message": "must be a whole number"}
    ]


def test_built_in_steps_are_checked_against_their_schema(api):
    api.post("/projects", json={"name": "Shop"})
    step = {"name": "S", "type": "run-script", "roles": ["web"], "properties": {"body": 3}}
    response = api.put("/projects/Shop/process", json={"steps": [step]})
    assert response.status_code == 422
    details = {d["field"]: d["message"] for d in response.json()["error"]["details"]}
    assert details["steps.0.properties.body"] == "must be text, several lines allowed"
    assert details["steps.0.properties.syntax"] == "is required"


def test_reading_step_types_needs_what_reading_a_process_needs(octo, api):
    viewer = api.as_key(make_user(octo, "vic", role="viewer"))
    assert viewer.get("/step-types").status_code == 200
    nobody = api.as_key(make_user(octo, "nora"))
    forbidden = nobody.get("/step-types")
    assert forbidden.status_code == 403
    assert "project.view" in forbidden.json()["error"]["message"]
