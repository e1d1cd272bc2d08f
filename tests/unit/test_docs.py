"""The docs a newcomer reads stay true to the code: ``docs/architecture.md`` names every module
of the package and no file the repository does not hold, and the CLI's help names the data
dir defaults that ``config.py`` really uses."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from octo_appliance import config
from octo_appliance.cli import main

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "octo_appliance"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: a file name a doc cites: `api/routing.py`, docs/packages.md, client.py
_CITED_FILE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|md))(?![\w/])")
_MAP_HEADING = re.compile(r"^### (?:Top level|`(?P<folder>[\w/]+)/`)\s*$")
_MAP_ROW = re.compile(r"^\| `(?P<name>[\w]+\.py)` \|")


def _holds_code(path: Path) -> bool:
    """More than a docstring (and ``from __future__``): a package ``__init__`` worth a line."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        return True
    return False


def package_modules() -> set[str]:
    """Every module of the package as a path below ``octo_appliance/``."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" or _holds_code(path)
    }


def module_map(text: str) -> list[str]:
    """The modules the "Module map" section lists, as paths below ``octo_appliance/``."""
    _, _, after = ("\n" + text).partition("\n## Module map\n")
    section = after.split("\n## ", 1)[0]
    listed: list[str] = []
    folder: str | None = None
    for line in section.splitlines():
        heading = _MAP_HEADING.match(line)
        if heading:
            folder = heading["folder"]
            continue
        row = _MAP_ROW.match(line)
        if row:
            assert line.count("|") >= 3, line
            listed.append(f"{folder}/{row['name']}" if folder else row["name"])
    return listed


def _repository_files() -> set[str]:
    found = set()
    for top in ("octo_appliance", "runner", "docs", "tests", "build", "bench", "plugins"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".md"):
                found.add(path.relative_to(ROOT).as_posix())
    found.update(path.name for path in ROOT.glob("*.md"))
    return found


def test_the_module_map_lists_every_module_once() -> None:
    listed = module_map(ARCHITECTURE.read_text(encoding="utf-8"))
    modules = package_modules()
    assert sorted(set(modules) - set(listed)) == [], "add these to docs/architecture.md"
    assert sorted(set(listed) - modules) == [], "docs/architecture.md lists modules that are gone"
    assert len(listed) == len(set(listed)), "a module is listed twice"


def test_architecture_names_only_files_the_repository_holds() -> None:
    files = _repository_files()
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [
        cited
        for cited in sorted(set(_CITED_FILE.findall(text)))
        if not any(path == cited or path.endswith("/" + cited) for path in files)
    ]
    assert missing == []


def test_the_map_check_sees_a_missing_module_and_a_stale_file() -> None:
    """The two checks above, shown to fail on a page that is wrong."""
    page = "## Module map\n\n### `engine/tasks/`\n\n| module | x |\n| --- | --- |\n"
    page += "| `task_engine.py` | tasks |\n| `gone.py` | removed |\n\n## Decisions\n"
    assert module_map(page) == ["engine/tasks/task_engine.py", "engine/tasks/gone.py"]
    assert "engine/tasks/outage.py" in package_modules() - set(module_map(page))
    assert _CITED_FILE.findall("rules in `DESIGN.md`, code in api/routing.py.") == [
        "DESIGN.md",
        "api/routing.py",
    ]


@pytest.mark.parametrize("euid", [0, 1000])
@pytest.mark.parametrize("command", [["master-key", "show"], ["master-key", "rotate"], ["backup"]])
def test_data_dir_help_names_the_real_defaults(
    command: list[str],
    euid: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    default = str(config.resolve_data_dir(None, environ={})).replace(str(Path.home()), "~")
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps, also at hyphens
    assert "$OCTO_DATA_DIR" in help_text
    assert default in help_text
