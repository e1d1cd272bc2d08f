"""Variable scoping precedence, substitution, errors and system/output variables (tables)."""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.engine.variables import (
    OutputVariables,
    Resolved,
    Scope,
    ScopedValue,
    VariableProblem,
    VariableSet,
    both_prefixes,
    is_deferred_output,
    load_snapshot,
    resolve,
    substitute_properties,
    substitute_text,
)

DEV, PROD = "env_dev", "env_prod"
WEB1 = Scope(
    DEV, "Dev", step="Deploy", target_id="tgt_web1", target_name="web-01", roles=frozenset({"web"})
)


def value(text: str, *, source: str = "project", **scope: list[str]) -> dict[str, Any]:
    return {"name": "X", "value": text, "sensitive": False, "scope": scope, "source": source}


# (values in snapshot order, scope, expected winner)
PRECEDENCE = [
    pytest.param([value("plain")], WEB1, "plain", id="unscoped-only"),
    pytest.param(
        [value("plain"), value("dev", environments=[DEV])], WEB1, "dev", id="env-beats-unscoped"
    ),
    pytest.param(
        [value("dev", environments=["Dev"]), value("plain")], WEB1, "dev", id="env-by-name"
    ),
    pytest.param(
        [value("prod", environments=[PROD]), value("plain")],
        WEB1,
        "plain",
        id="other-env-no-candidate",
    ),
    pytest.param(
        [value("dev", environments=[DEV]), value("web", roles=["web"])],
        WEB1,
        "web",
        id="role-beats-env",
    ),
    pytest.param(
        [value("db", roles=["db"]), value("plain")], WEB1, "plain", id="other-role-no-candidate"
    ),
    pytest.param(
        [value("web", roles=["web"]), value("t", targets=["tgt_web1"])],
        WEB1,
        "t",
        id="target-beats-role",
    ),
    pytest.param(
        [value("web", roles=["web"]), value("t", targets=["web-01"])],
        WEB1,
        "t",
        id="target-by-name",
    ),
    pytest.param(
        [value("t", targets=["tgt_web1"]), value("s", steps=["Deploy"])],
        WEB1,
        "s",
        id="step-beats-target",
    ),
    pytest.param(
        [value("s", steps=["Other"]), value("plain")], WEB1, "plain", id="other-step-no-candidate"
    ),
    pytest.param(
        [value("s", steps=["Deploy"]), value("s+e", steps=["Deploy"], environments=[DEV])],
        WEB1,
        "s+e",
        id="more-dimensions-beat-fewer",
    ),
    pytest.param(
        [value("both", environments=[DEV], roles=["db"]), value("dev", environments=[DEV])],
        WEB1,
        "dev",
        id="all-dimensions-must-match",
    ),
    pytest.param([value("a", roles=["db", "web"])], WEB1, "a", id="any-role-in-list"),
    pytest.param(
        [value("lib", source="library:Shared"), value("proj")],
        WEB1,
        "proj",
        id="project-beats-library",
    ),
    pytest.param(
        [value("lib", source="library:Shared", roles=["web"]), value("proj")],
        WEB1,
        "lib",
        id="scope-beats-source",
    ),
    pytest.param([value("first"), value("second")], WEB1, "first", id="earlier-beats-later"),
    pytest.param(
        [value("t", targets=["tgt_web1"])],
        Scope(DEV, "Dev", step="Deploy"),
        None,
        id="target-scope-never-on-appliance",
    ),
]


@pytest.mark.parametrize(("values", "scope", "expected"), PRECEDENCE)
def test_precedence(values: list[dict[str, Any]], scope: Scope, expected: str | None) -> None:
    resolved = resolve(load_snapshot(values, {}), scope)
    assert (resolved["x"].value if "x" in resolved else None) == expected


def test_names_are_case_insensitive_and_sensitive_values_are_opened() -> None:
    snapshot: list[dict[str, Any]] = [
        {"name": "Password", "value": None, "sensitive": True, "scope": {}, "source": "project"},
        {
            "name": "password",
            "value": "plain",
            "sensitive": False,
            "scope": {},
            "source": "project",
        },
    ]
    resolved = resolve(load_snapshot(snapshot, {"0": "s3cret"}), WEB1)
    assert resolved["password"] == Resolved("Password", "s3cret", True)


