"""The one-line agent install with real processes: ``octo-appliance agent install-command``
prints it, ``sh`` runs it (as ``nobody`` in a fresh home, and as root where no systemd runs),
and the machine becomes a healthy polling or listening target that runs a script and a
deployment (:func:`tests.deployment_scenario.script_and_deployment`); a rerun
changes nothing, ``--uninstall`` leaves nothing, and every refusal installs nothing.

The agent build the appliance serves is :mod:`tests.agent_build_standin` (this checkout's agent
under Python), so the suite does not wait for PyInstaller; ``tests/binary`` runs the frozen one.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_build_standin import put_standin_build, serve_env
from tests.deployment_scenario import script_and_deployment
from tests.fleet import Fleet, running_fleet, wait_until
from tests.oneliner_support import (
    MARKS,
    NOBODY,
    PATH,
    Run,
    fresh_home,
    install_command,
    run,
    shared_dir_fixture,  # noqa: F401  (the shared_dir fixture)
    targets,
)
from tests.ports import free_port

pytestmark = MARKS


@pytest.fixture(scope="module")
def fleet(shared_dir: Path) -> Iterator[Fleet]:
    builds = shared_dir / "agent-builds"
    put_standin_build(builds)
    with running_fleet(shared_dir / "fleet", serve_env=serve_env(builds)) as fleet:
        yield fleet


def token_uses(fleet: Fleet) -> list[int]:
    return [t["uses"] for t in fleet.api().get("/api/v1/registration-tokens").json()["items"]]


def agent_pids(prefix: Path) -> list[int]:
    """Processes whose command line names ``prefix`` (the installed agent and its runners)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(prefix) in cmdline:
                found.append(int(entry.name))
    return found


def test_as_nobody_in_a_fresh_home_a_polling_target(fleet: Fleet, shared_dir: Path) -> None:
    home = fresh_home(shared_dir, "nobody-home")
    command = install_command(fleet, "--poll") + " --name nobody-poll"
    first = run(command, user=NOBODY, home=home)
    assert first.code == 0, first.err + first.out
    prefix = home / ".local" / "share" / "octo-agent"
    assert "nobody-poll is a healthy target" in first.out
    assert "background process" in first.out  # no systemd here
    assert (prefix / "bin" / "octo-agent").stat().st_uid == NOBODY
    shown = targets(fleet)["nobody-poll"]
    assert shown["health_status"] == "Healthy"
    assert shown["communication_style"] == "polling"
    script_and_deployment(fleet, ["nobody-poll"])
    assert "OCTOREG-" not in (prefix / "agent.log").read_text()  # the token is never logged

    # a rerun: already there, nothing changes
    uses = token_uses(fleet)
    pid = (prefix / "agent.pid").read_text()
    again = run(command, user=NOBODY, home=home)
    assert again.code == 0, again.err
    assert "already installed" in again.out and "already registered" in again.out
    assert (prefix / "agent.pid").read_text() == pid
    assert token_uses(fleet) == uses
    assert list(targets(fleet)).count("nobody-poll") == 1

    gone = run(command + " --uninstall", user=NOBODY, home=home)
    assert gone.code == 0, gone.err
    assert not prefix.exists()
    assert "nobody-poll" not in targets(fleet)
    wait_until(lambda: not agent_pids(prefix), 15, "the agent to stop")
    assert sorted(p.name for p in home.rglob("*")) == [".local", "share"]


def test_as_root_without_systemd_a_listening_target(fleet: Fleet, shared_dir: Path) -> None:
    prefix = shared_dir / "root-prefix"
    port = free_port()
    command = install_command(fleet, "--listen", str(port))
    extra = f" --public-host 127.0.0.1 --name root-listen --prefix {prefix} --run-as nobody"
    # PATH without systemctl, as on a machine without systemd
    first = run(command + extra, path="/usr/local/bin:/bin:/usr/sbin:/sbin:/usr/bin/../bin")
    assert first.code == 0, first.err + first.out
    assert "root-listen is a healthy target" in first.out
    assert "runs as: nobody, background process" in first.out
    shown = targets(fleet)["root-listen"]
    assert shown["communication_style"] == "listening"
    assert shown["uri"] == f"https://127.0.0.1:{port}"
    assert shown["health_status"] == "Healthy"
    token = command.split("--token ", 1)[1].split()[0]
    agent = f"OCTO_REGISTRATION_TOKEN={token} {prefix}/bin/octo-agent"
    asked = run(f"{agent} wait-healthy --home {prefix}/home --timeout 5")
    assert asked.out.strip() == "the appliance reports this target Healthy", asked.err
    pid = int((prefix / "agent.pid").read_text())
    assert Path(f"/proc/{pid}").stat().st_uid == NOBODY
    script_and_deployment(fleet, ["root-listen"])

    gone = run(command + extra + " --uninstall")
    assert gone.code == 0, gone.err
    assert not prefix.exists()
    assert "root-listen" not in targets(fleet)


def refused(result: Run, message: str, prefix: Path) -> None:
    assert result.code != 0 or not result.out, result.out
    assert message in result.err, result.err
    assert not prefix.exists(), "a refused install left files"


def test_a_wrong_pin_sends_nothing_and_installs_nothing(fleet: Fleet, shared_dir: Path) -> None:
    prefix = shared_dir / "wrong-pin"
    command = install_command(fleet, "--poll")
    forged = command.replace("sha256//", "sha256//AAAA", 1)
    result = run(forged + f" --prefix {prefix} --run-as root")
    refused(result, "(90)", prefix)  # curl: public key does not match pinned public key


