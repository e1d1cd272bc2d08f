"""Per-target settings declared by a transport, on SQLite and PostgreSQL: a third-party
transport's schema published by ``GET /api/v1/transports``, its targets' ``transport_settings``
validated (422 naming each setting), stored (secrets sealed, write-only, answered as set or not
set, kept by an update that leaves them out, re-sealed by master-key rotation) and handed to the
transport's own check; a style without settings refuses a block."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from octo_appliance.db import Target
from octo_appliance.db.transport_settings import open_secrets
from octo_appliance.plugin_api import (
    PLUGIN_API_VERSION,
    CheckedTargetSettings,
    FieldProblem,
    Property,
    TargetSettings,
    TargetSettingsInvalid,
    Transport,
    hookimpl,
)
from octo_appliance.vault import KeyRing, MasterKey, Vault


class WinRm(Transport):
    name = "winrm"
    summary = "Windows hosts over WinRM"
    target_settings = (
        Property("endpoint", "string", "https://host:5986/wsman", required=True),
        Property("use_kerberos", "boolean", "Kerberos instead of NTLM.", default=False),
        Property("timeout", "integer", "Seconds per call.", default=60, minimum=1, maximum=600),
        Property("password", "string", "The account's password.", required=True, secret=True),
    )

    @classmethod
    def check_target_settings(cls, given: TargetSettings) -> CheckedTargetSettings:
        if not given.values["endpoint"].startswith("https://"):
            raise TargetSettingsInvalid([FieldProblem("endpoint", "must use https")])
        checked = super().check_target_settings(given)
        return CheckedTargetSettings(checked.values, checked.secrets, uri=given.values["endpoint"])


@hookimpl
def register_transports(registry: Any) -> None:
    registry.add(WinRm)


def WinRmPlugin() -> ModuleType:
    plugin = ModuleType("winrm_plugin")
    plugin.register_transports = register_transports  # type: ignore[attr-defined]
    plugin.OCTO_PLUGIN_API = PLUGIN_API_VERSION  # type: ignore[attr-defined]
    return plugin


def _create(api: Any, settings: dict[str, Any] | None, style: str = "winrm") -> Any:
    assert api.post("/environments", json={"name": "Dev"}).status_code in (201, 409)
    body: dict[str, Any] = {"name": "win-1", "environments": ["Dev"], "roles": ["web"]}
    body["communication_style"] = style
    if settings is not None:
        body["transport_settings"] = settings
    return api.post("/targets", json=body)


def test_transports_publish_their_target_settings(octo_appliance_factory, database_url):
    octo = octo_appliance_factory(extra_plugins=(WinRmPlugin(),), database=database_url)
    listed = octo.api.get("/transports")
    assert listed.status_code == 200, listed.text
    rows = {row["name"]: row for row in listed.json()["items"]}
    assert {"ssh", "winrm", "local", "listening", "polling"} <= set(rows)
    winrm = rows["winrm"]
    assert (winrm["plugin"], winrm["agent_transport"]) == ("winrm_plugin", False)
    settings = {prop["name"]: prop for prop in winrm["target_settings"]}
    assert settings["password"]["secret"] is True and settings["endpoint"]["secret"] is False
    assert settings["timeout"] == {
        "name": "timeout",
        "type": "integer",
        "help": "Seconds per call.",
        "required": False,
        "secret": False,
        "default": 60,
        "minimum": 1,
        "maximum": 600,
    }
    ssh = {prop["name"]: prop for prop in rows["ssh"]["target_settings"]}
    assert {n for n, p in ssh.items() if p["secret"]} == {"private_key", "passphrase", "password"}
    assert ssh["host"]["required"] and ssh["port"]["default"] == 22
    assert rows["listening"]["target_settings"] == []


def test_target_settings_are_validated_naming_each_setting(octo_appliance_factory, database_url):
    octo = octo_appliance_factory(extra_plugins=(WinRmPlugin(),), database=database_url)
    bad = _create(octo.api, {"endpoint": "x\ny", "timeout": 0, "colour": "red"})
    assert bad.status_code == 422, bad.text
    details = {d["field"]: d["message"] for d in bad.json()["error"]["details"]}
    assert details == {
        "transport_settings.colour": "is not a setting of this transport (its settings: "
        "endpoint, use_kerberos, timeout, password)",
        "transport_settings.endpoint": "must be one line of text, without line breaks",
        "transport_settings.timeout": "must be at least 1",
        "transport_settings.password": "is required",
    }
    refused = _create(octo.api, {"endpoint": "http://h", "password": "pw"})
    assert refused.json()["error"]["details"] == [
        {"field": "transport_settings.endpoint", "message": "must use https"}
    ]
    missing = _create(octo.api, None)
    assert [d["field"] for d in missing.json()["error"]["details"]] == ["transport_settings"]
    foreign = _create(octo.api, {"endpoint": "https://h"}, style="listening")
    assert foreign.status_code == 422
    assert "takes no transport settings" in foreign.json()["error"]["message"]


def test_secrets_are_sealed_write_only_kept_and_rotated(octo_appliance_factory, database_url):
    octo = octo_appliance_factory(extra_plugins=(WinRmPlugin(),), database=database_url)
    api = octo.api
    password = "pw-not-to-be-seen"
    created = _create(api, {"endpoint": "https://win:5986/wsman", "password": password})
    assert created.status_code == 201, created.text
    target = created.json()
    assert target["uri"] == "https://win:5986/wsman"
    assert target["transport_settings"] == {
        "endpoint": "https://win:5986/wsman",
        "use_kerberos": False,
        "timeout": 60,
    }
    assert target["transport_secrets"] == {"password": "set"}
    row = Target.get_by_id(target["id"])
    assert password not in (row.sealed_credentials or "") and password not in str(
        row.transport_settings
    )
    assert open_secrets(octo.appliance.vault, row) == {"password": password}
    # an update without the secret keeps it; one with it replaces it
    updated = api.put(
        f"/targets/{target['id']}",
        json={"transport_settings": {"endpoint": "https://win2:5986/wsman", "timeout": 30}},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["transport_settings"]["timeout"] == 30
    assert open_secrets(octo.appliance.vault, Target.get_by_id(target["id"])) == {
        "password": password
    }
    everything = str([api.get("/targets").json(), api.get("/audit?take=200").json()])
    assert password not in everything
    from octo_appliance.db.rekey import reseal_values

    old = octo.appliance.vault
    rotating = Vault(KeyRing(MasterKey.generate(), (old.ring.current,)))
    reseal_values(octo.appliance.db, rotating, batch_size=2, progress=lambda *a: None)
    new_only = Vault(KeyRing(rotating.ring.current))
    assert open_secrets(new_only, Target.get_by_id(target["id"])) == {"password": password}
