"""Pinned trust, shutdown and several identities in one agent process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from octo_appliance.agent.home import Home
from octo_appliance.comms import CommsError, HandshakeError
from tests.child_process import alive, has_sleep

from .conftest import ApplianceIds, RunnerBuild
from .support import AgentProcess, StandIn, Target, make_home, wait_for
from .test_agent_process import script_params


@pytest.fixture
def standin(
    tmp_path: Path, appliance_ids: ApplianceIds, runner_build: RunnerBuild
) -> Iterator[StandIn]:
    stand_in = StandIn(
        appliance_ids.appliance, {runner_build.version: runner_build.path}, tmp_path / "spool"
    )
    yield stand_in
    stand_in.close()


@pytest.fixture
def processes() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for process in started:
        process.close()


@dataclass
class ListeningWeb:
    """A listening agent ``web`` that pins the appliance, in its own process, and the
    appliance's stand-in dialing it."""

    home: Home
    process: AgentProcess
    target: Target


@pytest.fixture
def listening_web(
    tmp_path: Path, appliance_ids: ApplianceIds, standin: StandIn, processes: list[AgentProcess]
) -> ListeningWeb:
    home = make_home(
        tmp_path / "home", name="web", mode="listening", appliance=appliance_ids.appliance
    )
    process = AgentProcess([home]).start()
    processes.append(process)
    target = Target(
        standin,
        home,
        port=process.listen_port("web"),
        thumbprint=home.load_identity().thumbprint,
        mode="listening",
    )
    return ListeningWeb(home, process, target)


def test_listening_agent_drops_an_appliance_it_does_not_pin(
    tmp_path: Path, appliance_ids: ApplianceIds, listening_web: ListeningWeb
) -> None:
    home, process = listening_web.home, listening_web.process
    impostor = StandIn(appliance_ids.stranger, {}, tmp_path / "impostor-spool")
    try:
        with pytest.raises(HandshakeError):
            impostor.run(impostor.dial(process.listen_port("web"), home.load_identity().thumbprint))
    finally:
        impostor.close()

    # nothing reached a handler, and the pinned appliance is still served
    assert not any(home.work_dir.iterdir()) and not any(home.runners_dir.iterdir())
    assert listening_web.target.call("agent.info", {}).result["name"] == "web"


def test_polling_agent_refuses_an_appliance_with_another_certificate(
    tmp_path: Path,
    appliance_ids: ApplianceIds,
    processes: list[AgentProcess],
) -> None:
    home_root = tmp_path / "home"
    impostor = StandIn(appliance_ids.stranger, {}, tmp_path / "spool")
    try:
        agent_identity = Home(home_root).create_identity()
        # the impostor would accept the agent: only the agent's pin can stop the exchange
        port = impostor.start_polling_listener([agent_identity])
        home = make_home(
            home_root,
            name="poll",
            mode="polling",
            appliance=appliance_ids.appliance,
            polling_address=f"127.0.0.1:{port}",
        )
        processes.append(AgentProcess([home]).start())

        wait_for(
            lambda: "other than the pinned one" in home.log_file.read_text(),
            20,
            "the agent to refuse the impostor",
        )
        assert impostor.hub is not None and impostor.hub.connected_agents == []
        assert impostor.server is not None and not impostor.server.connections
    finally:
        impostor.close()


def test_sigterm_stops_the_agent_and_kills_running_scripts(
    runner_build: RunnerBuild, listening_web: ListeningWeb
) -> None:
    home, process, target = listening_web.home, listening_web.process, listening_web.target
    started = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event.get("message") == "started":
            started.set()

    call = target.submit(
        "runner.run", script_params(runner_build, "echo started\nsleep 60"), on_event=on_event
    )
    assert started.wait(30)
    wait_for(lambda: has_sleep(psutil.Process(process.pid)), 20, "the script to start sleep")
    tree = psutil.Process(process.pid).children(recursive=True)

    assert process.stop(signal.SIGTERM, timeout=20) == 0

    with pytest.raises(CommsError):
        call.result(20)
    wait_for(lambda: not any(alive(p) for p in tree), 20, "the script's processes to go")
    assert "stopped" in home.log_file.read_text()


def test_one_process_hosts_several_identities(
    tmp_path: Path,
    appliance_ids: ApplianceIds,
    runner_build: RunnerBuild,
    standin: StandIn,
    processes: list[AgentProcess],
) -> None:
    # two polling identities behind one listener: its trust store holds both certificates
    polling = [Home(tmp_path / d).create_identity() for d in ("b", "c")]
    port = standin.start_polling_listener(polling)
    modes = {"alpha": "listening", "beta": "polling", "gamma": "polling"}
    homes = [
        make_home(
            tmp_path / directory,
            name=name,
            mode=modes[name],
            appliance=appliance_ids.appliance,
            polling_address=f"127.0.0.1:{port}",
        )
        for directory, name in (("a", "alpha"), ("b", "beta"), ("c", "gamma"))
    ]
    process = AgentProcess(homes).start()
    processes.append(process)
    targets = [
        Target(
            standin,
            home,
            port=process.listen_port(name) if modes[name] == "listening" else None,
            thumbprint=home.load_identity().thumbprint,
            mode=modes[name],
        )
        for home, name in zip(homes, modes, strict=True)
    ]

    names = [t.call("agent.info", {}).result["name"] for t in targets]
    results = [t.call("runner.run", script_params(runner_build, "echo hi")).result for t in targets]

    assert names == ["alpha", "beta", "gamma"]
    assert all(r["success"] for r in results)
    assert all(
        Path(r["work_dir"]).parent == h.work_dir for r, h in zip(results, homes, strict=True)
    )
    # the runner was fetched by each identity into its own home
    assert standin.fetches[runner_build.version] == 3
    alpha_log, beta_log = homes[0].log_file.read_text(), homes[1].log_file.read_text()
    assert "[alpha@a]" in alpha_log and "[beta@b]" not in alpha_log
    assert "[beta@b]" in beta_log and "[alpha@a]" not in beta_log


def test_a_listen_address_in_use_is_a_clear_error(
    tmp_path: Path, appliance_ids: ApplianceIds
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = make_home(
            tmp_path / "home",
            name="web",
            mode="listening",
            appliance=appliance_ids.appliance,
            listen=f"127.0.0.1:{port}",
        )
        done = subprocess.run(
            [sys.executable, "-m", "octo_appliance.agent", "run", "--home", str(home.root)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