def test_rank_orders_dimensions_then_source_then_position() -> None:
    ranks = [
        ScopedValue("X", "", steps=frozenset({"s"})).rank(),
        ScopedValue("X", "", targets=frozenset({"t"})).rank(),
        ScopedValue("X", "", roles=frozenset({"r"})).rank(),
        ScopedValue("X", "", environments=frozenset({"e"})).rank(),
        ScopedValue("X", "", from_project=True, position=0).rank(),
        ScopedValue("X", "", from_project=True, position=1).rank(),
        ScopedValue("X", "", from_project=False, position=0).rank(),
    ]
    assert ranks == sorted(ranks, reverse=True)


VARIABLES = {
    "Name": "web",
    "Greeting": "hello #{Name}",
    "Env": "Prod",
    "Port[Prod]": "443",
    "List": "a, b,,c",
    "Flag": "true",
    "Off": "0",
    "Spaced": "  x  ",
    "Loop1": "#{Loop2}",
    "Loop2": "#{Loop1}",
    "Self": "#{Self}",
    "Dangling": "#{Nowhere}",
}

SUBSTITUTION = [
    pytest.param("#{Name}", "web", id="plain"),
    pytest.param("#{name}", "web", id="case-insensitive"),
    pytest.param("#{Greeting}", "hello web", id="nested-value"),
    pytest.param("#{Port[#{Env}]}", "443", id="reference-in-name"),
    pytest.param("#{Name | ToUpper}", "WEB", id="filter"),
    pytest.param("#{Spaced | Trim | ToUpper}", "X", id="filter-chain"),
    pytest.param("#{Name | Base64}", "d2Vi", id="base64"),
    pytest.param("#{if Flag}on#{else}off#{/if}", "on", id="if-true"),
    pytest.param("#{if Off}on#{else}off#{/if}", "off", id="if-zero-is-false"),
    pytest.param("#{if Missing}#{Missing}#{/if}ok", "ok", id="untaken-branch-not-evaluated"),
    pytest.param("#{each i in List}[#{i}]#{/each}", "[a][b][c]", id="each"),
    pytest.param("##{Name}", "#{Name}", id="escape"),
    pytest.param("no references", "no references", id="literal"),
]


@pytest.mark.parametrize(("template", "expected"), SUBSTITUTION)
def test_substitution(template: str, expected: str) -> None:
    assert substitute_text(template, VARIABLES) == expected


ERRORS = [
    pytest.param("#{Missing}", "unresolved variable reference(s): Missing", id="unresolved"),
    pytest.param("#{A} #{B}", "unresolved variable reference(s): A, B", id="all-unresolved-named"),
    pytest.param(
        "#{Dangling}", "unresolved variable reference(s): Nowhere", id="unresolved-nested"
    ),
    pytest.param("#{Loop1}", "variable reference loop: Loop1 -> Loop2 -> Loop1", id="loop"),
    pytest.param("#{Self}", "variable reference loop: Self -> Self", id="self-loop"),
    pytest.param("#{if Flag}open", "#{if", id="unbalanced-block"),
    pytest.param("#{Name | Shout}", "Shout", id="unknown-filter"),
]


@pytest.mark.parametrize(("template", "fragment"), ERRORS)
def test_substitution_errors(template: str, fragment: str) -> None:
    with pytest.raises(VariableProblem) as caught:
        substitute_text(template, VARIABLES)
    assert fragment in caught.value.message


def test_properties_are_walked_and_problems_name_the_property() -> None:
    props = {"body": "echo #{Name}", "teams": ["#{Env}", "x"], "count": 3}
    assert substitute_properties(props, VARIABLES) == {
        "body": "echo web",
        "teams": ["Prod", "x"],
        "count": 3,
    }
    with pytest.raises(VariableProblem) as caught:
        substitute_properties({"teams": ["ok", "#{Gone}"]}, VARIABLES)
    assert caught.value.message == "in teams[1]: unresolved variable reference(s): Gone"


def test_properties_the_runner_substitutes_are_left_as_written() -> None:
    props = {"body": "echo #{Name}", "deploy": {"body": "cd #{Octo.Action.Package.X}"}}
    assert substitute_properties(props, VARIABLES, keep={"deploy"}) == {
        "body": "echo web",
        "deploy": {"body": "cd #{Octo.Action.Package.X}"},
    }
    nested = {"outer": {"deploy": "#{Gone}"}}  # only top-level properties are kept
    with pytest.raises(VariableProblem):
        substitute_properties(nested, VARIABLES, keep={"deploy"})


DEFERRED = [
    pytest.param("Octo.Action[Build].Output.Port", ["Build"], True, id="octo"),
    pytest.param(
        "octopus.action[build].output[web-01].Port", ["Build"], True, id="machine-any-case"
    ),
    pytest.param("Octo.Action[Later].Output.Port", ["Build"], False, id="not-earlier"),
    pytest.param("Octo.Action[Build].Port", ["Build"], False, id="not-output"),
    pytest.param("Other", ["Build"], False, id="plain-name"),
]


