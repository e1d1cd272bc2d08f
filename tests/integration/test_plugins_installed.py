"""Plugins installed into a data dir: the ``plugin`` commands (subprocesses, as an operator
runs them), and ``serve`` loading them, reporting the broken ones and deploying a wheel's step
type on real agents."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cli_support import TIMEOUT
from tests.fleet import clean_env, running_fleet
from tests.plugin_scenario import fill_plugins_folder, run_plugin_scenario
from tests.plugin_wheels import GREETING, NEEDS_MISSING, fixture_wheel
from tests.serve_process import ServeFailed, ServeProcess


def plugin_cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "octo_appliance", "plugin", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(**env),
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def states(data_dir: Path, **env: str) -> dict[str, str]:
    done = plugin_cli(data_dir, "list", "--json", **env)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row["state"] for row in json.loads(done.stdout)["items"]}


def failed_with(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "octo-appliance: error: " in done.stderr
    assert "octo-appliance: hint: " in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_install_list_disable_enable_remove(tmp_path: Path) -> None:
    data_dir, wheels = tmp_path / "data", tmp_path / "wheels"
    greeting, missing = fixture_wheel(GREETING, wheels), fixture_wheel(NEEDS_MISSING, wheels)
    failed_with(plugin_cli(data_dir, "install", str(greeting)), "no data dir")
    data_dir.mkdir()

    done = plugin_cli(data_dir, "install", str(greeting))
    assert done.returncode == 0, done.stderr
    assert "Installed octo-greeting 1.0.0 (step types: greeting)" in done.stdout
    assert "Restart the appliance" in done.stdout
    assert states(data_dir)[GREETING] == "loaded"
    text = plugin_cli(data_dir, "list").stdout
    assert "octo-greeting" in text and "step types: greeting" in text

    failed_with(plugin_cli(data_dir, "install", str(missing)), "octo-no-such-dependency")
    assert not (data_dir / "plugins" / missing.name).exists()

    failed_with(plugin_cli(data_dir, "disable", "octo-nothing"), "no plugin named 'octo-nothing'")
    assert plugin_cli(data_dir, "disable", "octo_greeting").returncode == 0
    assert states(data_dir)[GREETING] == "disabled"
    assert plugin_cli(data_dir, "enable", GREETING).returncode == 0
    assert states(data_dir)[GREETING] == "loaded"
    assert states(data_dir, OCTO_DISABLED_PLUGINS="octo-greeting")[GREETING] == "disabled"

    done = plugin_cli(data_dir, "remove", GREETING)
    assert done.returncode == 0, done.stderr
    assert GREETING not in states(data_dir)
    assert list((data_dir / "plugin-cache").iterdir()) == []
    failed_with(plugin_cli(data_dir, "remove", GREETING), "no plugin named 'octo-greeting'")


def test_a_replacement_that_does_not_load_leaves_the_installed_version(tmp_path: Path) -> None:
    data_dir, wheels = tmp_path / "data", tmp_path / "wheels"
    data_dir.mkdir()
    greeting = fixture_wheel(GREETING, wheels)
    assert plugin_cli(data_dir, "install", str(greeting)).returncode == 0
    broken = wheels / "octo_greeting-1.0.1-py3-none-any.whl"
    with zipfile.ZipFile(greeting) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "octo_greeting/__init__.py":
                data = b"raise RuntimeError('the new version is broken')\n"
            target.writestr(name, data)
    failed_with(plugin_cli(data_dir, "install", str(broken)), "the new version is broken")
    assert sorted(p.name for p in (data_dir / "plugins").iterdir()) == [greeting.name]
    assert states(data_dir)[GREETING] == "loaded"


def test_strict_refuses_to_start_naming_the_broken_plugins(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fill_plugins_folder(data_dir / "plugins")
    server = ServeProcess(data_dir, env={"OCTO_PLUGINS_STRICT": "true"})
    with pytest.raises(ServeFailed) as caught:
        server.start()
    server.__exit__(None, None, None)
    message = str(caught.value)
    assert "plugins failed to load" in message
    assert "octo-broken" in message and "octo-needs-missing" in message
    assert "Traceback" not in message


@pytest.mark.slow
def test_serve_lists_skips_the_broken_and_deploys_a_wheels_step_type(tmp_path: Path) -> None:
    fill_plugins_folder(tmp_path / "fleet" / "appliance-data" / "plugins")
    with running_fleet(tmp_path / "fleet") as fleet:
        run_plugin_scenario(fleet)
        assert "Traceback" not in fleet.server.output()
