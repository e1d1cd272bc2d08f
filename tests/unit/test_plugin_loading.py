"""Plugins from wheels and package folders: loaded, disabled, or reported failed and skipped.

Real wheels built from tests/plugin_fixtures/ by build/build_plugins.py, real folders, the real
plugin manager; each test's imports are undone (``isolated_imports``).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from octo_appliance.config import load_config
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_loading import state
from octo_appliance.plugin_loading.wheels import file_sha256
from octo_appliance.plugins import create_plugin_manager, load_plugins
from tests.plugin_wheels import GREETING, NEEDS_MISSING, fixture_wheel, plugin_source


@pytest.fixture(autouse=True)
def isolated_imports() -> Iterator[None]:
    """Plugins imported by a test leave ``sys.modules`` and ``sys.path`` as they were."""
    modules, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def write_package(folder: Path, name: str, step: str, extra: str = "") -> Path:
    package = folder / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(plugin_source(step, extra=extra))
    return package


def load(folder: Path, **kwargs: object) -> dict[str, dict[str, object]]:
    plugins = create_plugin_manager(
        plugin_dirs=[folder], cache_dir=folder.parent / "cache", load_entry_points=False, **kwargs
    )
    return {row["name"]: row for row in plugins.describe()}


def test_a_wheel_is_unpacked_by_hash_and_loads_with_its_siblings_and_data(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    wheel = fixture_wheel(GREETING, folder)
    plugins = create_plugin_manager(
        plugin_dirs=[folder], cache_dir=tmp_path / "cache", load_entry_points=False
    )
    row = {r["name"]: r for r in plugins.describe()}[GREETING]
    assert (row["source"], row["version"], row["state"]) == ("wheel", "1.0.0", "loaded")
    assert row["step_types"] == ["greeting"]
    assert row["location"] == str(wheel)
    cls = plugins.step_types.get("greeting")
    from octo_greeting.words import greeting  # the sibling module, and its data file

    assert greeting("web") == "Hello, web, from octo-greeting 1.0.0"
    unpacked = [p.name for p in (tmp_path / "cache").iterdir()]
    assert unpacked == [file_sha256(wheel)]
    assert cls.__module__ == "octo_greeting.step"


def test_a_wheel_needing_a_missing_dependency_is_reported_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    fixture_wheel(NEEDS_MISSING, folder)
    fixture_wheel(GREETING, folder)
    rows = load(folder)
    assert rows[NEEDS_MISSING]["state"] == "failed"
    assert "octo-no-such-dependency" in str(rows[NEEDS_MISSING]["error"])
    assert rows[GREETING]["state"] == "loaded"  # the others still load
    assert "octo_needs_missing" not in sys.modules


def test_strict_makes_a_failed_plugin_an_error_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    fixture_wheel(NEEDS_MISSING, folder)
    with pytest.raises(PluginError, match=r"octo-needs-missing.*octo-no-such-dependency"):
        load(folder, strict=True)


def test_a_package_folder_loads_with_its_sibling_modules_and_version(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    package = write_package(
        folder, "octo_folderpkg", "folder-step", "from octo_folderpkg.helper import VALUE"
    )
    (package / "helper.py").write_text("VALUE = 1\n")
    (package / "__init__.py").write_text(
        (package / "__init__.py").read_text() + '__version__ = "2.1"\n'
    )
    row = load(folder)["octo-folderpkg"]
    assert (row["source"], row["version"], row["state"]) == ("folder", "2.1", "loaded")
    assert row["step_types"] == ["folder-step"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("raise RuntimeError('boom at import')", "RuntimeError: boom at import"),
        ("import octo_not_installed_anywhere", "imports 'octo_not_installed_anywhere'"),
        ("raise SystemExit(3)", "SystemExit: 3"),
    ],
    ids=["raises", "missing-module", "exits"],
)
def test_a_folder_plugin_that_fails_to_import_is_reported_and_skipped(
    tmp_path: Path, extra: str, expected: str
) -> None:
    folder = tmp_path / "plugins"
    write_package(folder, "octo_broken", "broken-step", extra)
    write_package(folder, "octo_fine", "fine-step")
    rows = load(folder)
    assert rows["octo-broken"]["state"] == "failed"
    assert expected in str(rows["octo-broken"]["error"])
    assert rows["octo-fine"]["state"] == "loaded"


def test_a_plugin_reusing_a_step_type_name_fails_and_its_other_registrations_are_undone(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "plugins"
    package = write_package(folder, "octo_dupe", "own-step")
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from octo_appliance.plugin_api import StepType, hookimpl

            OCTO_PLUGIN_API = 2

            class Own(StepType):
                name = "own-step"

            class Clash(StepType):
                name = "run-script"

            @hookimpl
            def register_step_types(registry):
                registry.add(Own)
                registry.add(Clash)
            """
        )
    )
    plugins = create_plugin_manager(
        plugin_dirs=[folder], cache_dir=tmp_path / "cache", load_entry_points=False
    )
    row = {r["name"]: r for r in plugins.describe()}["octo-dupe"]
    assert row["state"] == "failed"
    assert "'run-script' is registered twice" in str(row["error"])
    assert "octo_appliance.steps.run_script" in str(row["error"])
    assert row["step_types"] == []
    assert "own-step" not in plugins.step_types  # undone with the rest of the plugin
    assert plugins.step_types.get("run-script").__module__ == "octo_appliance.steps.run_script"
    assert not plugins.manager.has_plugin("octo-dupe")


