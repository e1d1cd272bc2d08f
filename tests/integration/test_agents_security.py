"""Trust and secrets with real processes: untrusted certificates are dropped on both ports, an
agent refuses an appliance other than the pinned one, a deleted target is cut off, and a
sensitive variable never shows up unmasked anywhere it could travel.
"""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from octo_appliance.comms import (
    CommsError,
    Identity,
    LocalHello,
    PeerRejected,
    connect,
)
from octo_appliance.engine.health import KIND as HEALTH_CHECK
from tests.agent.support import StandIn
from tests.dialing import SETTINGS, dial, pinned_thumbprint, stranger_identity
from tests.fleet import Fleet, FleetAgent, running_fleet, wait_until
from tests.integration.test_canary import leaks
from tests.strays import stray_processes

AGENT_HELLO = LocalHello(role="agent", id="tgt_intruder")
APPLIANCE_HELLO = LocalHello(role="appliance", id="intruder")
REFUSED_PIN = "presented a certificate other than the pinned one"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    # the appliance logs at debug level: the canary must not show up in its most verbose log
    root = tmp_path_factory.mktemp("security")
    with running_fleet(root, serve_env={"OCTO_LOG_LEVEL": "debug"}) as fleet:
        fleet.register_many(
            [
                ("listen-1", "listening"),
                ("poll-1", "polling"),
                ("listen-r", "listening", ["rev"]),
                ("poll-r", "polling", ["rev"]),
                ("poll-ctl", "polling", ["ctl"]),  # registered, never run
                ("poll-fake", "polling", ["fake"]),  # run in its test, against an impostor
            ]
        )
        running = [fleet.agents[n] for n in ("listen-1", "poll-1", "listen-r", "poll-r")]
        fleet.start_agents(running, together=True)
        yield fleet


@pytest.fixture(scope="module")
def stranger() -> Identity:
    return stranger_identity()


def dial_and_call(port: int, identity: Identity, pinned: str) -> Any:
    async def go() -> Any:
        conn = await connect(
            "127.0.0.1", port, identity, pinned, hello=APPLIANCE_HELLO, settings=SETTINGS
        )
        try:
            return (await conn.call("agent.info", {}, timeout=20)).result
        finally:
            conn.close("done")
            await conn.wait_closed()

    return asyncio.run(go())


def work_entries(fleet: Fleet, agent: FleetAgent) -> list[str]:
    """The agent's task work dirs, but those of health checks: a registration queues one at
    once (and a listening agent's may land while a test runs), and they run no one's code."""
    names = sorted(p.name for p in agent.home.work_dir.iterdir())
    return [n for n in names if fleet.task(n.rsplit("-", 1)[0])["kind"] != HEALTH_CHECK]


# -- untrusted certificates ------------------------------------------------------------------


def test_polling_listener_drops_an_unregistered_certificate(
    fleet: Fleet, stranger: Identity
) -> None:
    ctl = fleet.agents["poll-ctl"]
    port, pinned = fleet.server.banner.polling_port, pinned_thumbprint(ctl)

    with pytest.raises(PeerRejected, match="does not trust this side's certificate"):
        dial(port, stranger, pinned, AGENT_HELLO)

    # the same dial with a registered agent's certificate is let in: it is the certificate
    assert dial(port, ctl.home.load_identity(), pinned, AGENT_HELLO)["peer"] == pinned


def test_listening_agent_drops_a_client_that_is_not_the_appliance(
    fleet: Fleet, stranger: Identity
) -> None:
    agent = fleet.agents["listen-1"]
    assert agent.listen_port is not None
    thumbprint = agent.home.load_identity().thumbprint
    before = work_entries(fleet, agent)

    with pytest.raises(PeerRejected, match="does not trust this side's certificate"):
        dial_and_call(agent.listen_port, stranger, thumbprint)

    # the appliance's own certificate is served: the refusal was about the client certificate
    info = dial_and_call(agent.listen_port, fleet.appliance_identity(), thumbprint)
    assert info["name"] == "listen-1" and info["target_id"] == agent.target_id
    assert work_entries(fleet, agent) == before


