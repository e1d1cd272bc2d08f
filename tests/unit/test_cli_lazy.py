"""The CLI imports only what the command being run needs (issue 15, section 1: start time).

``--help`` and ``version`` must not import the server: each is checked in a fresh interpreter
by looking at ``sys.modules`` afterwards, not by timing. The ``--help`` built without importing
any command module must read exactly as the one the modules build themselves, so the table in
``octo_appliance/cli/__init__.py`` cannot drift from them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys

import pytest

from octo_appliance.cli import build_parser, main, parser_for

#: what a server start needs and a help text does not
HEAVY = ("starlette", "hypercorn", "aioquic", "peewee", "psycopg", "cryptography", "jinja2")

PROBE = """
import contextlib, io, json, sys
from octo_appliance.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*argv: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after ``octo-appliance ARGV``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {name.partition(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


@pytest.mark.parametrize("argv", [["--help"], ["version"], []], ids=["help", "version", "none"])
def test_help_and_version_import_no_server_module(argv: list[str]) -> None:
    loaded = imported_by(*argv)
    assert "octo_appliance" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_version_imports_only_its_own_command_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = json.loads(done.stdout.splitlines()[-1])
    commands = {m for m in modules if m.startswith("octo_appliance.cli.")}
    assert commands == {"octo_appliance.cli.version"}


def test_the_help_without_modules_reads_as_the_modules_write_it() -> None:
    assert build_parser(load=False).format_help() == build_parser().format_help()


def test_a_named_command_gets_its_full_parser_and_nothing_else() -> None:
    parser = parser_for(["api-key", "create", "--user", "admin"])
    args = parser.parse_args(["api-key", "create", "--user", "admin"])
    assert args.command == "api-key" and args.user == "admin"
    with pytest.raises(SystemExit):
        parser.parse_args(["version"])  # only api-key was loaded


@pytest.mark.parametrize("argv", [["version"], ["no-such-command"], ["serve", "--listen"]])
def test_the_collector_paused_for_the_start_runs_again_after_it(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``main`` pauses the cyclic garbage collector while it imports the command (start time);
    whether the command ran or the arguments were refused, it collects again afterwards."""
    with contextlib.suppress(SystemExit):
        main(argv)
    capsys.readouterr()
    assert gc.isenabled()
