"""``octo-agent register`` and ``deregister`` as subprocesses against a real appliance."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from octo_appliance.agent.home import Home
from tests.child_process import run_module
from tests.serve_process import ServeProcess


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    """A running appliance with an environment ``Dev`` and an admin API key."""
    data = tmp_path_factory.mktemp("appliance") / "data"
    with ServeProcess(data) as server:
        key = server.create_api_key()
        with server.http2_client(headers={"X-Api-Key": key}) as client:
            assert client.post("/api/v1/environments", json={"name": "Dev"}).status_code == 201
        yield server, key


def agent(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {} if key is None else {"OCTO_API_KEY": key}
    return run_module("octo_appliance.agent", *args, timeout=60, **env)


def register(
    server: ServeProcess, home: Path, *extra: str, key: str, **kw: str
) -> subprocess.CompletedProcess[str]:
    args = {
        "--server": server.url,
        "--server-thumbprint": server.banner.thumbprint,
        "--environment": "Dev",
        "--role": "web",
        "--name": home.name,
        **{f"--{k.replace('_', '-')}": v for k, v in kw.items()},
    }
    flat = [part for item in args.items() for part in item]
    return agent("register", "--home", str(home), *flat, *extra, key=key)


def test_wrong_thumbprint(appliance: tuple[ServeProcess, str], tmp_path: Path) -> None:
    server, key = appliance
    wrong = "cd" * 32

    done = register(server, tmp_path / "h", "--poll", key=key, server_thumbprint=wrong)

    assert done.returncode == 1
    assert (
        f"the server presented certificate {server.banner.thumbprint}, expected {wrong}"
        in done.stderr
    )
    assert "Traceback" not in done.stderr and key not in done.stderr + done.stdout
    assert not (tmp_path / "h" / "agent.json").exists()


@pytest.mark.parametrize(
    ("extra", "key_override", "expected"),
    [
        ((), "OCTO-not-a-key", "refused the API key"),
        (("--environment", "Nowhere"), None, "Nowhere"),
    ],
)
def test_refusals_leave_no_registration(
    appliance: tuple[ServeProcess, str],
    tmp_path: Path,
    extra: tuple[str, ...],
    key_override: str | None,
    expected: str,
) -> None:
    server, key = appliance
    home = tmp_path / "refused"

    done = register(server, home, "--poll", *extra, key=key_override or key)

    assert done.returncode == 1, done.stderr
    assert expected in done.stderr and "hint:" in done.stderr
    assert not (home / "agent.json").exists()


def test_register_run_and_deregister(appliance: tuple[ServeProcess, str], tmp_path: Path) -> None:
    server, key = appliance
    home = Home(tmp_path / "poll-real")

    done = register(server, home.root, "--poll", key=key)

    assert done.returncode == 0, done.stderr
    config = home.require_registered()
    assert config.mode == "polling" and config.polling_address
    assert key not in home.config_file.read_text() + done.stdout + done.stderr
    with server.http2_client(headers={"X-Api-Key": key}) as client:
        target = client.get(f"/api/v1/targets/{config.target_id}").json()
    assert target["thumbprint"] == home.load_identity().thumbprint

    again = register(server, tmp_path / "other", "--poll", key=key, name="poll-real")
    assert again.returncode == 1 and "conflict" in again.stderr

    gone = agent("deregister", "--home", str(home.root), key=key)
    assert gone.returncode == 0, gone.stderr
    after = home.load_config()
    assert after is not None and not after.is_registered
    with server.http2_client(headers={"X-Api-Key": key}) as client:
        assert client.get(f"/api/v1/targets/{config.target_id}").status_code == 404
