"""``octo-agent`` commands: certificates, register/deregister against a scripted HTTPS API (every
answer the appliance may give), and the systemd unit. test_register_real.py uses a real one."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.agent.cli import main
from octo_appliance.agent.home import Home
from octo_appliance.comms import Identity, generate_identity

from .support import FakeApi

API_KEY = "API-TESTKEY0123456789"
REGISTER = ("POST", "/api/v1/targets/register")


@pytest.fixture(scope="module")
def api_identity() -> Identity:
    return generate_identity("fake-appliance", ["127.0.0.1"])


@pytest.fixture
def api(api_identity: Identity) -> Iterator[FakeApi]:
    server = FakeApi(api_identity)
    yield server
    server.close()


def registered_body(api: FakeApi, **extra: Any) -> dict[str, Any]:
    return {
        "id": "tgt_123",
        "name": "web-01",
        "server_thumbprint": api.identity.thumbprint,
        "server_certificate": api.identity.cert_pem.decode(),
        "polling_address": "127.0.0.1:10943",
        **extra,
    }


def register_args(
    home: Path, api: FakeApi, *style: str, thumbprint: str | None = None
) -> list[str]:
    return [
        "register",
        "--home",
        str(home),
        "--server",
        api.url,
        "--server-thumbprint",
        thumbprint or api.identity.thumbprint,
        "--environment",
        "Dev",
        "--environment",
        "Test",
        "--role",
        "web",
        "--name",
        "web-01",
        *(style or ("--listen", "127.0.0.1:10933")),
    ]


def test_new_certificate_and_show_thumbprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "h"
    assert main(["new-certificate", "--home", str(home)]) == 0
    created = capsys.readouterr().out

    assert main(["show-thumbprint", "--home", str(home)]) == 0
    thumbprint = capsys.readouterr().out.strip()
    assert f"thumbprint: {thumbprint}" in created
    assert stat.S_IMODE((home / "identity" / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "identity").stat().st_mode) == 0o700

    assert main(["new-certificate", "--home", str(home)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["new-certificate", "--home", str(home), "--force"]) == 0
    assert thumbprint not in capsys.readouterr().out


def test_show_thumbprint_without_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show-thumbprint", "--home", str(tmp_path / "none")]) == 1
    assert "new-certificate" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("octo-agent 0.1.0")


def test_register_listening(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    home = Home(tmp_path / "h")

    code = main(
        [*register_args(home.root, api, "--listen", "127.0.0.1:10933"), "--api-key", API_KEY]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    [sent] = api.requests
    assert sent["api_key"] == API_KEY
    identity = home.load_identity()
    assert sent["body"] == {
        "name": "web-01",
        "environments": ["Dev", "Test"],
        "roles": ["web"],
        "communication_style": "listening",
        "uri": "https://127.0.0.1:10933",
        "thumbprint": identity.thumbprint,
        "certificate": identity.cert_pem.decode(),
        "agent_version": "0.1.0",
    }
    config = home.require_registered()
    assert (config.target_id, config.mode, config.listen) == (
        "tgt_123",
        "listening",
        "127.0.0.1:10933",
    )
    assert config.comms_thumbprint == api.identity.thumbprint
    assert stat.S_IMODE(home.config_file.stat().st_mode) == 0o600
    assert "tgt_123" in out
    assert API_KEY not in out + err
    assert API_KEY not in home.config_file.read_text()


def test_register_polling_takes_the_key_from_a_file(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.responses[REGISTER] = (201, registered_body(api, polling_address="octo.example:10943"))
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    home = Home(tmp_path / "h")

    code = main([*register_args(home.root, api, "--poll"), "--api-key-file", str(key_file)])

    assert code == 0, capsys.readouterr().err
    assert api.requests[0]["api_key"] == API_KEY
    assert "uri" not in api.requests[0]["body"]
    assert api.requests[0]["body"]["communication_style"] == "polling"
    config = home.require_registered()
    assert (config.mode, config.polling_address) == ("polling", "octo.example:10943")


def test_register_polling_address_flag_wins_and_key_comes_from_env(
    tmp_path: Path, api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    monkeypatch.setenv("OCTO_API_KEY", API_KEY)
    home = Home(tmp_path / "h")

    args = register_args(home.root, api, "--poll", "--polling-address", "10.0.0.5:443")
    assert main(args) == 0

    assert api.requests[0]["api_key"] == API_KEY
    assert home.require_registered().polling_address == "10.0.0.5:443"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"error": {"code": "unauthenticated", "message": "bad API key"}},
            "refused the API key",
        ),
        (
            422,
            {
                "error": {
                    "code": "validation_failed",
                    "message": "unknown environments: Dev",
                    "details": [{"field": "environments", "message": "no environment 'Dev'"}],
                }
            },
            "unknown environments: Dev",
        ),
        (
            409,
            {"error": {"code": "conflict", "message": "a target named 'web-01' exists"}},
            "conflict",
        ),
        (500, {"error": {"code": "server_error", "message": "boom"}}, "answered"),
    ],
)
def test_register_failures_leave_no_registration(
    tmp_path: Path,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: dict[str, Any],
    expected: str,
) -> None:
    api.responses[REGISTER] = (status, body)
    home = Home(tmp_path / "h")

    code = main([*register_args(home.root, api), "--api-key", API_KEY])

    err = capsys.readouterr().err
    assert code == 1
    assert expected in err
    assert "octo-agent: hint: " in err
    assert len(err.strip().splitlines()) == 2
    assert API_KEY not in err
    assert not home.config_file.exists()


def test_register_refuses_a_server_with_another_certificate(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "ab" * 32
    home = Home(tmp_path / "h")

    code = main([*register_args(home.root, api, thumbprint=wrong), "--api-key", API_KEY])

    err = capsys.readouterr().err
    assert code == 1
    assert f"the server presented certificate {api.identity.thumbprint}, expected {wrong}" in err
    assert api.requests == []  # the key never left
    assert not home.config_file.exists()


def test_register_refuses_when_already_registered(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    home = Home(tmp_path / "h")
    assert main([*register_args(home.root, api), "--api-key", API_KEY]) == 0

    assert main([*register_args(home.root, api), "--api-key", API_KEY]) == 1
    assert "already registered" in capsys.readouterr().err
    assert main([*register_args(home.root, api), "--api-key", API_KEY, "--force"]) == 0
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (("--listen", "0.0.0.0:10933"), "--public-host"),
        (("--listen", "127.0.0.1:0"), "fixed port"),
        (("--listen", "nonsense"), "HOST:PORT"),
    ],
)
def test_register_usage_errors_send_nothing(
    tmp_path: Path,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    style: tuple[str, ...],
    expected: str,
) -> None:
    code = main([*register_args(tmp_path / "h", api, *style), "--api-key", API_KEY])

    assert code == 2
    assert expected in capsys.readouterr().err
    assert api.requests == []


def test_register_without_a_key(
    tmp_path: Path,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OCTO_API_KEY", raising=False)
    assert main(register_args(tmp_path / "h", api)) == 2
    assert "no API key" in capsys.readouterr().err


def test_register_with_a_public_host(tmp_path: Path, api: FakeApi) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    args = register_args(
        tmp_path / "h", api, "--listen", "0.0.0.0:10933", "--public-host", "web-01.lan"
    )

    assert main([*args, "--api-key", API_KEY]) == 0
    assert api.requests[0]["body"]["uri"] == "https://web-01.lan:10933"


def test_deregister(tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    home = Home(tmp_path / "h")
    assert main([*register_args(home.root, api), "--api-key", API_KEY]) == 0
    thumbprint = home.load_identity().thumbprint

    api.responses[("DELETE", "/api/v1/targets/tgt_123")] = (401, {"error": {"message": "no"}})
    assert main(["deregister", "--home", str(home.root), "--api-key", "wrong"]) == 1
    assert home.require_registered().target_id == "tgt_123"

    api.responses[("DELETE", "/api/v1/targets/tgt_123")] = (200, {"deleted": True})
    capsys.readouterr()
    assert main(["deregister", "--home", str(home.root), "--api-key", API_KEY]) == 0

    assert "deleted target tgt_123" in capsys.readouterr().out
    assert api.requests[-1]["method"] == "DELETE" and api.requests[-1]["api_key"] == API_KEY
    config = home.load_config()
    assert config is not None and not config.is_registered and config.name == "web-01"
    assert home.load_identity().thumbprint == thumbprint
    assert main(["deregister", "--home", str(home.root), "--api-key", API_KEY]) == 1


def test_deregister_a_target_the_appliance_forgot(
    tmp_path: Path, api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    home = Home(tmp_path / "h")
    assert main([*register_args(home.root, api), "--api-key", API_KEY]) == 0

    assert main(["deregister", "--home", str(home.root), "--api-key", API_KEY]) == 0

    assert "no longer knew" in capsys.readouterr().out
    config = home.load_config()
    assert config is not None and not config.is_registered


def test_run_refuses_an_unregistered_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--home", str(tmp_path / "h")]) == 1
    assert "not registered" in capsys.readouterr().err


def test_service_install(
    tmp_path: Path,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    home = tmp_path / "home dir"
    assert main([*register_args(home, api), "--api-key", API_KEY]) == 0
    units = tmp_path / "units"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no systemctl: commands are printed
    capsys.readouterr()

    args = ["service", "install", "--home", str(home), "--unit-dir", str(units), "--user", "octo"]
    assert main([*args, "--enable"]) == 0

    out = capsys.readouterr().out
    unit = (units / "octo-agent.service").read_text()
    assert "User=octo\n" in unit
    assert "KillMode=mixed" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(f"run --supervise --home '{home}'")
    assert "systemctl enable --now octo-agent.service" in out
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_agent_json_is_plain_json(tmp_path: Path, api: FakeApi) -> None:
    api.responses[REGISTER] = (201, registered_body(api))
    home = Home(tmp_path / "h")
    assert main([*register_args(home.root, api), "--api-key", API_KEY]) == 0

    data = json.loads(home.config_file.read_text())

    assert data["format"] == 1
    assert data["server_url"] == api.url
    assert data["api_thumbprint"] == api.identity.thumbprint
    assert [p.name for p in home.root.iterdir() if p.name.startswith(".")] == []
