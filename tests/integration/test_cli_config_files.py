"""A project's variables and process kept in JSON files, as subprocesses against a real
appliance process: ``variables set|list|delete|export|import`` and ``process
show|export|import``. The round trip export -> import changes nothing and says so; an edited
file shows its diff, ``--dry-run`` stops there, the import applies it in one PUT; a sensitive
value is never exported and an import keeps it (a deployment shows the script still sees it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import Appliance, running_appliance

SECRET = "s3cret-value-never-exported"
#: fails the deployment unless the sealed value is still the one set
CHECK_SECRET = '[ "#{DbPassword}" = "' + SECRET + '" ] && echo "secret kept; port #{Port}"'
STEPS: list[dict[str, Any]] = [
    {
        "name": "Check",
        "type": "run-script",
        "properties": {"syntax": "bash", "body": CHECK_SECRET, "run_on": "appliance"},
    },
    {
        "name": "Prod only",
        "type": "run-script",
        "properties": {"syntax": "bash", "body": "echo prod", "run_on": "appliance"},
        "environments": ["Prod"],
    },
]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("cli-files") / "data") as appliance:
        for args in (("environment", "create", "Dev"), ("environment", "create", "Prod")):
            assert appliance.cli(*args).returncode == 0
        assert appliance.cli("project", "create", "shop").returncode == 0
        yield appliance


def ok(appliance: Appliance, *args: str) -> str:
    done = appliance.cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused(appliance: Appliance, code: int, *args: str) -> str:
    done = appliance.cli(*args)
    assert done.returncode == code, done.stdout + done.stderr
    assert re.search(r"^octo-appliance: error: .*\n^octo-appliance: hint: ", done.stderr, re.M)
    return done.stderr


def stored(appliance: Appliance) -> list[dict[str, Any]]:
    with appliance.api() as api:
        return list(api.get("/api/v1/projects/shop/variables").json()["variables"])


def deploy(appliance: Appliance) -> str:
    ok(appliance, "release", "create", "--project", "shop")
    done = appliance.cli(
        "deploy", "--project", "shop", "--release", "latest", "--environment", "Dev", "--wait"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_process_import_export_round_trip(appliance: Appliance, tmp_path: Path) -> None:
    file = tmp_path / "process.json"
    file.write_text(json.dumps({"project": "shop", "steps": STEPS}))

    first = ok(appliance, "process", "import", str(file))  # the project named by the file
    exported = tmp_path / "exported.json"
    wrote = ok(appliance, "process", "export", "--project", "shop", "-o", str(exported))
    again = ok(appliance, "process", "import", str(exported))
    shown = ok(appliance, "process", "show", "--project", "shop")

    assert first.splitlines() == [
        "Changes to the process of project shop (2 added, 0 changed, 0 removed):",
        "  + Check: run-script",
        "  + Prod only: run-script",
        "Applied to the process of project shop.",
    ]
    assert wrote == f"Wrote 2 step(s) of project shop to {exported}.\n"
    document = json.loads(exported.read_text())
    assert document["steps"][1]["environments"] == ["Prod"]  # names, not ids
    assert again == f"No changes: the process of project shop already match {exported}.\n"
    assert shown.splitlines()[0].split() == ["#", "STEP", "TYPE", "ROLES", "ENVIRONMENTS", "RUNS"]
    assert shown.splitlines()[-1] == "(process version 1)"  # the second import wrote nothing

    document["steps"][1]["properties"]["body"] = "echo production"
    document["steps"].reverse()
    exported.write_text(json.dumps(document))
    dry = ok(appliance, "process", "import", str(exported), "--dry-run")
    applied = json.loads(ok(appliance, "process", "import", str(exported), "--json"))

    assert dry.splitlines()[1:] == [
        "  ~ Prod only: properties.body",
        "  ~ the order changes",
        "Dry run: nothing was changed.",
    ]
    assert applied["applied"] is True
    assert applied["diff"]["changed"] == [{"item": "Prod only", "detail": "properties.body"}]
    assert applied["result"]["version"] == 2
    assert [s["name"] for s in applied["result"]["steps"]] == ["Prod only", "Check"]


def test_process_import_refusals(appliance: Appliance, tmp_path: Path) -> None:
    bad_type = tmp_path / "bad.json"
    bad_type.write_text(json.dumps({"steps": [{"name": "X", "type": "no-such-type"}]}))
    not_json = tmp_path / "broken.json"
    not_json.write_text("{steps: ")

    unknown = refused(appliance, 1, "process", "import", str(bad_type), "--project", "shop")
    broken = refused(appliance, 2, "process", "import", str(not_json), "--project", "shop")
    no_project = refused(appliance, 2, "process", "import", str(bad_type))

    assert "unknown step type 'no-such-type'" in unknown
    assert "is not JSON" in broken
    assert "names no project" in no_project


def test_variables_round_trip_keeps_the_secret(appliance: Appliance, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    ok(appliance, "variables", "set", "Port", "8080", "--project", "shop")
    ok(appliance, "variables", "set", "Port", "80", "--project", "shop", "--environment", "Prod")
    added = ok(
        appliance,
        "variables",
        "set",
        "DbPassword",
        "--sensitive",
        "--value-file",
        str(secret),
        "--project",
        "shop",
    )
    listed = ok(appliance, "variables", "list", "--project", "shop")
    before = stored(appliance)

    assert added == "Added DbPassword in project shop.\n"
    assert [line.split() for line in listed.splitlines()] == [
        ["NAME", "VALUE", "SCOPE"],
        ["Port", "8080", "-"],
        ["Port", "80", "environments", "Prod"],
        ["DbPassword", "********", "-"],
    ]

    file = tmp_path / "variables.json"
    ok(appliance, "variables", "export", "--project", "shop", "--output", str(file))
    text = file.read_text()
    unchanged = ok(appliance, "variables", "import", str(file))

    assert SECRET not in text
    assert json.loads(text) == {
        "project": "shop",
        "variables": [
            {"name": "Port", "value": "8080"},
            {"name": "Port", "value": "80", "scope": {"environments": ["Prod"]}},
            {"name": "DbPassword", "sensitive": True, "value": {"keep": True}},
        ],
    }
    assert unchanged == f"No changes: the variables of project shop already match {file}.\n"
    assert stored(appliance) == before

    document = json.loads(text)
    document["variables"][0]["value"] = "9090"
    del document["variables"][1]
    document["variables"].append({"name": "Greeting", "value": "hi", "scope": {"roles": ["web"]}})
    file.write_text(json.dumps(document))
    dry = ok(appliance, "variables", "import", str(file), "--dry-run")
    assert stored(appliance) == before
    applied = ok(appliance, "variables", "import", str(file))

    assert dry.splitlines() == [
        "Changes to the variables of project shop (1 added, 1 changed, 1 removed):",
        '  ~ Port: value "8080" -> "9090"',
        '  + Greeting [roles web]: "hi"',
        "  - Port [environments Prod]",
        "Dry run: nothing was changed.",
    ]
    assert applied.splitlines()[-1] == "Applied to the variables of project shop."
    after = {v["name"]: v for v in stored(appliance)}
    assert after["Port"]["value"] == "9090"
    assert after["DbPassword"]["id"] == before[2]["id"] and after["DbPassword"]["has_value"]
    ok(appliance, "process", "import", str(_process_file(tmp_path)), "--project", "shop")
    assert "secret kept; port 9090" in deploy(appliance)  # the sealed value survived


def _process_file(tmp_path: Path) -> Path:
    file = tmp_path / "steps.json"
    file.write_text(json.dumps({"steps": STEPS[:1]}))
    return file


def test_variables_mistakes(appliance: Appliance, tmp_path: Path) -> None:
    orphan = tmp_path / "orphan.json"
    orphan.write_text(
        json.dumps({"variables": [{"name": "Ghost", "sensitive": True, "value": {"keep": True}}]})
    )
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps({"variables": [{"name": "A", "value": 5}]}))
    ok(appliance, "variables", "set", "Twice", "a", "--project", "shop")
    ok(appliance, "variables", "set", "Twice", "b", "--project", "shop", "--role", "db")

    keep = refused(appliance, 1, "variables", "import", str(orphan), "--project", "shop")
    bad = refused(appliance, 2, "variables", "import", str(malformed), "--project", "shop")
    argv = refused(appliance, 2, "variables", "set", "Pw", "x", "--sensitive", "--project", "shop")
    ambiguous = refused(appliance, 1, "variables", "delete", "Twice", "--project", "shop")
    unknown_env = refused(
        appliance, 1, "variables", "set", "A", "1", "--environment", "Mars", "--project", "shop"
    )

    assert "'Ghost' says keep, but the project has no sensitive value" in keep
    assert "variables[0].value: must be a string" in bad
    assert "visible to other users in ps" in argv and "--value-file" in argv
    assert "Twice has 2 scopes" in ambiguous and "--all-scopes" in ambiguous
    assert "no environment with id or name 'Mars'" in unknown_env

    one = ok(appliance, "variables", "delete", "Twice", "--role", "db", "--project", "shop")
    rest = ok(appliance, "variables", "delete", "Twice", "--all-scopes", "--project", "shop")
    assert one == "Deleted Twice [roles db] from project shop.\n"
    assert rest == "Deleted Twice from project shop.\n"
    assert "Twice" not in [v["name"] for v in stored(appliance)]
