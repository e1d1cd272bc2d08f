"""The pure parts of ``variables``/``process`` export and import: the file format, matching by
name and scope, the diff and the PUT body (the commands against a real appliance:
tests/integration/test_cli_config_files.py)."""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.cli import process_file, variable_file
from octo_appliance.cli.changes import Diff
from octo_appliance.cli.variable_file import Entry, KeepProblem
from octo_appliance.exceptions import ConfigError

NAMES = {"env_1": "Dev", "env_2": "Prod", "tgt_1": "web-01"}

STORED_API = [
    {
        "id": "var_a",
        "name": "Port",
        "value": "8080",
        "sensitive": False,
        "has_value": True,
        "scope": {"environments": [], "roles": [], "targets": [], "steps": []},
    },
    {
        "id": "var_b",
        "name": "Port",
        "value": "80",
        "sensitive": False,
        "has_value": True,
        "scope": {"environments": ["env_2"], "roles": [], "targets": ["tgt_1"], "steps": []},
    },
    {
        "id": "var_c",
        "name": "Password",
        "value": None,
        "sensitive": True,
        "has_value": True,
        "scope": {"environments": [], "roles": ["db"], "targets": [], "steps": []},
    },
]


def by_name(kind: str, ids: list[str]) -> list[str]:
    return [NAMES.get(i, i) for i in ids]


def stored() -> list[tuple[str, Entry]]:
    return variable_file.stored_entries(STORED_API, by_name)


def exported() -> dict[str, Any]:
    return variable_file.export_document("shop", stored())


def wanted(document: dict[str, Any]) -> list[Entry]:
    return variable_file.read_entries(document, "vars.json")


def test_export_names_scopes_and_never_holds_a_sensitive_value() -> None:
    assert exported() == {
        "project": "shop",
        "variables": [
            {"name": "Port", "value": "8080"},
            {
                "name": "Port",
                "value": "80",
                "scope": {"environments": ["Prod"], "targets": ["web-01"]},
            },
            {
                "name": "Password",
                "sensitive": True,
                "value": {"keep": True},
                "scope": {"roles": ["db"]},
            },
        ],
    }


def test_the_round_trip_is_an_identity() -> None:
    diff, body = variable_file.plan(stored(), wanted(exported()))

    assert diff.empty and diff.lines() == []
    assert [item["id"] for item in body] == ["var_a", "var_b", "var_c"]
    assert body[2] == {  # the sealed value is kept: the id, and no value
        "id": "var_c",
        "name": "Password",
        "value": None,
        "sensitive": True,
        "scope": {"environments": [], "roles": ["db"], "targets": [], "steps": []},
    }


def test_added_changed_removed_and_reordered() -> None:
    document = exported()
    port, _, password = document["variables"]
    port["value"] = "9090"
    password["value"] = "new secret"
    document["variables"] = [password, port, {"name": "Extra", "value": None}]

    diff, body = variable_file.plan(stored(), wanted(document))

    assert diff.lines() == [
        "  ~ Password [roles db]: new sensitive value",
        '  ~ Port: value "8080" -> "9090"',
        "  + Extra: (no value)",
        "  - Port [environments Prod; targets web-01]",
        "  ~ the order changes",
    ]
    assert diff.summary() == "1 added, 2 changed, 1 removed, order changed"
    assert [item.get("id") for item in body] == ["var_c", "var_a", None]
    assert body[0]["value"] == "new secret"
    assert "new secret" not in str(diff.as_json())


def test_scope_order_and_name_case() -> None:
    document = exported()
    document["variables"][1]["scope"] = {"targets": ["web-01"], "environments": ["Prod"]}
    document["variables"][0]["name"] = "PORT"

    diff, _ = variable_file.plan(stored(), wanted(document))

    assert diff.lines() == ["  ~ PORT: name 'Port' -> 'PORT'"]


def test_sensitivity_changes() -> None:
    document = exported()
    document["variables"][0] = {"name": "Port", "value": "8080", "sensitive": True}
    document["variables"][2] = {"name": "Password", "value": "plain", "scope": {"roles": ["db"]}}

    diff, _ = variable_file.plan(stored(), wanted(document))

    assert diff.lines() == [
        "  ~ Port: becomes sensitive",
        '  ~ Password [roles db]: no longer sensitive, value "plain"',
    ]


def test_keep_needs_a_stored_sensitive_value() -> None:
    keep = {"sensitive": True, "value": {"keep": True}}
    with pytest.raises(KeepProblem, match="no sensitive value with that name and scope"):
        variable_file.plan(stored(), wanted({"variables": [{"name": "Other", **keep}]}))
    with pytest.raises(KeepProblem, match="its stored value is not sensitive") as caught:
        variable_file.plan(stored(), wanted({"variables": [{"name": "Port", **keep}]}))
    assert caught.value.hint


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "top level: must be an object"),
        ({"variables": [{"name": ""}]}, "variables[0].name: must be a non-empty string"),
        ({"variables": [{"name": "A", "value": 1}]}, "variables[0].value: must be a string"),
        ({"variables": [{"name": "A", "value": {"keep": True}}]}, "only for sensitive values"),
        ({"variables": [{"name": "A", "colour": "red"}]}, "variables[0]: is not a variable"),
        ({"variables": [{"name": "A", "scope": {"planets": []}}]}, "takes only the keys"),
        ({"variables": [{"name": "A", "scope": {"roles": "web"}}]}, "must be a list of names"),
        (
            {"variables": [{"name": "A"}, {"name": "a"}]},
            "variables[1]: 'a' is also variables[0] (same scope)",
        ),
    ],
)
def test_malformed_files_are_named(document: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        wanted(document)
    assert message in caught.value.message
    assert caught.value.message.startswith("vars.json: ")
    assert caught.value.hint


STEPS = [
    {"name": "Deploy", "type": "deploy-package", "roles": ["web"], "properties": {"package": "A"}},
    {"name": "Smoke", "type": "run-script", "properties": {"body": "true"}, "environments": []},
]


def test_process_round_trip_with_defaults_left_out() -> None:
    full = [{**process_file.DEFAULTS, **step} for step in STEPS]

    assert process_file.plan(full, STEPS).empty
    assert process_file.plan(STEPS, full).empty


def test_process_diff_names_the_fields() -> None:
    changed = [
        {**STEPS[1], "properties": {"body": "false"}, "retries": 2},
        {**STEPS[0], "name": "deploy"},
        {"name": "Notify", "type": "run-script"},
    ]

    diff = process_file.plan(STEPS, changed)

    assert diff.lines() == [
        "  ~ Smoke: properties.body, retries",
        "  ~ deploy: name",
        "  + Notify: run-script",
        "  ~ the order changes",
    ]
    assert process_file.plan(STEPS, STEPS[:1]).lines() == ["  - Smoke"]


def test_process_files_are_checked() -> None:
    with pytest.raises(ConfigError, match="must be an object"):
        process_file.read_steps({"steps": {}}, "p.json")
    with pytest.raises(ConfigError, match=r"steps\[1\] needs a \"name\""):
        process_file.read_steps({"steps": [{"name": "A"}, {}]}, "p.json")
    with pytest.raises(ConfigError, match=r"steps\[1\] 'a' is also the name of steps\[0\]"):
        process_file.read_steps({"steps": [{"name": "A"}, {"name": "a"}]}, "p.json")


def test_an_empty_diff_says_nothing() -> None:
    diff = Diff()
    assert diff.empty and diff.summary() == "0 added, 0 changed, 0 removed"
    assert diff.as_json() == {"added": [], "changed": [], "removed": [], "reordered": False}