@pytest.mark.slow
def test_agent_refuses_an_appliance_with_another_certificate(
    fleet: Fleet, stranger: Identity, tmp_path: Path
) -> None:
    """A comms server with another identity, which *would* accept the agent, on the address
    the agent dials: the agent refuses it before sending anything and never runs a thing."""
    agent = fleet.agents["poll-fake"]
    impostor = StandIn(stranger, {}, tmp_path / "spool")
    try:
        port = impostor.start_polling_listener([agent.home.load_identity()])
        config = agent.home.require_registered()
        config.polling_address = f"127.0.0.1:{port}"
        agent.home.save_config(config)
        fleet.start_agents([agent])

        wait_until(
            lambda: agent.log_file.read_text().count(REFUSED_PIN) >= 2,
            30,
            "the agent to refuse the impostor twice",
        )

        assert impostor.server is not None and impostor.hub is not None
        assert not impostor.server.connections
        assert not impostor.hub.connected_agents
        assert work_entries(fleet, agent) == []
        assert agent.process is not None and agent.process.process is not None
        assert agent.process.process.poll() is None  # it keeps trying, it does not crash
    finally:
        if agent.process is not None:
            agent.process.close()
        impostor.close()


# -- revocation ------------------------------------------------------------------------------


def test_a_deleted_target_is_cut_off(fleet: Fleet) -> None:
    listen, poll = fleet.agents["listen-r"], fleet.agents["poll-r"]
    task = fleet.wait_task(fleet.run_script("echo still trusted", roles=["rev"]))
    assert task["state"] == "success"
    offsets = {a.name: len(a.log_file.read_bytes()) for a in (listen, poll)}
    before = {a.name: work_entries(fleet, a) for a in (listen, poll)}

    for agent in (listen, poll):
        response = fleet.api().delete(f"/api/v1/targets/{agent.target_id}")
        assert response.status_code == 200, response.text

    def log_since(agent: FleetAgent) -> str:
        return agent.log_file.read_bytes()[offsets[agent.name] :].decode(errors="replace")

    # the live connections are dropped by the appliance...
    wait_until(lambda: "the target was removed" in log_since(poll), 15, "poll-r's drop")
    wait_until(lambda: "the target was removed" in log_since(listen), 15, "listen-r's drop")
    # ...and the polling agent's reconnects are refused
    wait_until(
        lambda: log_since(poll).count("does not trust this side's certificate") >= 2,
        30,
        "poll-r to be refused twice on reconnecting",
    )
    assert "connected to" not in log_since(poll)
    with pytest.raises(CommsError):
        dial(
            fleet.server.banner.polling_port,
            poll.home.load_identity(),
            pinned_thumbprint(poll),
            AGENT_HELLO,
        )
    # nothing can be queued for them any more
    for payload in (
        {"targets": [listen.target_id, poll.target_id]},
        {"environment": "Dev", "roles": ["rev"]},
    ):
        response = fleet.api().post(
            "/api/v1/scripts", json={"syntax": "bash", "body": "echo revoked", **payload}
        )
        assert response.status_code == 422, response.text
    assert {a.name: work_entries(fleet, a) for a in (listen, poll)} == before


# -- a sensitive variable --------------------------------------------------------------------

CANARY_SCRIPT = """\
touch "#{Gate}/running"
for i in $(seq 1 300); do [ -e "#{Gate}/go" ] && break; sleep 0.1; done
echo "substituted: #{Secret}"
echo "from the helper: $(get_octovariable Secret)"
echo "on stderr: #{Secret}" >&2
echo "plain: #{Plain}"
set_octovariable Derived "x-#{Secret}-x"
set_octovariable Hidden "#{Secret}" -sensitive
"""


