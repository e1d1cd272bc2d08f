"""SSH targets end to end: a real appliance process, a real sshd (tests/sshd.py) and a real
listening agent, everything through the REST API. Target input is checked (4xx naming the
field), credentials are never answered or logged; health checks, the script console and
package deployments work on SSH targets, and one deployment mixes them with an agent."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.fleet import Fleet, running_fleet
from tests.sshd import NEEDS_SSHD, Sshd

pytestmark = [
    pytest.mark.slow,
    NEEDS_SSHD,
]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with Sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("ssh-fleet")) as fleet:
        agent = fleet.register("agent-1", "listening", roles=("web",))
        fleet.start_agents([agent])
        fleet.wait_connected([agent])
        yield fleet


def call(fleet: Fleet, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = fleet.api().request(method, "/api/v1" + path, **kwargs)
    assert response.status_code == status, f"{method} {path}: {response.text}"
    return response.json() if response.content else None


def ssh_block(sshd: Sshd, directory: Path | str, **overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "host_key_fingerprint": sshd.host_key_fingerprint,
        "directory": str(directory),
        "private_key": sshd.client_key,
    }
    block.update(overrides)
    return {k: v for k, v in block.items() if v is not None}


def add_ssh_target(
    fleet: Fleet,
    name: str,
    ssh: dict[str, Any],
    status: int = 201,
    roles: tuple[str, ...] = ("web",),
) -> Any:
    body = {
        "name": name,
        "environments": ["Dev"],
        "roles": list(roles),
        "communication_style": "ssh",
        "transport_settings": ssh,
    }
    return call(fleet, "POST", "/targets", status, json=body)


def fields_of(error: dict[str, Any]) -> list[str]:
    return [d["field"] for d in error["error"]["details"]]


def test_target_input_is_checked_naming_the_field(fleet: Fleet, sshd: Sshd, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any] | None, str]] = [
        (None, "transport_settings"),
        (ssh_block(sshd, tmp_path, host_key_fingerprint="SHA256:nope"), "host_key_fingerprint"),
        (ssh_block(sshd, tmp_path, host_key_fingerprint=None), "host_key_fingerprint"),
        (ssh_block(sshd, tmp_path, password="pw"), "password"),
        (ssh_block(sshd, tmp_path, private_key="not a key"), "private_key"),
        (ssh_block(sshd, tmp_path, private_key=None), "private_key"),
        (ssh_block(sshd, tmp_path, port=70000), "port"),
        (ssh_block(sshd, tmp_path, user="-oProxyCommand=x"), "user"),
        (ssh_block(sshd, tmp_path, host="-oProxyCommand=x"), "host"),
    ]
    for ssh, field in cases:
        body = {"name": "bad", "environments": ["Dev"], "roles": ["web"]}
        body.update(
            communication_style="ssh", **({"transport_settings": ssh} if ssh is not None else {})
        )
        error = call(fleet, "POST", "/targets", 422, json=body)
        wanted = field if field == "transport_settings" else f"transport_settings.{field}"
        assert wanted in fields_of(error), (field, error)
    encrypted = asyncssh.generate_private_key("ssh-ed25519")
    key = encrypted.export_private_key(passphrase="right horse").decode()
    error = add_ssh_target(fleet, "bad", ssh_block(sshd, tmp_path, private_key=key), 422)
    assert fields_of(error) == ["transport_settings.passphrase"]
    error = add_ssh_target(
        fleet, "bad", ssh_block(sshd, tmp_path, private_key=key, passphrase="wrong"), 422
    )
    assert fields_of(error) == ["transport_settings.passphrase"]
    listening = {"name": "bad", "environments": ["Dev"], "roles": ["web"]}
    listening.update(communication_style="listening", transport_settings=ssh_block(sshd, tmp_path))
    assert fields_of(call(fleet, "POST", "/targets", 422, json=listening)) == ["transport_settings"]
    created = add_ssh_target(
        fleet,
        f"enc-{secrets.token_hex(2)}",
        ssh_block(sshd, tmp_path, private_key=key, passphrase="right horse"),
    )
    assert created["transport_secrets"] == {
        "private_key": "set",
        "passphrase": "set",
        "password": "not set",
    }


def test_credentials_are_never_answered_audited_or_logged(
    fleet: Fleet, sshd: Sshd, tmp_path: Path
) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    created = add_ssh_target(
        fleet, "pw-target", ssh_block(sshd, tmp_path, private_key=None, password=password)
    )
    assert created["transport_settings"] == {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "host_key_fingerprint": sshd.host_key_fingerprint,
        "trust_on_first_use": False,
        "directory": str(tmp_path),
    }
    assert created["transport_secrets"] == {
        "private_key": "not set",
        "passphrase": "not set",
        "password": "set",
    }
    assert created["uri"] == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    # an update without credentials keeps them; the key replaces the password
    updated = call(
        fleet,
        "PUT",
        f"/targets/{created['id']}",
        json={"transport_settings": ssh_block(sshd, tmp_path, private_key=None)},
    )
    assert updated["transport_secrets"]["password"] == "set"
    task = fleet.wait_task(
        call(fleet, "POST", f"/targets/{created['id']}/health-check", 202)["task_id"]
    )
    everything = json.dumps(
        [
            call(fleet, "GET", "/targets?take=200"),
            call(fleet, "GET", "/audit?take=200"),
            fleet.log(task["id"]),
        ]
    )
    key_body = sshd.client_key.splitlines()[1]
    for secret in (password, key_body):
        assert secret not in everything
        assert secret not in fleet.server.output()


def test_health_checks_and_the_script_console_on_ssh_targets(
    fleet: Fleet, sshd: Sshd, tmp_path: Path
) -> None:
    good = add_ssh_target(
        fleet, "ssh-health", ssh_block(sshd, tmp_path / "good"), roles=("health",)
    )
    bare = add_ssh_target(
        fleet,
        "ssh-bare",
        ssh_block(sshd, tmp_path / "bare", private_key=sshd.no_python_key),
        roles=("health",),
    )
    for target, status in ((good, "Healthy"), (bare, None)):
        task_id = call(fleet, "POST", f"/targets/{target['id']}/health-check", 202)["task_id"]
        task = fleet.wait_task(task_id, timeout=90)
        row = call(fleet, "GET", f"/targets/{target['id']}")
        if status is not None:
            assert task["state"] == "success", task
            assert row["health_status"] in ("Healthy", "HealthyWithWarnings"), row
            assert row["agent_version"].startswith("ssh (python 3.")
        else:
            assert task["state"] == "failed"
            assert row["health_status"] == "Unavailable"
            log = "\n".join(fleet.log_of(task_id, "ssh-bare"))
            assert "python3 was not found on ssh-bare" in log, log
    task_id = fleet.run_script(
        'echo "#{Greeting} from $(basename $(dirname $(dirname $PWD)))"',
        roles=("health",),
        variables={"Greeting": "hello"},
    )
    task = fleet.wait_task(task_id, timeout=90)
    states = {t["target_name"]: t["state"] for t in task["targets"]}
    assert states == {"ssh-health": "success", "ssh-bare": "failed"}, task
    assert "hello from good" in fleet.log_of(task_id, "ssh-health")


def app_zip(marker: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.conf", "greeting=#{Greeting}\n")
        archive.writestr("Deploy.sh", f'echo "{marker} $(cat app.conf)" > "$PWD/deployed.txt"\n')
        archive.writestr("data.bin", secrets.token_bytes(256 * 1024))
    return buffer.getvalue()


def test_a_package_deployment_to_several_ssh_targets_and_an_agent(
    fleet: Fleet, sshd: Sshd, tmp_path: Path
) -> None:
    names = [f"ssh-web-{n}" for n in range(3)]
    for name in names:
        add_ssh_target(fleet, name, ssh_block(sshd, tmp_path / name), roles=("mixed",))
    agent = fleet.agents["agent-1"]
    call(fleet, "PUT", f"/targets/{agent.target_id}", json={"roles": ["web", "mixed"]})
    package_id = f"SshApp{secrets.token_hex(2)}"
    response = fleet.api().post(
        "/api/v1/packages",
        files={"file": (f"{package_id}.1.0.0.zip", app_zip("v1"), "application/octet-stream")},
    )
    assert response.status_code == 201, response.text
    project = call(fleet, "POST", "/projects", 201, json={"name": f"p-{secrets.token_hex(3)}"})
    step = {
        "name": "Install",
        "type": "deploy-package",
        "roles": ["mixed"],
        "properties": {"package": package_id, "substitute_files": ["*.conf"]},
    }
    call(fleet, "PUT", f"/projects/{project['id']}/process", json={"steps": [step]})
    variables = [{"name": "Greeting", "value": "hi #{Octo.Machine.Name}"}]
    call(fleet, "PUT", f"/projects/{project['id']}/variables", json={"variables": variables})
    release = call(fleet, "POST", f"/projects/{project['id']}/releases", 201, json={})
    for attempt in range(2):
        body = {"release": release["id"], "environment": "Dev", "force": True}
        deployment = call(fleet, "POST", "/deployments", 201, json=body)
        task = fleet.wait_task(deployment["task_id"], timeout=180)
        assert task["state"] == "success", "\n".join(
            line["message"] for line in fleet.log(task["id"])
        )
        for name in names:
            journal = json.loads((tmp_path / name / "state" / "journal.json").read_text())
            entries = journal.get("entries", journal) if isinstance(journal, dict) else journal
            mine = [e for e in entries if e.get("package_id") == package_id]
            assert len(mine) == attempt + 1 and all(e["success"] for e in mine), mine
            deployed = Path(mine[-1]["extracted_to"]) / "deployed.txt"
            assert deployed.read_text() == f"v1 greeting=hi {name}\n"
        agent_entries = json.loads((agent.home.root / "journal.json").read_text())
        assert any(
            e.get("package_id") == package_id for e in agent_entries.get("entries", agent_entries)
        )
        log = "\n".join(line["message"] for line in fleet.log(task["id"]))
        if attempt == 1:  # the second time, the caches hold it: nothing travels
            assert log.count("already in the target's cache, 0 bytes sent") == 4, log
