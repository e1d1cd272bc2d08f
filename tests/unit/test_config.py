"""Settings: flags > OCTO_* env > config file > default; every value checked at start,
whatever its source; every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from octo_appliance.config import SETTINGS, Config, load_config, resolve_data_dir
from octo_appliance.exceptions import ConfigError
from octo_appliance.setting import parse_host_port

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


#: what the message expects -> (setting, bad value as text for a flag or env var, bad TOML
#: value); no text for a text setting (any text is good)
BAD_VALUES: dict[str, list[tuple[str, str | None, str]]] = {
    "a whole number of at least 1": [
        ("task_cap", "0", "0"),
        ("task_cap", "-2", "-2"),
        ("task_cap", "five", '"5"'),
        ("task_cap", "2.5", "2.5"),
        ("task_cap", "true", "true"),
    ],
    "true or false": [("http3", "5", "5"), ("http3", "maybe", '"yes"')],
    "HOST:PORT": [
        ("listen", "8443", "8443"),
        ("listen", "host:70000", '"host:70000"'),
        ("polling_listen", ":1", "[1]"),
    ],
    "one of debug, info, warning, error": [
        ("log_level", "loud", '"loud"'),
        ("log_level", "5", "5"),
    ],
    "text": [("worker_user", None, "0"), ("database", None, "false")],
}


def _source(kind: str, name: str, data_dir: Path) -> str:
    return {
        "flag": "--" + name.replace("_", "-"),
        "env": "OCTO_" + name.upper(),
        "file": f"{data_dir / 'config.toml'} key {name}",
    }[kind]


@pytest.mark.parametrize(
    ("kind", "name", "bad", "expected"),
    [
        pytest.param(kind, name, toml if kind == "file" else text, expected, id=f"{kind}-{name}")
        for expected, cases in BAD_VALUES.items()
        for name, text, toml in cases
        for kind in ("flag", "env", "file")
        if kind == "file" or text is not None  # any text is good for a text setting
    ],
)
def test_every_bad_value_refused_from_every_source(
    tmp_path: Path, kind: str, name: str, bad: str, expected: str
) -> None:
    flags: dict[str, str] = {"data_dir": str(tmp_path)}
    environ: dict[str, str] = {}
    if kind == "file":
        (tmp_path / "config.toml").write_text(f"{name} = {bad}\n")
    elif kind == "flag":
        flags[name] = bad
    else:
        environ["OCTO_" + name.upper()] = bad
    with pytest.raises(ConfigError) as refused:
        load_config(flags, environ=environ)
    message = refused.value.message
    assert message.startswith(_source(kind, name, tmp_path) + ": "), message
    assert message.endswith(expected) or f"expected {expected}" in message, message
    assert refused.value.hint


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("task_cap = 0", "key task_cap: got 0; expected a whole number of at least 1"),
        ("http3 = 5", "key http3: got 5; expected true or false"),
        ("listen = 8443", 'key listen: got 8443; expected HOST:PORT, like "0.0.0.0:8443"'),
    ],
)
def test_the_reported_config_file_values_are_refused(
    tmp_path: Path, line: str, message: str
) -> None:
    (tmp_path / "config.toml").write_text(line + "\n")
    with pytest.raises(ConfigError) as refused:
        load_config({"data_dir": str(tmp_path)}, environ={})
    assert refused.value.message == f"{tmp_path / 'config.toml'} {message}"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("task_cap", " 7 ", 7),
        ("http3", "off", False),
        ("builtin_worker", "YES", True),
        ("log_level", "DEBUG", "debug"),
        ("listen", "[::1]:0", "[::1]:0"),
        ("worker_user", "", None),
    ],
)
def test_text_values_are_parsed(tmp_path: Path, name: str, text: str, value: object) -> None:
    environ = {"OCTO_" + name.upper(): text}
    assert getattr(load_config({"data_dir": str(tmp_path)}, environ=environ), name) == value


def test_config_file_values_keep_their_types(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'task_cap = 3\nhttp3 = false\nlog_level = "warning"\nworker_dir = "/w"\n'
    )
    config = load_config({"data_dir": str(tmp_path)}, environ={})
    assert (config.task_cap, config.http3, config.log_level) == (3, False, "warning")
    assert config.worker_dir == "/w"
    assert config.data_path == tmp_path


def test_every_default_passes_its_own_check() -> None:
    defaults = Config()
    for setting in SETTINGS:
        if setting.name != "data_dir" and setting.default is not None:
            checked = setting.convert(setting.default, "default", text=False)
            assert checked == getattr(defaults, setting.name)


def test_settings_are_frozen(tmp_path: Path) -> None:
    config = load_config({"data_dir": str(tmp_path)}, environ={})
    with pytest.raises(AttributeError):
        config.task_cap = 9  # type: ignore[misc]


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