class StreamReader(threading.Thread):
    """Follows ``GET /tasks/{id}/log/stream`` to its end, keeping the raw text."""

    def __init__(self, fleet: Fleet, task_id: str) -> None:
        super().__init__(daemon=True)
        self.client = fleet.server.http2_client(
            headers={"X-Api-Key": fleet.api_key}, timeout=httpx.Timeout(60.0)
        )
        self.path = f"/api/v1/tasks/{task_id}/log/stream"
        self.text = ""
        self.connected = threading.Event()

    def run(self) -> None:
        with self.client, self.client.stream("GET", self.path) as response:
            assert response.status_code == 200
            self.connected.set()
            for chunk in response.iter_text():
                self.text += chunk


def test_a_sensitive_value_never_leaves_unmasked(fleet: Fleet) -> None:
    canary = "canary-" + secrets.token_hex(12)
    marker = "marker-" + secrets.token_hex(12)
    gate = fleet.root / "gate"
    gate.mkdir()
    agents = [fleet.agents["listen-1"], fleet.agents["poll-1"]]

    task_id = fleet.run_script(
        CANARY_SCRIPT,
        roles=["web"],
        variables={
            "Secret": {"value": canary, "sensitive": True},
            "Plain": marker,
            "Gate": str(gate),
        },
    )
    stream = StreamReader(fleet, task_id)
    stream.start()
    assert stream.connected.wait(30)
    wait_until(lambda: (gate / "running").exists(), 30, "the scripts to start")
    # while they run: no process shows the value in its arguments or environment
    running = stray_processes(fleet.root)
    assert any("bootstrap" in " ".join(p.cmdline()) for p in running)
    for proc in running:
        assert canary not in exposed(proc), proc.cmdline()
    (gate / "go").touch()
    task = fleet.wait_task(task_id)
    stream.join(60)

    assert task["state"] == "success", fleet.log(task_id)
    lines = [line["message"] for line in fleet.log(task_id)]
    for expected in ("substituted: ********", "from the helper: ********", "on stderr: ********"):
        assert lines.count(expected) == 2, lines
    assert lines.count(f"plain: {marker}") == 2
    assert f"plain: {marker}" in stream.text and "substituted: ********" in stream.text
    assert "event: end" in stream.text
    for row in task["targets"]:
        shown = {v["name"]: v for v in row["output_variables"]}
        # marked sensitive by the script, or made from a secret: both withheld
        assert shown["Hidden"] == {"name": "Hidden", "value": None, "sensitive": True}
        assert shown["Derived"] == {"name": "Derived", "value": None, "sensitive": True}

    api = fleet.api()
    responses = {
        "stream": stream.text,
        "tasks": api.get("/api/v1/tasks").text,
        "task": api.get(f"/api/v1/tasks/{task_id}").text,
        "log": api.get(f"/api/v1/tasks/{task_id}/log").text,
        "audit": api.get("/api/v1/audit").text,
    }
    for name, text in responses.items():
        assert not leaks(text.encode(), canary), name
    places: dict[str, bytes] = {"appliance output": fleet.server.output().encode()}
    for agent in agents:
        assert agent.process is not None
        places[f"{agent.name} stderr"] = agent.process.stderr().encode()
        places[f"{agent.name} stdout"] = "\n".join(stdout_of(agent)).encode()
        places.update(files_under(agent.home.root))
    places.update(files_under(fleet.data_dir, skip="master.key"))
    assert any(where.endswith("octo.db") for where in places)
    found = {where: leaks(blob, canary) for where, blob in places.items()}
    assert not {where: forms for where, forms in found.items() if forms}


def exposed(proc: psutil.Process) -> str:
    """A process's arguments and environment, as one text."""
    try:
        return " ".join(proc.cmdline()) + " ".join(proc.environ().values())
    except psutil.NoSuchProcess:
        return ""


def stdout_of(agent: FleetAgent) -> list[str]:
    """What the agent process printed on stdout: its banner and anything after ``ready``."""
    assert agent.process is not None
    lines = list(agent.process.banner)
    while True:
        try:
            line = agent.process.stdout_lines.get_nowait()
        except queue.Empty:
            return lines
        if line is not None:
            lines.append(line)


def files_under(root: Path, skip: str = "") -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != skip
    }
