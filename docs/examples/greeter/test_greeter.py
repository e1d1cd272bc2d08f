"""The greeter's tests, as its author writes them with the kit ``octo_appliance.testing``
(installed with the appliance as a pytest plugin: the fixtures need no import)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import octo_greeter

from octo_appliance.plugin_api import StepFailed, StepTarget, TargetRun, property_problems
from octo_appliance.runner_bundle import RunnerBuild
from octo_appliance.testing import FakeStepContext, run_runner_command

WEB = [StepTarget("tgt_1", "web-1", ("web",)), StepTarget("tgt_2", "web-2", ("web",))]


def test_properties_are_checked_against_the_schema() -> None:
    problems = property_problems(octo_greeter.Greet(), {"shout": "yes", "colour": "red"})
    assert {p.field: p.message for p in problems} == {
        "colour": "is not a property of greet (its properties: greeting, shout, run_on)",
        "greeting": "is required",
        "shout": "must be true or false",
    }


def test_execute_sends_one_script_per_target() -> None:
    ctx = FakeStepContext.for_step(
        "greet",
        {"greeting": "hello #{Name}", "shout": True},
        targets=WEB,
        variables={"Name": "world"},
    )
    asyncio.run(octo_greeter.Greet().execute(ctx))
    assert [(target.name, request.arguments["body"]) for target, request in ctx.requests] == [
        ("web-1", "echo 'HELLO WORLD'"),
        ("web-2", "echo 'HELLO WORLD'"),
    ]
    assert ctx.lines[-1].message == "greeted 2 target(s)"


def test_a_failed_target_fails_the_step() -> None:
    def respond(target: Any, request: Any) -> TargetRun:
        return TargetRun(target, "failed" if target.name == "web-2" else "success")

    ctx = FakeStepContext.for_step("greet", {"greeting": "hi"}, targets=WEB, respond=respond)
    try:
        asyncio.run(octo_greeter.Greet().execute(ctx))
    except StepFailed as exc:
        assert exc.message == "the greeting failed on web-2"
    else:
        raise AssertionError("the step should have failed")


def test_the_script_works_in_a_real_runner(octo_runner: RunnerBuild, tmp_path: Path) -> None:
    ctx = FakeStepContext.for_step("greet", {"greeting": "it's me", "run_on": "appliance"})
    asyncio.run(octo_greeter.Greet().execute(ctx))
    [(where, request)] = ctx.requests
    assert where is None  # the appliance
    outcome = run_runner_command(
        octo_runner, request.command, request.arguments, work_dir=tmp_path / "work"
    )
    assert outcome.success, outcome.stderr
    assert "it's me" in outcome.log.splitlines()


def test_greet_end_to_end_on_the_builtin_worker(octo_appliance_factory: Any) -> None:
    octo = octo_appliance_factory(extra_plugins=(octo_greeter,), services=True)
    greeting = {"greeting": "hello from #{Octopus.Environment.Name}", "run_on": "appliance"}
    outcome = octo.deploy_steps([{"name": "Hello", "type": "greet", "properties": greeting}])
    assert outcome.state == "success", outcome.log
    assert "hello from Test" in outcome.log.splitlines()
