"""The API key as ``octo-agent`` and the client commands read it (octo_appliance/api_key_input)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from octo_appliance.appliance_client.api_key_input import add_api_key_options, read_api_key
from octo_appliance.exceptions import ConfigError

KEY = "API-0123456789abcdef"


def parse(*argv: str, exclusive: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    group = parser.add_mutually_exclusive_group() if exclusive else parser.add_argument_group()
    add_api_key_options(group)
    return parser.parse_args(argv)


def test_the_flag_wins_over_the_file_and_the_file_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("API-from-file\n", encoding="utf-8")
    monkeypatch.setenv("OCTO_API_KEY", "API-from-env")

    both = parse("--api-key", KEY, "--api-key-file", str(key_file))
    assert read_api_key(both, missing_hint="") == KEY
    assert read_api_key(parse("--api-key-file", str(key_file)), missing_hint="") == "API-from-file"
    assert read_api_key(parse(), missing_hint="") == "API-from-env"


def test_a_file_that_is_not_text_is_named_without_its_content(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xff\xfe" + KEY.encode())

    with pytest.raises(ConfigError) as caught:
        read_api_key(parse("--api-key-file", str(key_file)), missing_hint="")

    assert str(key_file) in caught.value.message
    assert "not readable text" in caught.value.message
    assert KEY not in caught.value.message


def test_a_missing_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        read_api_key(parse("--api-key-file", str(tmp_path / "absent")), missing_hint="")


def test_no_key_gives_the_callers_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCTO_API_KEY", raising=False)

    with pytest.raises(ConfigError, match="no API key given") as caught:
        read_api_key(parse(), missing_hint="ask the operator")

    assert caught.value.hint == "ask the operator"


def test_a_key_with_spaces_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="spaces or control characters") as caught:
        read_api_key(parse("--api-key", f"{KEY} extra"), missing_hint="")

    assert KEY not in caught.value.message


def test_in_an_exclusive_group_the_flag_and_the_file_exclude_each_other() -> None:
    with pytest.raises(argparse.ArgumentError):
        parse("--api-key", KEY, "--api-key-file", "f", exclusive=True)