@pytest.mark.parametrize(("name", "earlier", "expected"), DEFERRED)
def test_deferred_output_references(name: str, earlier: list[str], expected: bool) -> None:
    assert is_deferred_output(name, earlier) is expected


def test_validation_allows_only_outputs_of_earlier_steps() -> None:
    text = "#{Octo.Action[Build].Output.Port} #{Octopus.Action[Build].Output[web-01].Port}"
    assert substitute_text(text, {}, deferred_steps=["Build"]) == ""
    with pytest.raises(VariableProblem, match=r"Octo\.Action\[Build\]\.Output\.Port"):
        substitute_text(text, {}, deferred_steps=["Other"])
    with pytest.raises(VariableProblem, match="Missing"):
        substitute_text(text + " #{Missing}", {}, deferred_steps=["Build"])


def test_system_variables_under_both_prefixes() -> None:
    named = both_prefixes({"Machine.Name": "web-01", "Release.Number": "1.2.3"})
    mapping = VariableSet.layered(named).mapping()
    assert mapping == {
        "Octo.Machine.Name": "web-01",
        "Octopus.Machine.Name": "web-01",
        "Octo.Release.Number": "1.2.3",
        "Octopus.Release.Number": "1.2.3",
    }


def test_output_variables_per_machine_and_last_machine_wins() -> None:
    outputs = OutputVariables()
    outputs.record("Build", "web-01", [Resolved("Port", "1")])
    outputs.record("Build", "web-02", [Resolved("Port", "2"), Resolved("Token", "t", True)])
    elsewhere = VariableSet.layered(outputs.for_machine("db-01"))
    mapping = elsewhere.mapping()
    assert mapping["Octo.Action[Build].Output[web-01].Port"] == "1"
    assert mapping["Octopus.Action[Build].Output[web-02].Port"] == "2"
    assert mapping["Octo.Action[Build].Output.Port"] == "2"  # the last machine to finish
    assert substitute_text("#{octo.action[build].output.port}", mapping) == "2"
    # a machine that ran the step sees its own value under the short name
    own = VariableSet.layered(outputs.for_machine("web-01")).mapping()
    assert own["Octo.Action[Build].Output.Port"] == "1"
    # sensitive outputs stay sensitive
    assert elsewhere.sensitive_values() == ["t", "t", "t", "t"]
    assert {v["name"] for v in elsewhere.runner_list() if v["sensitive"]} == {
        "Octo.Action[Build].Output[web-02].Token",
        "Octopus.Action[Build].Output[web-02].Token",
        "Octo.Action[Build].Output.Token",
        "Octopus.Action[Build].Output.Token",
    }


def test_layers_system_wins_over_project() -> None:
    project = {"octo.machine.name": Resolved("Octo.Machine.Name", "spoofed")}
    system = both_prefixes({"Machine.Name": "web-01"})
    assert VariableSet.layered(project, system).mapping()["Octo.Machine.Name"] == "web-01"


def test_output_variables_follow_each_new_record() -> None:
    """The names shared by every machine are built once per change: a record after a read
    is seen by the next read, for machines that ran the step and for the others."""
    outputs = OutputVariables()
    outputs.record("Build", "web-01", [Resolved("Port", "1")])
    assert outputs.for_machine("db-01")["octo.action[build].output.port"].value == "1"
    outputs.record("Build", "web-02", [Resolved("port", "2")])
    outputs.record("Test", "web-01", [Resolved("Result", "ok")])
    elsewhere = VariableSet.layered(outputs.for_machine("db-01")).mapping()
    assert elsewhere["Octo.Action[Build].Output.port"] == "2"
    assert elsewhere["Octo.Action[Build].Output[web-02].port"] == "2"
    assert elsewhere["Octopus.Action[Test].Output.Result"] == "ok"
    own = VariableSet.layered(outputs.for_machine("web-01")).mapping()
    assert own["Octo.Action[Build].Output.Port"] == "1"  # its own value, its own spelling
    assert "Octo.Action[Build].Output.port" not in own
    # one machine's own values never leak into what another machine reads next
    assert outputs.for_machine("db-01")["octo.action[build].output.port"].value == "2"
    outputs.record("Build", "web-01", [Resolved("Port", "3")])  # web-01 finished again: last
    assert outputs.for_machine(None)["octo.action[build].output.port"].value == "3"
    assert outputs.for_machine("web-02")["octo.action[build].output.port"].value == "2"
