"""Which steps run where: plans, groups, run conditions and the snapshot's step fields."""

from __future__ import annotations

from typing import Any

import pytest

from octo_appliance.engine.deployments.conditions import (
    ALWAYS,
    FAILURE,
    SUCCESS,
    VARIABLE,
    Condition,
    parse_condition,
    should_run,
)
from octo_appliance.engine.deployments.plan import Plan, PlanError, TargetInfo, plan_deployment
from octo_appliance.engine.deployments.spec import DeploymentOptions, SpecError, StepSpec
from octo_appliance.engine.deployments.window import effective_window

ENV = ("env_dev", "Dev")
WEB1 = TargetInfo("tgt_w1", "web-01", frozenset({"web"}))
WEB2 = TargetInfo("tgt_w2", "web-02", frozenset({"web"}), health_status="Unavailable")
DB1 = TargetInfo("tgt_d1", "db-01", frozenset({"db"}))
BOTH = TargetInfo("tgt_b1", "both-01", frozenset({"web", "db"}))
TARGETS = [WEB1, WEB2, DB1, BOTH]


def step(name: str, **fields: Any) -> StepSpec:
    return StepSpec.from_snapshot(0, {"name": name, "type": "run-script", **fields})


def where(plan: Plan) -> dict[str, Any]:
    """step name -> sorted target names, or the reason it does not run."""
    out: dict[str, Any] = {}
    for planned in plan.steps:
        if not planned.run:
            out[planned.spec.name] = planned.reason
        elif not planned.on_targets:
            out[planned.spec.name] = "appliance"
        else:
            out[planned.spec.name] = [t.name for t in planned.targets]
    return out


CASES = [
    pytest.param(
        [step("A", roles=["web"]), step("B", roles=["db"])],
        {},
        {"A": ["both-01", "web-01", "web-02"], "B": ["both-01", "db-01"]},
        id="by-role",
    ),
    pytest.param(
        [step("A", roles=["web", "db"])],
        {},
        {"A": ["both-01", "db-01", "web-01", "web-02"]},
        id="any-of-the-roles",
    ),
    pytest.param(
        [step("A")], {}, {"A": ["both-01", "db-01", "web-01", "web-02"]}, id="no-roles-all"
    ),
    pytest.param([step("A", roles=["cache"])], {}, {"A": []}, id="no-target-has-role"),
    pytest.param(
        [step("A", environments=["env_prod"]), step("B", environments=["env_dev"])],
        {},
        {"A": "not for this environment", "B": ["both-01", "db-01", "web-01", "web-02"]},
        id="environments-by-id",
    ),
    pytest.param(
        [step("A", environments=["Dev"], roles=["db"])],
        {},
        {"A": ["both-01", "db-01"]},
        id="environments-by-name",
    ),
    pytest.param(
        [step("A", roles=["db"], disabled=True), step("B", roles=["db"])],
        {},
        {"A": "disabled in the process", "B": ["both-01", "db-01"]},
        id="disabled-step",
    ),
    pytest.param(
        [step("A", roles=["db"]), step("B", roles=["db"])],
        {"skip_steps": ["A"]},
        {"A": "skipped on request", "B": ["both-01", "db-01"]},
        id="skip-steps",
    ),
    pytest.param(
        [step("A", roles=["web"])],
        {"only_targets": ["web-01", "tgt_d1"]},
        {"A": ["web-01"]},
        id="only-targets-by-name-and-id",
    ),
    pytest.param(
        [step("A", roles=["web"])],
        {"exclude_targets": ["tgt_w2", "both-01"]},
        {"A": ["web-01"]},
        id="exclude-targets",
    ),
    pytest.param(
        [step("A", properties={"run_on": "appliance"}), step("B", roles=["db"])],
        {"on_targets": lambda s: s.properties.get("run_on") != "appliance"},
        {"A": "appliance", "B": ["both-01", "db-01"]},
        id="appliance-step",
    ),
]


@pytest.mark.parametrize(("steps", "options", "expected"), CASES)
def test_where_steps_run(steps: list[StepSpec], options: dict[str, Any], expected: Any) -> None:
    assert where(plan_deployment(steps, ENV, TARGETS, **options)) == expected


def test_unavailable_targets_are_kept_and_marked() -> None:
    plan = plan_deployment([step("A", roles=["web"])], ENV, TARGETS)
    marked = {t.name: t.unavailable for t in plan.steps[0].targets}
    assert marked == {"both-01": False, "web-01": False, "web-02": True}
    assert [t.name for t in plan.targets()] == ["both-01", "web-01", "web-02"]


ERRORS = [
    pytest.param({"skip_steps": ["Nope"]}, "skip_steps names steps", id="unknown-skip"),
    pytest.param({"skip_steps": ["Required"]}, "required steps cannot be skipped", id="required"),
    pytest.param({"only_targets": ["ghost"]}, "targets names targets", id="unknown-target"),
    pytest.param({"exclude_targets": ["ghost"]}, "exclude_targets names", id="unknown-exclude"),
]


@pytest.mark.parametrize(("options", "fragment"), ERRORS)
def test_plan_errors(options: dict[str, Any], fragment: str) -> None:
    steps = [step("A"), step("Required", required=True)]
    with pytest.raises(PlanError, match=fragment):
        plan_deployment(steps, ENV, TARGETS, **options)


