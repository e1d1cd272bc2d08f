"""Settings: flags > OCTO_* env > config file > default; every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from octo_appliance.config import SETTINGS, load_config, parse_host_port, resolve_data_dir
from octo_appliance.exceptions import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('listen = "127.0.0.1:1111"\nlog_level = "debug"\n')
    env = {"OCTO_DATA_DIR": str(tmp_path), "OCTO_LISTEN": "127.0.0.1:2222"}
    assert load_config({}, environ=env).listen == "127.0.0.1:2222"
    assert load_config({"listen": "127.0.0.1:3333"}, environ=env).listen == "127.0.0.1:3333"
    assert load_config({}, environ={"OCTO_DATA_DIR": str(tmp_path)}).listen == "127.0.0.1:1111"
    assert load_config({}, environ=env).log_level == "debug"
    assert load_config({}, environ=env).max_body_bytes == 1_048_576


def test_data_dir_defaults() -> None:
    assert resolve_data_dir("/x", {"OCTO_DATA_DIR": "/y"}) == Path("/x")
    assert resolve_data_dir(None, {"OCTO_DATA_DIR": "/y"}) == Path("/y")
    default = resolve_data_dir(None, {})
    assert default in (Path("/var/lib/octo-appliance"), Path.home() / ".local/share/octo-appliance")


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OCTO_LISTEN"):
        load_config({"data_dir": str(tmp_path)}, environ={"OCTO_LISTEN": "nonsense"})
    with pytest.raises(ConfigError, match="max-body-bytes"):
        load_config({"data_dir": str(tmp_path), "max_body_bytes": "-3"}, environ={})


def test_config_file_errors(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("listen = [unterminated\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({"data_dir": str(tmp_path)}, environ={})
    (tmp_path / "config.toml").write_text('lissen = "x"\n')
    with pytest.raises(ConfigError, match="unknown settings: lissen"):
        load_config({"data_dir": str(tmp_path)}, environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:8443", ("0.0.0.0", 8443)), ("[::1]:0", ("::1", 0)), ("host:1", ("host", 1))],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["8443", ":8443", "host:", "host:x", "host:70000"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_host_port(text)


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text, setting.name
        assert f"`{setting.env_var}`" in text, setting.env_var
