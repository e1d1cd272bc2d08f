"""The agent home: layout, permissions, agent.json and addresses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from octo_appliance.agent.errors import AgentError
from octo_appliance.agent.home import (
    AgentConfig,
    Home,
    format_address,
    parse_address,
    parse_addresses,
)
from octo_appliance.exceptions import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:10933", ("0.0.0.0", 10933)),
        ("web-01.example.com:443", ("web-01.example.com", 443)),
        ("[::1]:10943", ("::1", 10943)),
        (" 127.0.0.1:0 ", ("127.0.0.1", 0)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
    assert parse_address(format_address(*expected)) == expected


@pytest.mark.parametrize("text", ["", "host", ":80", "host:", "host:99999", "::1:80", "a b:1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_address(text, "--listen")
    assert refused.value.hint


def test_several_polling_addresses_are_the_nodes_in_turn() -> None:
    text = "node1.example.com:10943, [::1]:10944,10.0.0.3:10943"
    assert parse_addresses(text) == [
        ("node1.example.com", 10943),
        ("::1", 10944),
        ("10.0.0.3", 10943),
    ]
    assert parse_addresses("lb.example.com:10943") == [("lb.example.com", 10943)]
    config = AgentConfig(name="a", mode="polling", polling_address=text)
    config.validate()  # kept as written in agent.json


@pytest.mark.parametrize("text", ["", "a:1,", ",a:1", "a:1,,b:2", "a:1,b"])
def test_several_polling_addresses_refuse_a_gap_or_a_bad_one(text: str) -> None:
    with pytest.raises(ConfigError, match="polling address"):
        parse_addresses(text, "polling address")


def test_layout_is_private(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.ensure()

    for path in (home.root, home.work_dir, home.cache_dir, home.runners_dir, home.logs_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def config(**extra: object) -> AgentConfig:
    values: dict[str, object] = {
        "name": "web-01",
        "mode": "listening",
        "listen": "127.0.0.1:10933",
        "target_id": "tgt_1",
        "comms_thumbprint": "AB" * 32,
        **extra,
    }
    return AgentConfig(**values)  # type: ignore[arg-type]


def test_config_round_trip(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.save_config(config(environments=["Dev"], roles=["web"]))

    loaded = home.load_config()

    assert loaded == config(environments=["Dev"], roles=["web"], comms_thumbprint="ab" * 32)
    assert loaded is not None and loaded.is_registered
    assert stat.S_IMODE(home.config_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in home.root.iterdir() if p.is_file()) == ["agent.json"]


def test_a_missing_config_is_none_and_run_needs_one(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    assert home.load_config() is None
    with pytest.raises(AgentError) as refused:
        home.require_registered()
    assert "register" in (refused.value.hint or "")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"name": "x"}', "'mode' is missing"),
        ('{"name": "x", "mode": "carrier-pigeon"}', "neither listening nor polling"),
        ('{"name": "x", "mode": "polling", "roles": "web"}', "'roles' must be a list"),
        ('{"name": "x", "mode": "polling", "comms_thumbprint": "xyz"}', "not a SHA-256"),
        ('{"name": "x", "mode": "polling", "format": 7}', "format 7"),
    ],
)
def test_broken_config_is_a_clear_error(tmp_path: Path, content: str, why: str) -> None:
    home = Home(tmp_path / "h")
    home.ensure()
    home.config_file.write_text(content)

    with pytest.raises(ConfigError) as broken:
        home.load_config()

    assert why in broken.value.message
    assert broken.value.hint


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.ensure()
    home.config_file.write_text(json.dumps({**config().to_json(), "added_later": 1}))

    assert home.require_registered().name == "web-01"


def test_without_registration_keeps_the_agent_settings() -> None:
    plain = config(server_url="https://a:1", roles=["web"]).without_registration()

    assert not plain.is_registered
    assert (plain.name, plain.mode, plain.listen) == ("web-01", "listening", "127.0.0.1:10933")
    assert plain.server_url == "" and plain.roles == []


def test_identity_is_created_once(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    first = home.load_or_create_identity()

    assert home.load_or_create_identity().thumbprint == first.thumbprint
    with pytest.raises(AgentError):
        home.create_identity()
    assert home.create_identity(force=True).thumbprint != first.thumbprint
    assert stat.S_IMODE(home.key_file.stat().st_mode) == 0o600


def test_agent_certificates_have_distinct_subjects(tmp_path: Path) -> None:
    """An appliance trusts many agents at once; OpenSSL picks trust anchors by subject name."""
    subjects = {
        x509.load_pem_x509_certificate(Home(tmp_path / str(i)).create_identity().cert_pem).subject
        for i in range(3)
    }
    assert len(subjects) == 3
