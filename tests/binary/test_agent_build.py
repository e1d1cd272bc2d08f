"""The frozen octo-agent: what is inside it, the version stamped into it, and that it does the
agent's job against a real appliance (register, connect, run a script).

The executable comes from the session fixtures of tests/conftest.py (``frozen_agent``,
``frozen_agent_of``): built by ``octo_appliance.builds.agent`` (what the appliance itself uses)
once per source hash, into the tests' build cache (tests/build_cache.py), so reruns of an
unchanged agent build nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from PyInstaller.archive.readers import CArchiveReader

from octo_appliance.builds.agent import AgentBuild
from octo_appliance.builds.manifest import load_public_key

pytestmark = [pytest.mark.binary, pytest.mark.slow]

#: what only the server needs: the issue's list, and the package's server-side units
SERVER_ONLY = (
    *("starlette", "hypercorn", "peewee", "psycopg", "psycopg_binary", "pydantic"),
    *("pydantic_core", "aioquic", "pluggy"),
    *(f"octo_appliance.{unit}" for unit in ("api", "db", "engine", "web", "appliance")),
    *(f"octo_appliance.{unit}" for unit in ("certificate", "cli", "vault", "background")),
    *(f"octo_appliance.{unit}" for unit in ("steps", "transports", "security", "backup")),
    *(f"octo_appliance.{unit}" for unit in ("testing", "install", "plugin_loading")),
    "octo_appliance.builds.agent",
    "octo_appliance.builds.signing",
    "octo_appliance.builds.serving",
)


def frozen_modules(executable: Path) -> list[str]:
    """Every module name inside a one-file PyInstaller executable: the bootstrap entries and
    extension modules of its archive (``a/b.so`` as ``a.b``) and the whole of its PYZ."""
    archive = CArchiveReader(str(executable))
    names = [name.split(".cpython")[0].split(".abi3")[0].replace("/", ".") for name in archive.toc]
    names += list(archive.open_embedded_archive("PYZ.pyz").toc)
    return sorted(set(names))


def server_only(modules: Iterable[str]) -> list[str]:
    return [
        name
        for name in modules
        if any(name == prefix or name.startswith(prefix + ".") for prefix in SERVER_ONLY)
    ]


def test_the_server_only_check_sees_what_it_must() -> None:
    listed = [
        "starlette.routing",
        "octo_appliance.api.auth",
        "octo_appliance.appliance_client.api_key_input",
    ]
    listed += ["octo_appliance.builds.manifest", "octo_appliance.builds.agent", "peewee"]

    assert server_only(listed) == [
        "starlette.routing",
        "octo_appliance.api.auth",
        "octo_appliance.builds.agent",
        "peewee",
    ]


def test_the_frozen_agent_contains_no_server_only_module(frozen_agent: AgentBuild) -> None:
    modules = frozen_modules(frozen_agent.path)

    assert "octo_appliance.agent.cli" in modules  # the listing is the real one
    assert "octo_appliance.builds.manifest" in modules  # it verifies what it downloads
    assert "octo_runner.__main__" in modules  # it runs the runner with its own interpreter
    assert server_only(modules) == []


def test_the_frozen_agent_reports_the_version_stamped_into_it(
    frozen_agent_of: Callable[[str | None], AgentBuild],
) -> None:
    stamped = frozen_agent_of("0.1.0+stamp.test")

    done = subprocess.run(
        [str(stamped.path), "version"], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("octo-agent 0.1.0+stamp.test "), done.stdout
    assert stamped.version == "0.1.0+stamp.test"


def test_the_frozen_agent_registers_connects_and_runs_a_script(
    frozen_agent: AgentBuild, tmp_path: Path
) -> None:
    from tests.fleet import running_fleet

    command = (str(frozen_agent.path),)
    with running_fleet(tmp_path, agent_command=command) as fleet:
        polling = fleet.register("poll-frozen", "polling")
        listening = fleet.register("listen-frozen", "listening")
        fleet.start_agents([polling, listening])
        fleet.wait_connected([polling])

        task = fleet.wait_task(fleet.run_script("echo from-the-frozen-agent"), timeout=120)

        assert task["state"] == "success", task
        for agent in (polling, listening):
            assert "from-the-frozen-agent" in "\n".join(fleet.log_of(task["id"], agent.name))
            config = agent.home.require_registered()
            load_public_key(config.signing_public_key)  # stored at registration
