"""Built-in step types: registered like plugins, and their validation per field (tables)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from octo_appliance.plugins import create_plugin_manager
from octo_appliance.steps import BUILTIN_MODULES
from octo_appliance.steps.base import PackageInfo, StepContext, StepType
from octo_appliance.steps.deploy_package import DeployPackage, script_of
from octo_appliance.steps.manual_intervention import ManualIntervention
from octo_appliance.steps.run_script import RunScript


def test_builtins_are_registered_through_the_hook() -> None:
    plugins = create_plugin_manager(load_entry_points=False)
    names = {entry.name: entry.plugin for entry in plugins.step_types}
    assert names == {
        "run-script": "octo_appliance.steps.run_script",
        "manual-intervention": "octo_appliance.steps.manual_intervention",
        "deploy-package": "octo_appliance.steps.deploy_package",
    }
    assert set(names.values()) <= set(BUILTIN_MODULES)


SCRIPT = {"syntax": "bash", "body": "echo hi"}

RUN_SCRIPT_CASES = [
    pytest.param(SCRIPT, {}, id="valid"),
    pytest.param({**SCRIPT, "run_on": "appliance"}, {}, id="valid-appliance"),
    pytest.param({**SCRIPT, "run_on": "targets"}, {}, id="valid-targets"),
    pytest.param({"body": "x"}, {"syntax": "is required"}, id="syntax-missing"),
    pytest.param({**SCRIPT, "syntax": "cmd"}, {"syntax": "must be one of"}, id="syntax-unknown"),
    pytest.param({**SCRIPT, "syntax": 3}, {"syntax": "must be one of"}, id="syntax-not-text"),
    pytest.param({"syntax": "sh"}, {"body": "is required"}, id="body-missing"),
    pytest.param({"syntax": "sh", "body": "  \n"}, {"body": "is required"}, id="body-blank"),
    pytest.param({"syntax": "sh", "body": ["echo"]}, {"body": "is required"}, id="body-not-text"),
    pytest.param({"syntax": "sh", "body": "x" * 1_048_577}, {"body": "longer"}, id="body-too-long"),
    pytest.param(
        {"syntax": "sh", "body": "#{if X}open"}, {"body": "#{if"}, id="body-unbalanced-block"
    ),
    pytest.param({**SCRIPT, "run_on": "cloud"}, {"run_on": "targets or appliance"}, id="run-on"),
    pytest.param({**SCRIPT, "bodyy": "x"}, {"bodyy": "not a property"}, id="unknown-property"),
    pytest.param(
        {"syntax": "x", "run_on": "y"},
        {"syntax": "must be", "body": "required", "run_on": "targets"},
        id="every-bad-field-at-once",
    ),
]

MANUAL_CASES = [
    pytest.param({"instructions": "Check the site"}, {}, id="valid"),
    pytest.param(
        {"instructions": "Check #{Url}", "responsible_teams": ["team_1", "Ops"]}, {}, id="teams"
    ),
    pytest.param({}, {"instructions": "is required"}, id="instructions-missing"),
    pytest.param({"instructions": " "}, {"instructions": "is required"}, id="instructions-blank"),
    pytest.param(
        {"instructions": "x" * 65_537}, {"instructions": "longer"}, id="instructions-too-long"
    ),
    pytest.param(
        {"instructions": "#{each x in Y}"}, {"instructions": "#{each"}, id="instructions-unbalanced"
    ),
    pytest.param(
        {"instructions": "x", "responsible_teams": "Ops"},
        {"responsible_teams": "list of team"},
        id="teams-not-list",
    ),
    pytest.param(
        {"instructions": "x", "responsible_teams": ["", "Ops"]},
        {"responsible_teams": "list of team"},
        id="team-empty",
    ),
    pytest.param(
        {"instructions": "x", "responsible_teams": [f"t{i}" for i in range(51)]},
        {"responsible_teams": "more than 50"},
        id="too-many-teams",
    ),
    pytest.param(
        {"instructions": "x", "timeout": 3}, {"timeout": "not a property"}, id="unknown-property"
    ),
]


def problems(step_type: StepType, properties: dict[str, Any]) -> dict[str, str]:
    return {p.field: p.message for p in step_type.validate(properties)}


@pytest.mark.parametrize(("properties", "expected"), RUN_SCRIPT_CASES)
def test_run_script_validation(properties: dict[str, Any], expected: dict[str, str]) -> None:
    found = problems(RunScript(), properties)
    assert set(found) == set(expected)
    for field, fragment in expected.items():
        assert fragment in found[field]


@pytest.mark.parametrize(("properties", "expected"), MANUAL_CASES)
def test_manual_intervention_validation(
    properties: dict[str, Any], expected: dict[str, str]
) -> None:
    found = problems(ManualIntervention(), properties)
    assert set(found) == set(expected)
    for field, fragment in expected.items():
        assert fragment in found[field]


@pytest.mark.parametrize(
    ("step_type", "properties", "expected"),
    [
        (RunScript(), SCRIPT, True),
        (RunScript(), {**SCRIPT, "run_on": "targets"}, True),
        (RunScript(), {**SCRIPT, "run_on": "appliance"}, False),
        (ManualIntervention(), {"instructions": "x"}, False),
        (DeployPackage(), {"package": "A"}, True),
        (DeployPackage(), {"package": "A", "run_on": "appliance"}, False),
    ],
)
def test_which_steps_run_on_targets(
    step_type: StepType, properties: dict[str, Any], expected: bool
) -> None:
    assert step_type.targets_machines(properties) is expected


PACKAGE = {"package": "Acme.Web"}

DEPLOY_PACKAGE_CASES = [
    pytest.param(PACKAGE, {}, id="valid-minimal"),
    pytest.param(
        {
            **PACKAGE,
            "substitute_files": ["config/*.conf", "**/*.txt"],
            "structured_variables": ["appsettings.json"],
            "install_dir": "/opt/#{Octo.Project.Name}",
            "purge": True,
            "purge_exclusions": ["logs/**", "App_Data"],
            "pre_deploy": "echo pre",
            "deploy": {"syntax": "python", "body": "print('#{Octo.Machine.Name}')"},
            "post_deploy": {"body": "echo post"},
            "run_on": "appliance",
            "keep_releases": 3,
        },
        {},
        id="valid-everything",
    ),
    pytest.param({}, {"package": "is required"}, id="package-missing"),
    pytest.param({"package": "a b"}, {"package": "must be a package id"}, id="package-space"),
    pytest.param({"package": "#{Pkg}"}, {"package": "must be a package id"}, id="package-var"),
    pytest.param({"package": 5}, {"package": "is required"}, id="package-not-text"),
    pytest.param(
        {**PACKAGE, "substitute_files": "*.conf"}, {"substitute_files": "list"}, id="globs-text"
    ),
    pytest.param(
        {**PACKAGE, "structured_variables": ["../x.json"]},
        {"structured_variables": "inside"},
        id="glob-escapes",
    ),
    pytest.param(
        {**PACKAGE, "substitute_files": ["/etc/*"]}, {"substitute_files": "inside"}, id="abs-glob"
    ),
    pytest.param({**PACKAGE, "deploy": 3}, {"deploy": "bash script"}, id="script-not-text"),
    pytest.param({**PACKAGE, "deploy": " "}, {"deploy": "is empty"}, id="script-blank"),
    pytest.param(
        {**PACKAGE, "deploy": {"syntax": "cobol", "body": "x"}},
        {"deploy.syntax": "must be one of"},
        id="script-syntax",
    ),
    pytest.param(
        {**PACKAGE, "post_deploy": {"body": "x", "shell": "zsh"}},
        {"post_deploy.shell": "not a script field"},
        id="script-unknown-field",
    ),
    pytest.param(
        {**PACKAGE, "pre_deploy": "#{if X}open"}, {"pre_deploy": "#{if"}, id="script-template"
    ),
    pytest.param({**PACKAGE, "install_dir": ""}, {"install_dir": "directory"}, id="dir-empty"),
    pytest.param({**PACKAGE, "purge": True}, {"purge": "needs install_dir"}, id="purge-no-dir"),
    pytest.param(
        {**PACKAGE, "install_dir": "/x", "purge": "yes"}, {"purge": "true or false"}, id="purge"
    ),
    pytest.param(
        {**PACKAGE, "install_dir": "/x", "purge_exclusions": ["logs/**"]},
        {"purge_exclusions": "needs purge"},
        id="exclusions-no-purge",
    ),
    pytest.param(
        {**PACKAGE, "install_dir": "/x", "purge": True, "purge_exclusions": ["../data"]},
        {"purge_exclusions": "inside install_dir"},
        id="exclusions-escape",
    ),
    pytest.param({**PACKAGE, "run_on": "moon"}, {"run_on": "targets or appliance"}, id="run-on"),
    pytest.param({**PACKAGE, "keep_releases": 0}, {"keep_releases": "from 1"}, id="keep-zero"),
    pytest.param({**PACKAGE, "keep_releases": True}, {"keep_releases": "from 1"}, id="keep-bool"),
    pytest.param({**PACKAGE, "feed": "x"}, {"feed": "not a property"}, id="unknown-property"),
]


@pytest.mark.parametrize(("properties", "expected"), DEPLOY_PACKAGE_CASES)
def test_deploy_package_validation(properties: dict[str, Any], expected: dict[str, str]) -> None:
    found = problems(DeployPackage(), properties)
    assert set(found) == set(expected)
    for field, fragment in expected.items():
        assert fragment in found[field]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("echo hi", {"syntax": "bash", "body": "echo hi"}),
        ({"body": "echo hi"}, {"syntax": "bash", "body": "echo hi"}),
        ({"syntax": "python", "body": "print(1)"}, {"syntax": "python", "body": "print(1)"}),
    ],
)
def test_deploy_package_scripts_normalise(value: Any, expected: Any) -> None:
    assert script_of(value) == expected


def test_deploy_package_names_its_package() -> None:
    assert DeployPackage().package_ids({"package": "Acme.Web"}) == ["Acme.Web"]
    assert DeployPackage().package_ids({}) == []
    assert RunScript().package_ids(SCRIPT) == []


class _Properties:
    """The two things ``DeployPackage.arguments`` reads from its step context."""

    force = False

    def __init__(self, properties: dict[str, Any]) -> None:
        self.properties = properties

    def properties_for(self, target: object) -> dict[str, Any]:
        return self.properties


def test_deploy_package_sends_purge_exclusions_to_the_runner() -> None:
    info = PackageInfo("Acme.Web", "1.0.0", "a" * 64, 10, "zip", "Acme.Web.1.0.0.zip")
    properties = {**PACKAGE, "install_dir": "/opt/acme", "purge": True}
    ctx = cast(StepContext, _Properties({**properties, "purge_exclusions": ["logs/**"]}))
    arguments = DeployPackage().arguments(ctx, None, info)
    assert (arguments["purge"], arguments["purge_exclusions"]) == (True, ["logs/**"])
    assert arguments["deploy"] is None
    ctx = cast(StepContext, _Properties(properties))
    assert DeployPackage().arguments(ctx, None, info)["purge_exclusions"] == []


def test_deploy_package_scripts_are_substituted_by_the_runner() -> None:
    """As Calamari does, so they can use the package variables only the runner knows."""
    assert DeployPackage.runner_substituted == {"pre_deploy", "deploy", "post_deploy"}
    info = PackageInfo("Acme.Web", "1.0.0", "a" * 64, 10, "zip", "Acme.Web.1.0.0.zip")
    body = "cd #{Octopus.Action.Package.InstallationDirectoryPath}"
    ctx = cast(StepContext, _Properties({**PACKAGE, "deploy": body}))
    assert DeployPackage().arguments(ctx, None, info)["deploy"] == {
        "syntax": "bash",
        "body": body,
        "substitute": True,
    }
