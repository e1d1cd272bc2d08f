"""The client commands run in-process (``cli.main``) against the stand-in appliance: package push
and list, following a task log, --help everywhere, usage errors (exit 2) and failures (exit 1)
that say what to do, never with a traceback or the API key.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.cli import client as client_module
from octo_appliance.cli import main
from octo_appliance.cli import package as package_module
from octo_appliance.cli.output import Progress, duration, log_line, size, table
from tests.unit.cli_stub import API_KEY, StubAppliance

COMMANDS = [
    ["release"],
    ["release", "create"],
    ["release", "list"],
    ["deploy"],
    ["task"],
    ["task", "show"],
    ["task", "log"],
    ["task", "cancel"],
    ["interruption"],
    ["interruption", "submit"],
    ["interruption", "list"],
    ["package"],
    ["package", "push"],
    ["package", "list"],
    ["environment", "list"],
    ["environment", "create"],
    ["environment", "show"],
    ["environment", "delete"],
    ["project", "list"],
    ["project", "create"],
    ["project", "show"],
    ["project", "delete"],
    ["variables", "list"],
    ["variables", "set"],
    ["variables", "delete"],
    ["variables", "export"],
    ["variables", "import"],
    ["process", "show"],
    ["process", "export"],
    ["process", "import"],
    ["script", "run"],
    ["target", "list"],
    ["target", "show"],
    ["target", "health-check"],
    ["target", "delete"],
    ["node", "list"],
    ["node", "drain"],
    ["node", "undrain"],
    ["lifecycle", "list"],
    ["lifecycle", "create"],
    ["lifecycle", "show"],
    ["team", "list"],
    ["team", "create"],
    ["team", "show"],
    ["team", "add-member"],
    ["team", "grant"],
    ["user", "list"],
    ["user", "create"],
    ["user", "show"],
]


@pytest.fixture
def stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubAppliance]:
    with StubAppliance(tmp_path) as appliance:
        monkeypatch.setenv("OCTO_SERVER", appliance.url)
        monkeypatch.setenv("OCTO_API_KEY", API_KEY)
        monkeypatch.setenv("OCTO_SERVER_THUMBPRINT", appliance.thumbprint)
        yield appliance


@pytest.fixture
def package_file(tmp_path: Path) -> Path:
    file = tmp_path / "Demo.1.0.0.zip"
    file.write_bytes(b"PK" + bytes(range(256)) * 64)
    return file


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert API_KEY not in out + err
    assert "Traceback" not in out + err
    return code, out, err


# -- package push / list -----------------------------------------------------------------------


def test_push_shows_progress_then_refuses_a_duplicate_until_replace(
    stub: StubAppliance, package_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "package", "push", str(package_file))
    assert code == 0, err
    assert out.startswith("Pushed Demo 1.0.0 (zip, 16.0 KiB) as pkg_")
    assert "pushing Demo.1.0.0.zip: 16.0 KiB of 16.0 KiB (100%)" in err

    code, out, err = run(capsys, "package", "push", str(package_file))
    assert code == 1
    assert "octo-appliance: error: the feed already holds Demo 1.0.0 (sha256 " in err
    assert "octo-appliance: hint: pass --replace to overwrite it" in err
    assert len(stub.recorded.uploads) == 1  # asked first: the file was not sent again

    code, out, err = run(capsys, "package", "push", str(package_file), "--replace", "--json")
    assert code == 0, err
    assert json.loads(out)["sha256"] == stub.recorded.uploads[-1]["sha256"]
    assert stub.recorded.uploads[-1]["file_name"] == "Demo.1.0.0.zip"
    assert len(stub.packages) == 1


def test_force_goes_with_replace(
    stub: StubAppliance, package_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "package", "push", str(package_file), "--force")
    assert code == 2
    assert "--force only applies with --replace" in err and "hint: add --replace" in err
    assert stub.recorded.uploads == []

    code, _, err = run(capsys, "package", "push", str(package_file))
    assert code == 0, err
    stub.pinned.add(("Demo", "1.0.0"))
    package_file.write_bytes(b"PK other content")

    code, _, err = run(capsys, "package", "push", str(package_file), "--replace")
    assert code == 1
    assert "is used by releases: Shop 1.0.0" in err
    assert "hint: push the new content as a new version, or add --force" in err

    code, _, err = run(capsys, "package", "push", str(package_file), "--replace", "--force")
    assert code == 0, err
    assert stub.recorded.uploads[-1]["query"] == {"replace": "true", "force": "true"}


def test_push_under_another_name(
    stub: StubAppliance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "build-output.zip"
    file.write_bytes(b"PK\x03\x04 archive")

    code, _, _ = run(capsys, "package", "push", str(file), "--file-name", "Web.2.0.0.zip")

    assert code == 0
    assert stub.recorded.uploads[0]["file_name"] == "Web.2.0.0.zip"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo.zip", "does not name a package id and a version"),
        ("Demo.1.0.0.rar", "does not end in a supported extension"),
        ("Demo.1.x.zip", "is not a semantic version"),
    ],
)
def test_a_badly_named_file_is_a_usage_error_and_nothing_is_sent(
    stub: StubAppliance,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    expected: str,
) -> None:
    file = tmp_path / name
    file.write_bytes(b"content")

    code, _, err = run(capsys, "package", "push", str(file))

    assert code == 2
    assert expected in err
    assert "--file-name" in err
    assert stub.recorded.api_keys == []


def test_push_of_a_missing_file(stub: StubAppliance, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "package", "push", "/nonexistent/Demo.1.0.0.zip")

    assert code == 2
    assert "/nonexistent/Demo.1.0.0.zip does not exist" in err


def test_a_wrong_key_is_refused_and_the_file_not_stored(
    stub: StubAppliance,
    package_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OCTO_API_KEY", "OCTO-not-the-right-one")

    code, _, err = run(capsys, "package", "push", str(package_file))

    assert code == 1
    assert "the appliance refused the API key" in err
    assert "OCTO-not-the-right-one" not in err
    assert stub.recorded.uploads == []


def test_a_user_who_may_not_push_is_told_before_anything_is_sent(
    stub: StubAppliance, package_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.permissions = ["package.view"]

    code, _, err = run(capsys, "package", "push", str(package_file))

    assert code == 1
    assert "error: user admin (whose API key this is) may not push packages" in err
    assert "pushing" not in err
    assert stub.recorded.uploads == []


def test_list_as_a_table_and_as_json(
    stub: StubAppliance, package_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "package", "push", str(package_file))[0] == 0

    code, out, _ = run(capsys, "package", "list", "--id", "Demo")
    assert code == 0
    assert out.splitlines() == [
        "PACKAGE  VERSION  FORMAT  SIZE      UPLOADED          BY",
        "Demo     1.0.0    zip     16.0 KiB  2030-01-02 03:04  admin",
    ]

    code, out, _ = run(capsys, "package", "list", "--json", "--id", "Other")
    assert json.loads(out) == {"items": [], "total": 0}


# -- task log --follow -------------------------------------------------------------------------


def test_task_log_follow_prints_lines_across_a_dropped_stream(
    stub: StubAppliance, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "STREAM_RETRY_SECONDS", 0.0)
    stub.stream_script = ["drop", "finish"]

    code, out, err = run(capsys, "task", "log", "task_1", "--follow")

    assert code == 0
    assert [line.split(maxsplit=2)[2] for line in out.splitlines()[:5]] == [
        f"line {n}" for n in range(1, 6)
    ]
    assert out.splitlines()[-1] == "Task task_1 success."
    assert "reconnecting after line 2" in err


def test_task_log_follow_json_is_one_document(
    stub: StubAppliance, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "task", "log", "task_1", "--follow", "--json")

    document = json.loads(out)
    assert code == 0
    assert document["state"] == "success"
    assert [line["seq"] for line in document["lines"]] == [1, 2, 3, 4, 5]


# -- usage and failures ------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])

    assert exited.value.code == 0
    assert "usage: octo-appliance " + " ".join(command) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["task", "show", "t"], {"OCTO_SERVER": ""}, "no appliance given"),
        (["task", "show", "t"], {"OCTO_API_KEY": ""}, "no API key given"),
        (["task", "show", "t", "--server", "http://x:1"], {}, "is not an https://HOST:PORT"),
        (["task", "show", "t", "--server-thumbprint", "12:34"], {}, "is not a SHA-256"),
        (["task", "show", "t", "--timeout", "0"], {}, "--timeout must be more than 0"),
        (["task", "show", "t", "--api-key", "two words"], {}, "spaces or control characters"),
        (["task", "log", "t", "--since", "-1"], {}, "--since must be 0 or more"),
        (["package", "list", "--take", "0"], {}, "--take must be between 1 and 1000"),
        (
            [
                "deploy",
                "--project",
                "p",
                "--release",
                "1",
                "--environment",
                "e",
                "--queue-time",
                "x",
            ],
            {},
            "is not an ISO 8601 time",
        ),
        (
            ["release", "create", "--project", "p", "--package", "Web"],
            {},
            "is not ID:VERSION",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_hint_before_anything_is_sent(
    stub: StubAppliance,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code, out, err = run(capsys, *args)

    assert code == 2
    assert out == ""
    assert expected in err
    assert "octo-appliance: hint: " in err
    assert stub.recorded.api_keys == []


def test_an_unknown_answer_is_an_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["interruption", "submit", "int_1", "maybe"])

    assert exited.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


def test_the_api_key_file_is_read_and_its_newline_ignored(
    stub: StubAppliance,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OCTO_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")

    code, _, _ = run(capsys, "package", "list", "--api-key-file", str(key_file), "--json")

    assert code == 0
    assert stub.recorded.api_keys == [API_KEY]


def test_an_unexpected_error_is_a_message_not_a_traceback(
    stub: StubAppliance, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def get(self, *args: Any) -> Any:
            raise RuntimeError(f"shape changed near {API_KEY}")

    monkeypatch.setattr(package_module, "open_client", lambda args: Broken())

    code, _, err = run(capsys, "package", "list")

    assert code == 1
    assert "octo-appliance: error: unexpected RuntimeError: shape changed near ********" in err
    assert "please report it" in err


# -- formatting --------------------------------------------------------------------------------


def test_formatting_helpers() -> None:
    line = {
        "seq": 3,
        "time": "2030-01-02T03:04:05.678Z",
        "level": "warning",
        "target": {"id": "tgt_1", "name": "web-1"},
        "message": "first\nsecond",
    }
    assert log_line(line) == (
        "03:04:05 warning   [web-1] first\n" + " " * len("03:04:05 warning   ") + "second"
    )
    assert [duration(x) for x in (None, 1500, 75_000, 7_500_000)] == [
        "",
        "1.5 s",
        "1 min 15 s",
        "2 h 5 min",
    ]
    assert [size(x) for x in (5, 2048, 5 * 1024**3)] == ["5 B", "2.0 KiB", "5.0 GiB"]
    assert table([["a", "bb"]], ["X", "Y"]) == ["X  Y", "a  bb"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_prints_quarters_elsewhere() -> None:
    terminal, log = _Terminal(), io.StringIO()
    on_terminal, in_log = Progress("pushing A.1.0.0.zip", terminal), Progress("pushing", log)
    for sent in range(0, 101, 5):
        on_terminal(sent, 100)
        in_log(sent, 100)

    assert terminal.getvalue().startswith("\rpushing A.1.0.0.zip: 0 B of 100 B (0%)\x1b[K")
    assert terminal.getvalue().endswith("\rpushing A.1.0.0.zip: 100 B of 100 B (100%)\x1b[K\n")
    assert terminal.getvalue().count("\n") == 1
    assert [line.rsplit("(", 1)[1] for line in log.getvalue().splitlines()] == [
        "0%)",
        "25%)",
        "50%)",
        "75%)",
        "100%)",
    ]

    stopped = _Terminal()
    cut = Progress("pushing", stopped)
    cut(10, 100)
    cut.end()
    assert stopped.getvalue().endswith("\n")


def test_an_error_raised_without_a_hint_still_prints_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from octo_appliance.cli import report_error
    from octo_appliance.exceptions import OctoError

    report_error(OctoError("it broke"))

    assert capsys.readouterr().err.splitlines() == [
        "octo-appliance: error: it broke",
        "octo-appliance: hint: see 'octo-appliance COMMAND --help' and docs/cli.md",
    ]