def test_one_plugin_name_found_twice_stops_the_start_naming_both(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    wheel = fixture_wheel(GREETING, folder)
    write_package(folder, "octo_greeting", "other-greeting")
    with pytest.raises(PluginError) as caught:
        load(folder)
    assert "'octo-greeting' is installed twice" in caught.value.message
    assert str(wheel) in caught.value.message
    assert str(folder / "octo_greeting") in caught.value.message


def test_a_disabled_plugin_is_listed_and_never_imported(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    write_package(folder, "octo_off", "off-step", "raise AssertionError('imported')")
    row = load(folder, disabled={"octo-off"})["octo-off"]
    assert (row["state"], row["error"], row["step_types"]) == ("disabled", None, [])
    assert "octo_off" not in sys.modules


def test_the_setting_and_the_persisted_list_both_disable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = state.data_plugin_dir(data_dir)
    for name in ("octo_one", "octo_two", "octo_three"):
        write_package(folder, name, name.replace("_", "-"))
    assert state.set_disabled(data_dir, "octo_two", True)
    assert not state.set_disabled(data_dir, "octo-two", True)
    config = load_config(
        {"data_dir": str(data_dir)}, environ={"OCTO_DISABLED_PLUGINS": "Octo_One, "}
    )
    states = {row["name"]: row["state"] for row in load_plugins(config).describe()}
    assert states["octo-one"] == states["octo-two"] == "disabled"
    assert states["octo-three"] == "loaded"
    assert (folder / "disabled.txt").read_text() == "octo-two\n"


def _rewrite(wheel: Path, change: dict[str, bytes | None]) -> None:
    """Rewrite ``wheel`` with members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(wheel) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, data in change.items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


DIST_INFO = "octo_greeting-1.0.0.dist-info"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"},
            "not a pure-Python wheel",
        ),
        ({f"{DIST_INFO}/entry_points.txt": b""}, "no entry point in the group 'octo_appliance'"),
        ({"../escape.py": b"x = 1\n"}, "unsafe path"),
        ({f"{DIST_INFO}/METADATA": None}, "0 .dist-info"),
    ],
    ids=["platform-wheel", "no-entry-point", "unsafe-path", "no-metadata"],
)
def test_a_wheel_the_appliance_cannot_use_is_reported(
    tmp_path: Path, change: dict[str, bytes | None], expected: str
) -> None:
    folder = tmp_path / "plugins"
    _rewrite(fixture_wheel(GREETING, folder), change)
    row = load(folder)[GREETING]
    assert row["state"] == "failed"
    assert expected in str(row["error"])


@pytest.mark.parametrize(
    ("file", "content", "row_name", "expected"),
    [
        pytest.param(
            "typo.py",
            b"from octo_appliance.plugin_api import hookimpl\n\nOCTO_PLUGIN_API = 2\n\n"
            b"@hookimpl\ndef register_step_typos(registry):\n    pass\n",
            "typo",
            "register_step_typos",
            id="misspelt-hook",
        ),
        pytest.param(
            "json.py",
            b"raise AssertionError('never imported')\n",
            "json",
            "already taken",
            id="module-name-another-module-holds",
        ),
        pytest.param(
            "octo_damaged-1.0-py3-none-any.whl",
            b"not a zip",
            "octo-damaged",
            "not a readable wheel",
            id="damaged-wheel",
        ),
    ],
)
def test_a_found_file_that_is_no_working_plugin_is_reported_failed(
    tmp_path: Path, file: str, content: bytes, row_name: str, expected: str
) -> None:
    """Reported failed with why; the rest loads (a module name another module holds is
    never imported)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / file).write_bytes(content)
    row = load(folder)[row_name]
    assert row["state"] == "failed"
    assert expected in str(row["error"])


def test_hidden_files_and_other_files_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "disabled.txt").write_text("x\n")
    (folder / ".replaced-octo_x-1.0-py3-none-any.whl").write_bytes(b"")
    (folder / "notes").mkdir()
    shutil.copytree(folder / "notes", folder / "_private")
    assert {row["source"] for row in load(folder).values()} == {"builtin"}


def test_a_found_plugin_for_another_plugin_api_version_is_reported_naming_both(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "octo_old.py").write_text("OCTO_PLUGIN_API = 1\n")
    row = load(folder)["octo-old"]
    assert row["state"] == "failed"
    assert "plugin API version 1" in str(row["error"])
    assert "plugin API version 2" in str(row["error"])
