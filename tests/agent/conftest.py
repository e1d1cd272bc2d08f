"""Fixtures for the agent tests: the runner zipapp built once, identities, and a registered
agent process (listening and polling) in front of an appliance stand-in."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from octo_appliance.agent.home import Home
from octo_appliance.comms import Identity, generate_identity
from tests.runner.support import build_runner

from .support import AgentProcess, StandIn, Target, make_home

#: a version the stand-in serves with the real archive, but tasks announce another hash for
MISMATCH_VERSION = "9.9.9"


@dataclass(frozen=True)
class RunnerBuild:
    path: Path
    version: str
    sha256: str

    @property
    def ref(self) -> dict[str, str]:
        """The ``runner`` parameter of runner.run."""
        return {"version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class ApplianceIds:
    appliance: Identity
    stranger: Identity


@pytest.fixture(scope="session")
def runner_build(tmp_path_factory: pytest.TempPathFactory) -> RunnerBuild:
    out = tmp_path_factory.mktemp("runner-dist")
    info = build_runner(out)
    return RunnerBuild(Path(info["path"]), info["version"], info["sha256"])


@pytest.fixture
def pyz(tmp_path: Path, runner_build: RunnerBuild) -> Path:
    """A copy of the runner build that a test may replace."""
    path = tmp_path / "runners" / runner_build.path.name
    path.parent.mkdir()
    shutil.copy(runner_build.path, path)
    return path


@pytest.fixture(scope="session")
def appliance_ids() -> ApplianceIds:
    return ApplianceIds(
        appliance=generate_identity("appliance", ["127.0.0.1"]),
        stranger=generate_identity("stranger", ["127.0.0.1"]),
    )


@dataclass
class Agent:
    """A running agent process with one identity, and how the tests reach it."""

    process: AgentProcess
    target: Target
    standin: StandIn

    @property
    def home(self) -> Home:
        return self.target.home


@pytest.fixture(scope="module", params=["listening", "polling"])
def agent(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    runner_build: RunnerBuild,
    appliance_ids: ApplianceIds,
) -> Iterator[Agent]:
    """A real agent process in each mode, with its own home and stand-in appliance."""
    mode: str = request.param
    root = tmp_path_factory.mktemp(f"agent-{mode}")
    builds = {runner_build.version: runner_build.path, MISMATCH_VERSION: runner_build.path}
    standin = StandIn(appliance_ids.appliance, builds, root / "appliance-spool")
    process: AgentProcess | None = None
    try:
        if mode == "listening":
            home = make_home(
                root / "home", name="web-01", mode=mode, appliance=appliance_ids.appliance
            )
            process = AgentProcess([home]).start()
            port: int | None = process.listen_port("web-01")
        else:
            home_root = root / "home"
            identity = Home(home_root).create_identity()
            polling_port = standin.start_polling_listener([identity])
            home = make_home(
                home_root,
                name="poll-01",
                mode=mode,
                appliance=appliance_ids.appliance,
                polling_address=f"127.0.0.1:{polling_port}",
            )
            port = None
            process = AgentProcess([home]).start()
        target = Target(
            standin, home, port=port, thumbprint=home.load_identity().thumbprint, mode=mode
        )
        yield Agent(process, target, standin)
    finally:
        if process is not None:
            process.close()
        standin.close()
