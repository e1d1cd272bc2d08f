"""``#{...}`` substitution in files: file contents in, file contents and messages out."""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

import pytest
from octo_runner.conventions.substitute import substitute_files
from octo_runner.errors import RunnerError

from .conventions_support import Captured

VARIABLES = {"Greeting": "hello", "Port": "8080", "Env": "Prod", "Url": "http://#{Env}.local"}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"greeting=#{Greeting}\n", b"greeting=hello\n"),
        (b"port=#{port}\r\nurl=#{Url}\r\n", b"port=8080\r\nurl=http://Prod.local\r\n"),
        (b'#{if Env == "Prod"}live#{else}test#{/if}', b"live"),
        (b"#{Greeting | ToUpper} ##{Greeting}", b"HELLO #{Greeting}"),
        (codecs.BOM_UTF8 + "héllo #{Greeting}".encode(), codecs.BOM_UTF8 + "héllo hello".encode()),
        (b"left #{Missing} as is, #{Greeting}", b"left #{Missing} as is, hello"),
        (b"no templates here", b"no templates here"),
        (b"bin\x00ary #{Greeting}", b"bin\x00ary #{Greeting}"),
        (b"latin-1 \xe9 #{Greeting}", b"latin-1 \xe9 #{Greeting}"),
    ],
)
def test_file_contents(tmp_path: Path, before: bytes, after: bytes) -> None:
    target = tmp_path / "conf" / "app.conf"
    target.parent.mkdir()
    target.write_bytes(before)
    target.chmod(0o640)
    captured = Captured()
    changed = substitute_files(str(tmp_path), ["conf/*.conf"], VARIABLES, captured.writer)
    assert target.read_bytes() == after
    assert changed == (["conf/app.conf"] if after != before else [])
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(target.parent)) == ["app.conf"]  # no temp file left


def test_messages_name_files_and_missing_variables(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("#{Greeting} #{Nope} #{AlsoNope}")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe not utf-8 #{Greeting}")
    captured = Captured()
    substitute_files(str(tmp_path), ["*.txt", "*.missing"], VARIABLES, captured.writer)
    warnings = captured.logs("warning")
    assert "No file matches the substitution pattern '*.missing'" in warnings
    assert "a.txt: unresolved variable(s) left as written: Nope, AlsoNope" in warnings
    assert any(w.startswith("b.txt is not UTF-8 text") for w in warnings)
    assert "Substituted variables in 1 of 2 file(s): a.txt" in captured.logs("info")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("#{if Greeting}never closed", "never closed"),
        ("#{Greeting | NoSuchFilter}", "unknown filter"),
        ("#{LoopA}", "variable reference loop"),
    ],
)
def test_template_errors_fail_naming_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "bad.conf").write_text(text)
    variables = {**VARIABLES, "LoopA": "#{LoopB}", "LoopB": "#{LoopA}"}
    with pytest.raises(RunnerError) as caught:
        substitute_files(str(tmp_path), ["*.conf"], variables, Captured().writer)
    assert caught.value.message.startswith("cannot substitute variables in bad.conf")
    assert fragment in caught.value.message
    assert (tmp_path / "bad.conf").read_text() == text
