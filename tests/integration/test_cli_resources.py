"""The everyday command groups as subprocesses against a real appliance process: environments,
projects, targets, lifecycles, teams and users, each as text and ``--json``, with the mistakes
people make (unknown names, duplicates, things still in use) printing an error and a hint and
exiting non-zero. ``script run`` on real agents: tests/integration/test_cli_script.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import Appliance, running_appliance


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("cli-resources") / "data") as appliance:
        yield appliance


def ok(appliance: Appliance, *args: str) -> str:
    done = appliance.cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused(appliance: Appliance, *args: str, code: int = 1) -> str:
    """A failing command's stderr: the error line, then the hint line."""
    done = appliance.cli(*args)
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("octo-appliance: error: "), done.stderr
    assert lines[-1].startswith("octo-appliance: hint: "), done.stderr
    return done.stderr


def test_environments(appliance: Appliance) -> None:
    created = ok(appliance, "environment", "create", "Staging", "--sort-order", "5")
    as_json = json.loads(ok(appliance, "environment", "create", "QA", "--json"))
    listed = ok(appliance, "environment", "list")
    shown = json.loads(ok(appliance, "environment", "show", "Staging", "--json"))

    assert re.fullmatch(r"Created environment Staging \(env_\w+\)\.\n", created)
    assert as_json["name"] == "QA" and as_json["id"].startswith("env_")
    assert [line.split()[0] for line in listed.splitlines()] == ["NAME", "QA", "Staging"]
    assert shown["sort_order"] == 5

    duplicate = refused(appliance, "environment", "create", "QA")
    assert "an environment named 'QA' already exists" in duplicate
    assert "hint: choose another name" in duplicate
    missing = refused(appliance, "environment", "show", "Nowhere")
    assert "no environment with id or name 'Nowhere'" in missing

    assert ok(appliance, "environment", "delete", "QA").startswith("Deleted environment QA (")
    refused(appliance, "environment", "show", "QA")


def test_projects_and_lifecycles(appliance: Appliance) -> None:
    ok(appliance, "environment", "create", "Dev", "--sort-order", "1")
    ok(appliance, "environment", "create", "Prod", "--sort-order", "9")
    lifecycle = json.loads(
        ok(
            appliance,
            "lifecycle",
            "create",
            "Two step",
            "--phase",
            "First=Dev",
            "--phase",
            "Last=Prod;auto",
            "--json",
        )
    )
    project = ok(appliance, "project", "create", "shop", "--lifecycle", "Two step")
    shown = ok(appliance, "project", "show", "shop")
    lifecycle_text = ok(appliance, "lifecycle", "show", "Two step")

    assert [p["name"] for p in lifecycle["phases"]] == ["First", "Last"]
    assert lifecycle["phases"][1]["automatic"] is True
    assert project.startswith("Created project shop (prj_")
    assert f"lifecycle: {lifecycle['id']}" in shown
    assert "  1. First: Dev (needs all)" in lifecycle_text
    assert "  2. Last: Prod (needs all, automatic)" in lifecycle_text
    assert "Two step" in ok(appliance, "lifecycle", "list")
    listed = json.loads(ok(appliance, "project", "list", "--name", "sho", "--json"))
    assert [p["name"] for p in listed["items"]] == ["shop"]

    bad_phase = refused(appliance, "lifecycle", "create", "X", "--phase", "Dev", code=2)
    assert "is not NAME=ENV" in bad_phase
    unknown = refused(appliance, "project", "create", "other", "--lifecycle", "Nope")
    assert "unknown lifecycle: Nope" in unknown
    assert ok(appliance, "project", "delete", "shop").startswith("Deleted project shop")


def test_targets(appliance: Appliance) -> None:
    with appliance.api() as api:
        for name, env in (("box-1", "Dev"), ("box-2", "Prod")):
            body = {"name": name, "environments": [env], "roles": ["web", "db"]}
            assert api.post("/api/v1/targets", json=body).status_code == 201

    listed = ok(appliance, "target", "list")
    in_prod = json.loads(ok(appliance, "target", "list", "--environment", "Prod", "--json"))
    shown = ok(appliance, "target", "show", "box-1")

    assert [line.split()[0] for line in listed.splitlines()] == ["NAME", "box-1", "box-2"]
    assert [t["name"] for t in in_prod["items"]] == ["box-2"]
    assert "environments: Dev" in shown and "roles: db, web" in shown

    no_env = refused(appliance, "target", "list", "--environment", "Nowhere")
    assert "no environment with id or name 'Nowhere'" in no_env
    in_use = refused(appliance, "environment", "delete", "Prod")
    assert "still holds 1 target(s)" in in_use and "hint: move or delete its targets" in in_use

    checked = appliance.cli("target", "health-check", "box-1")
    assert checked.stdout.startswith("Checking the health of box-1: task task_")
    assert re.search(r"^Task task_\w+ \w+", checked.stdout, re.MULTILINE)

    no_agent = refused(appliance, "agent", "update", "--target", "box-1")
    assert "target 'box-1' has no agent to update" in no_agent
    assert "hint: only listening and polling targets run an agent" in no_agent
    assert "every agent already runs" in ok(appliance, "agent", "update")

    assert ok(appliance, "target", "delete", "box-2").startswith("Deleted target box-2")
    assert ok(appliance, "environment", "delete", "Prod").startswith("Deleted environment Prod")


def test_teams_and_users(appliance: Appliance, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("a long enough password\n")

    user = ok(appliance, "user", "create", "dora", "--password-file", str(password))
    team = ok(appliance, "team", "create", "Deployers")
    added = ok(appliance, "team", "add-member", "Deployers", "dora")
    granted = ok(
        appliance, "team", "grant", "Deployers", "project-deployer", "--environment", "Dev"
    )
    shown = json.loads(ok(appliance, "user", "show", "dora", "--json"))

    assert user.startswith("Created user dora (usr_")
    assert "team add-member TEAM dora" in user
    assert team.startswith("Created team Deployers (")
    assert "members: dora" in added
    assert "role: project-deployer (environments Dev)" in granted
    assert shown["has_password"] is True and [t["name"] for t in shown["teams"]] == ["Deployers"]
    assert "dora" in ok(appliance, "user", "list")
    assert "Deployers" in ok(appliance, "team", "list")
    assert "a long enough password" not in json.dumps(shown)

    bad_role = refused(appliance, "team", "grant", "Deployers", "overlord")
    assert "unknown role 'overlord'" in bad_role
    no_user = refused(appliance, "team", "add-member", "Deployers", "nobody")
    assert "unknown user: nobody" in no_user


def test_script_run_mistakes(appliance: Appliance) -> None:
    nowhere = refused(appliance, "script", "run", "--body", "true", code=2)
    typo = refused(appliance, "script", "run", "--target", "box-1", "--body", "echo #{Nope}")
    missing = refused(appliance, "script", "run", "--target", "ghost", "--body", "true")

    assert "say where to run the script" in nowhere
    assert "the script cannot be substituted" in typo
    assert "unknown target: ghost" in missing


def test_every_refusal_carries_a_hint(appliance: Appliance) -> None:
    """A 422 the appliance sends without a hint of its own still gets one (docs/cli.md)."""
    stderr = refused(appliance, "project", "create", "p-hint", "--library-set", "Nope")
    assert "unknown library variable set: Nope" in stderr