GROUPS = [
    pytest.param([False, False, False], [["A"], ["B"], ["C"]], [], id="sequential"),
    pytest.param([False, True, False], [["A", "B"], ["C"]], [], id="with-previous"),
    pytest.param([True, True, True], [["A", "B", "C"]], [], id="first-with-previous"),
    pytest.param([False, False, True], [["A", "C"]], ["B"], id="joins-last-running-step"),
    pytest.param([False, True, True], [["A", "C"]], ["B"], id="skipped-middle-of-group"),
]


@pytest.mark.parametrize(("with_previous", "groups", "skip"), GROUPS)
def test_start_with_previous_groups(
    with_previous: list[bool], groups: list[list[str]], skip: list[str]
) -> None:
    steps = [step(n, start_with_previous=w) for n, w in zip("ABC", with_previous, strict=True)]
    plan = plan_deployment(steps, ENV, TARGETS, skip_steps=skip)
    assert [[p.spec.name for p in group] for group in plan.groups()] == groups


CONDITIONS = [
    pytest.param(None, Condition(SUCCESS), id="default"),
    pytest.param("success", Condition(SUCCESS), id="success"),
    pytest.param("Failure", Condition(FAILURE), id="failure-any-case"),
    pytest.param("always", Condition(ALWAYS), id="always"),
    pytest.param({"variable": "#{Run}"}, Condition(VARIABLE, "#{Run}"), id="variable"),
    pytest.param({"expression": "#{Run}"}, Condition(VARIABLE, "#{Run}"), id="expression"),
    pytest.param(
        {"type": "variable", "expression": " #{Run} "}, Condition(VARIABLE, "#{Run}"), id="typed"
    ),
    pytest.param({"type": "always"}, Condition(ALWAYS), id="typed-always"),
    pytest.param("variable:#{Run}", Condition(VARIABLE, "#{Run}"), id="string-form"),
]


@pytest.mark.parametrize(("raw", "expected"), CONDITIONS)
def test_parse_condition(raw: Any, expected: Condition) -> None:
    assert parse_condition(raw, "S") == expected


@pytest.mark.parametrize("raw", ["sometimes", {"variable": ""}, {"type": "x"}, 3, ["always"]])
def test_bad_conditions(raw: Any) -> None:
    with pytest.raises(SpecError, match="step 'S'"):
        parse_condition(raw, "S")


SHOULD_RUN = [
    pytest.param(SUCCESS, False, "", True, id="success-after-success"),
    pytest.param(SUCCESS, True, "", False, id="success-after-failure"),
    pytest.param(FAILURE, False, "", False, id="failure-after-success"),
    pytest.param(FAILURE, True, "", True, id="failure-after-failure"),
    pytest.param(ALWAYS, True, "", True, id="always"),
    pytest.param(VARIABLE, False, "True", True, id="expression-true"),
    pytest.param(VARIABLE, True, "yes", True, id="expression-ignores-failures"),
    pytest.param(VARIABLE, False, "false", False, id="expression-false"),
    pytest.param(VARIABLE, False, " 0 ", False, id="expression-zero"),
    pytest.param(VARIABLE, False, "", False, id="expression-empty"),
]


@pytest.mark.parametrize(("kind", "failed", "value", "expected"), SHOULD_RUN)
def test_should_run(kind: str, failed: bool, value: str, expected: bool) -> None:
    assert should_run(Condition(kind, "#{X}"), failed, value) is expected


SPECS = [
    pytest.param({"window": 0}, "window", None, id="window-zero-is-none"),
    pytest.param({"window": 2}, "window", 2, id="window"),
    pytest.param({"retries": 3}, "retries", 3, id="retries"),
    pytest.param({}, "retries", 0, id="retries-default"),
    pytest.param({"timeout": 30}, "timeout", 30, id="timeout"),
    pytest.param({"roles": ["web"]}, "roles", ("web",), id="roles"),
]


@pytest.mark.parametrize(("fields", "attribute", "expected"), SPECS)
def test_step_spec_fields(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    assert getattr(step("S", **fields), attribute) == expected


@pytest.mark.parametrize(
    "fields",
    [{"window": -1}, {"retries": -1}, {"timeout": "5"}, {"roles": "web"}, {"window": True}],
)
def test_bad_step_specs(fields: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="step 'S'"):
        step("S", **fields)


def test_options_from_task_arguments() -> None:
    options = DeploymentOptions.from_arguments(
        {
            "deployment_id": "dep_1",
            "release_id": "rel_1",
            "environment_id": "env_1",
            "skip_steps": ["A"],
            "guided_failure": True,
            "not_before": "2030-01-02T03:04:05Z",
        }
    )
    assert options.skip_steps == ("A",) and options.guided_failure
    assert (
        options.not_before is not None and options.not_before.isoformat() == "2030-01-02T03:04:05"
    )
    with pytest.raises(SpecError, match="release_id"):
        DeploymentOptions.from_arguments({"deployment_id": "d", "environment_id": "e"})


@pytest.mark.parametrize(("window", "cap", "expected"), [(None, 50, 50), (2, 50, 2), (80, 50, 50)])
def test_effective_window(window: int | None, cap: int, expected: int) -> None:
    assert effective_window(window, cap) == expected
