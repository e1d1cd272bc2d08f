"""The plugin API v2: version declarations, property schemas, transport settings and context."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.config import load_config
from octo_appliance.exceptions import ConfigError, PluginError, VaultError
from octo_appliance.plugin_api import (
    PLUGIN_API_VERSION,
    Property,
    StepType,
    StepTypeRegistry,
    Transport,
    TransportContext,
    TransportRegistry,
    appliance_setting,
    hookimpl,
    property_problems,
    transport_setting,
)
from octo_appliance.plugin_api.properties import check_schema
from octo_appliance.plugin_api.settings import resolve_settings
from octo_appliance.plugins import create_plugin_manager
from octo_appliance.steps.deploy_package import DeployPackage
from octo_appliance.steps.manual_intervention import ManualIntervention
from octo_appliance.steps.run_script import RunScript
from octo_appliance.vault.keys import KeyRing, MasterKey
from octo_appliance.vault.values import Vault
from tests.engine.test_steps import DEPLOY_PACKAGE_CASES, MANUAL_CASES, RUN_SCRIPT_CASES


class Echo(StepType):
    name = "echo"
    summary = "Echo"


def plugin(version: object = PLUGIN_API_VERSION, name: str = "echo_plugin") -> types.ModuleType:
    @hookimpl
    def register_step_types(registry: StepTypeRegistry) -> None:
        registry.add(Echo)

    module = types.ModuleType(name)
    module.register_step_types = register_step_types  # type: ignore[attr-defined]
    if version is not None:
        module.OCTO_PLUGIN_API = version  # type: ignore[attr-defined]
    return module


# -- the plugin API version ------------------------------------------------------------------


def test_a_plugin_declaring_this_version_is_loaded() -> None:
    loaded = create_plugin_manager(extra_plugins=[plugin()], load_entry_points=False)
    assert "echo" in loaded.step_types


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (
            None,
            "written for plugin API version 1 (it declares no version); this appliance "
            "provides plugin API version 2",
        ),
        (3, "written for plugin API version 3; this appliance provides plugin API version 2"),
        ("2", "OCTO_PLUGIN_API = '2' is not a whole number"),
    ],
)
def test_an_incompatible_plugin_is_refused_naming_both_versions(
    declared: object, expected: str
) -> None:
    with pytest.raises(PluginError) as caught:
        create_plugin_manager(extra_plugins=[plugin(declared)], load_entry_points=False)
    assert "echo_plugin" in caught.value.message
    assert expected in caught.value.message
    assert "docs/plugins.md" in (caught.value.hint or "")


def test_every_builtin_declares_the_version() -> None:
    loaded = create_plugin_manager(load_entry_points=False)
    for name, module in loaded.manager.list_name_plugin():
        assert getattr(module, "OCTO_PLUGIN_API", None) == PLUGIN_API_VERSION, name


# -- property schemas ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "value", "problem"),
    [
        (Property("a", "string", "h", required=True), None, "is required"),
        (Property("a", "string", "h", required=True), "  ", "is required"),
        (Property("a", "string", "h"), None, None),
        (Property("a", "string", "h"), "x\ny", "must be one line of text, without line breaks"),
        (Property("a", "text", "h"), "x\ny", None),
        (Property("a", "text", "h", max_length=3), "abcd", "is longer than 3 characters"),
        (Property("a", "integer", "h"), True, "must be a whole number"),
        (Property("a", "integer", "h", minimum=2), 1, "must be at least 2"),
        (Property("a", "boolean", "h"), "yes", "must be true or false"),
        (Property("a", "list", "h"), ["x", 1], "must be a list of text values"),
        (Property("a", "list", "h", max_length=1), ["x", "y"], "is longer than 1 items"),
        (Property("a", "script", "h"), {"syntax": "sh", "body": "echo"}, None),
        (Property("a", "script", "h"), {"body": "x", "shell": "zsh"}, "must be a bash script"),
        (Property("a", "object", "h"), [], "must be a JSON object"),
        (Property("a", "string", "h", enum=("x", "y")), "z", "must be one of x, y"),
    ],
)
def test_property_checks(prop: Property, value: Any, problem: str | None) -> None:
    found = prop.problem(value)
    assert found == problem if problem is None else (found or "").startswith(problem)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([Property("a", "string", "h")], "must be a tuple"),
        ((Property("a", "string", "h"), Property("a", "text", "h")), "declared twice"),
        ((Property("a", "float", "h"),), "has type 'float'"),
        ((Property("a", "string", ""),), "has no help text"),
        ((Property("a", "integer", "h", default="x"),), "default 'x' must be a whole number"),
    ],
)
def test_a_malformed_schema_is_refused_when_registered(schema: Any, problem: str) -> None:
    assert problem in (check_schema(schema) or "")

    class Bad(StepType):
        name = "bad"
        properties = schema

    registry = StepTypeRegistry()
    registry.current_plugin = "bad_plugin"
    with pytest.raises(PluginError, match="plugin bad_plugin: step type 'bad' declares bad"):
        registry.add(Bad)


CASES = [
    *((RunScript(), case) for case in RUN_SCRIPT_CASES),
    *((ManualIntervention(), case) for case in MANUAL_CASES),
    *((DeployPackage(), case) for case in DEPLOY_PACKAGE_CASES),
]


@pytest.mark.parametrize(("step_type", "case"), CASES)
def test_builtin_schemas_agree_with_their_validation(step_type: StepType, case: Any) -> None:
    """The schema and ``validate`` fault the same fields (the schema may say it first)."""
    properties, expected = case.values
    found = {p.field.split(".")[0] for p in property_problems(step_type, properties)}
    assert found == {field.split(".")[0] for field in expected}


# -- transport settings and context ----------------------------------------------------------


class Pigeon(Transport):
    name = "carrier-pigeon"
    settings = (
        transport_setting("loft", str, None, "Where the birds live."),
        transport_setting("birds", int, 3, "Birds per message.", minimum=1),
        transport_setting("ring", bool, False, "Ring the bell."),
        appliance_setting("task_cap"),
    )


def config_in(tmp_path: Path, text: str = "", **flags: Any) -> Any:
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    return load_config({"data_dir": str(tmp_path), **flags}, environ={})


def test_transport_settings_come_from_env_then_file_then_default(tmp_path: Path) -> None:
    config = config_in(tmp_path, 'task_cap = 7\n[transports.carrier-pigeon]\nloft = "roof"\n')
    environ = {"OCTO_CARRIER_PIGEON_BIRDS": "5"}
    values = resolve_settings("carrier-pigeon", Pigeon.settings, config, environ)
    assert values == {"loft": "roof", "birds": 5, "ring": False, "task_cap": 7}


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (
            "[transports.carrier-pigeon]\nbirds = 0\n",
            {},
            "key birds: got 0; expected a whole number of at least 1",
        ),
        ("", {"OCTO_CARRIER_PIGEON_RING": "perhaps"}, 'OCTO_CARRIER_PIGEON_RING: got "perhaps"'),
        (
            "[transports.carrier-pigeon]\nbeak = 1\n",
            {},
            "does not declare: beak (it declares: loft, birds, ring, task_cap)",
        ),
    ],
)
def test_a_bad_transport_setting_names_its_source(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    config = config_in(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        resolve_settings("carrier-pigeon", Pigeon.settings, config, environ)
    assert message in caught.value.message


def test_the_config_file_may_hold_transport_tables_but_no_unknown_key(tmp_path: Path) -> None:
    assert config_in(tmp_path, "[transports.local]\n").task_cap == 5
    with pytest.raises(ConfigError, match="unknown settings: transport"):
        config_in(tmp_path, "[transport.local]\n")


def test_malformed_setting_declarations_are_refused() -> None:
    class Bad(Transport):
        name = "bad"
        settings = (transport_setting("Bad Name", str, None, "h"),)

    with pytest.raises(PluginError, match="declares bad settings: setting name 'Bad Name'"):
        TransportRegistry().add(Bad)


def test_only_agent_transports_reach_the_agent_network(tmp_path: Path) -> None:
    runner: Any = types.SimpleNamespace(version="1", sha256="0" * 64)
    plain = Pigeon(TransportContext("carrier-pigeon", runner))
    with pytest.raises(PluginError, match="only agent transports are given"):
        _ = plain.network
    network: Any = types.SimpleNamespace(runner=runner)
    agent = Pigeon(TransportContext("carrier-pigeon", runner, agent_network=network))
    assert agent.network is network
    assert plain.context.log.name == "octo_appliance.transport.carrier-pigeon"
    assert plain.context.settings == {}


def test_the_vault_is_bound_to_the_transport_and_purpose() -> None:
    vault = Vault(KeyRing(MasterKey.generate()))
    runner: Any = None
    mine = TransportContext("ssh", runner, sealing=vault).vault
    sealed = mine.seal("tgt_1/password", "hunter2")
    assert "hunter2" not in sealed
    assert mine.open("tgt_1/password", sealed) == "hunter2"
    with pytest.raises(VaultError):
        mine.open("tgt_2/password", sealed)
    with pytest.raises(VaultError):
        TransportContext("winrm", runner, sealing=vault).vault.open("tgt_1/password", sealed)
    with pytest.raises(PluginError, match="does not hold"):
        TransportContext("ssh", runner).vault.seal("x", "y")


def test_settings_shown_in_docs_for_config_errors_are_json() -> None:
    """The transport table is TOML; a value of the wrong TOML type is named as JSON."""
    setting = transport_setting("birds", int, 3, "h", minimum=1)
    with pytest.raises(ConfigError, match=json.dumps("3")):
        setting.convert("3", "somewhere", text=False)