def test_a_used_up_token_is_refused(fleet: Fleet, shared_dir: Path) -> None:
    command = install_command(fleet, "--poll")
    first = shared_dir / "used-1"
    assert run(command + f" --name used-1 --prefix {first} --run-as root").code == 0
    second = shared_dir / "used-2"
    result = run(command + f" --name used-2 --prefix {second} --run-as root")
    refused(
        result, "octo-agent install: error: the appliance refused the registration token", second
    )
    assert "used up" in result.err
    assert "used-2" not in targets(fleet)
    assert run(command + f" --prefix {first} --uninstall").code == 0


def test_an_expired_token_is_refused(fleet: Fleet, shared_dir: Path) -> None:
    command = install_command(fleet, "--poll", "--expires", "1h")
    with sqlite3.connect(fleet.data_dir / "octo.db") as db:
        newest = "SELECT id FROM registration_token ORDER BY created_at DESC LIMIT 1"
        db.execute(f"UPDATE registration_token SET expires_at = '2000-01-01' WHERE id = ({newest})")
    prefix = shared_dir / "expired"
    result = run(command + f" --name expired --prefix {prefix} --run-as root")
    refused(result, "the registration token is not valid (expired, revoked or unknown)", prefix)


def test_the_token_opens_no_other_endpoint(fleet: Fleet) -> None:
    command = install_command(fleet, "--poll")
    token = command.split("--token ", 1)[1].split()[0]
    url = fleet.server.banner.url + "api/v1/targets"
    pin = command.split("--pinnedpubkey ", 1)[1].split()[0].strip("'")
    result = run(
        f"curl -sk --pinnedpubkey '{pin}' -H 'X-Api-Key: {token}' -w '%{{http_code}}' {url}"
    )
    assert result.out.endswith("401"), result.out
    assert "a registration token can only register targets" in result.out


def test_an_unsupported_platform_is_refused(fleet: Fleet, shared_dir: Path) -> None:
    stubs = shared_dir / "uname-stub"
    stubs.mkdir()
    uname = stubs / "uname"
    uname.write_text('#!/bin/sh\ncase "$1" in -s) echo Darwin ;; -m) echo arm64 ;; esac\n')
    uname.chmod(0o755)
    prefix = shared_dir / "darwin"
    command = install_command(fleet, "--poll") + f" --prefix {prefix} --run-as root"
    result = run(command, path=f"{stubs}:{PATH}")
    refused(
        result, "this machine is Darwin arm64; the appliance offers agents for linux-x86_64", prefix
    )


def test_curl_checks_the_ca_before_the_pin_and_enforces_the_pin_with_k(fleet: Fleet) -> None:
    """curl 7.88: ``--pinnedpubkey`` alone fails on a self-signed certificate (60); with
    ``-k`` a wrong pin is 90 and the right one passes: ``-k`` plus the pin is the safe form."""
    command = install_command(fleet, "--poll")
    pin = command.split("--pinnedpubkey ", 1)[1].split()[0].strip("'")
    url = fleet.server.banner.url + "bootstrap/agent.sh"
    assert run(f"curl -fsS --pinnedpubkey '{pin}' -o /dev/null {url}").code == 60
    assert run(f"curl -fsSk --pinnedpubkey 'sha256//AAAA{pin[12:]}' -o /dev/null {url}").code == 90
    assert run(f"curl -fsSk --pinnedpubkey '{pin}' -o /dev/null {url}").code == 0


def test_a_port_in_use_is_refused_and_the_registration_undone(
    fleet: Fleet, shared_dir: Path
) -> None:
    prefix = shared_dir / "port-in-use"
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = install_command(fleet, "--listen", str(port))
        extra = f" --public-host 127.0.0.1 --name busy-port --prefix {prefix} --run-as root"
        result = run(command + extra)
    refused(result, "octo-agent install: error: the agent stopped", prefix)
    assert "busy-port" not in targets(fleet)  # registered, then deregistered


def test_an_environment_deleted_since_is_refused(fleet: Fleet, shared_dir: Path) -> None:
    fleet.call("POST", "/environments", 201, json={"name": "Gone"})
    gone = install_command(fleet, "--poll", "--environment", "Gone")
    fleet.call("DELETE", "/environments/Gone")
    prefix = shared_dir / "gone-env"
    result = run(gone + f" --name gone --prefix {prefix} --run-as root")
    refused(result, "unknown environment", prefix)


def test_without_curl_the_script_says_so(fleet: Fleet, shared_dir: Path) -> None:
    tools = shared_dir / "no-curl"
    tools.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "curl":
            (tools / tool.name).symlink_to(tool)
    script = shared_dir / "agent.sh"
    command = install_command(fleet, "--poll")
    fetched = run(command.split(" | ")[0] + f" -o {script}")
    assert fetched.code == 0, fetched.err
    prefix = shared_dir / "no-curl-prefix"
    token = command.split("--token ", 1)[1].split()[0]
    # /bin may be /usr/bin: the stubs directory alone is the PATH
    result = run(f"sh {script} --token {token} --prefix {prefix} --run-as root", path=str(tools))
    refused(result, "octo-agent install: error: curl is needed", prefix)


def test_registration_token_commands(fleet: Fleet) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        banner = fleet.server.banner
        connect = ["--server", banner.url, "--server-thumbprint", banner.thumbprint]
        key = ["--api-key-file", str(fleet.key_file)]
        return subprocess.run(
            [*fleet.appliance_command, "registration-token", *args, *connect, *key],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": PATH},
        )

    made = cli("create", "--environment", "Dev", "--role", "web", "--max-uses", "3", "--name", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("OCTOREG-")
    token_id = made.stdout.split("Registration token ", 1)[1].split(":")[0]
    listed = cli("list", "--name", "ci")
    assert token_id in listed.stdout and "0/3" in listed.stdout and token not in listed.stdout
    assert cli("revoke", token_id).returncode == 0
    assert token_id not in cli("list").stdout
