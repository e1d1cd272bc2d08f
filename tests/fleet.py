"""A fleet of real processes for end-to-end tests: one appliance and several agents.

The appliance is ``octo-appliance serve`` (:class:`~tests.serve_process.ServeProcess`); agents
are registered exactly as an operator does it (``octo-agent new-certificate`` then
``octo-agent register`` with an API key file) and run as ``octo-agent run`` processes
(:class:`~tests.agent.support.AgentProcess`), one per agent or one holding several homes.
Everything binds 127.0.0.1; a listening agent must register a concrete port (the appliance
dials it), so the harness picks a free one first.

::

    with Fleet(tmp_path) as fleet:
        web = fleet.register("web-1", "listening")
        poll = fleet.register("poll-1", "polling")
        fleet.start_agents([web, poll])
        task = fleet.wait_task(fleet.run_script("echo hi"))

Teardown kills every process the fleet started; :func:`tests.strays.stray_processes` finds
anything left whose command line or working directory lies under the fleet's root (agents,
runners and the scripts they started), so a test module can assert that nothing outlived it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import httpx

from octo_appliance.agent.home import Home
from octo_appliance.appliance import open_appliance
from octo_appliance.certificate import load_or_create_certificate
from octo_appliance.comms import Identity, load_identity
from octo_appliance.config import load_config
from tests.agent.support import AgentProcess
from tests.child_process import clean_env
from tests.ports import free_port
from tests.serve_process import ServeProcess
from tests.strays import kill_strays

FINAL_STATES = ("success", "failed", "canceled", "timed_out")
AGENT_COMMAND = (sys.executable, "-m", "octo_appliance.agent")
APPLIANCE_COMMAND = (sys.executable, "-m", "octo_appliance")


def script_step(
    name: str, body: str, *, run_on: str = "targets", roles: Sequence[str] = ("web",)
) -> dict[str, Any]:
    """A bash ``run-script`` step: on the targets of ``roles``, or on the appliance."""
    step: dict[str, Any] = {
        "name": name,
        "type": "run-script",
        "properties": {"syntax": "bash", "run_on": run_on, "body": body},
    }
    if run_on == "targets":
        step["roles"] = list(roles)
    return step


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@dataclass
class FleetAgent:
    """One registered agent identity (its home) and the process that runs it, if any."""

    name: str
    mode: str
    home: Home
    target_id: str
    listen_port: int | None = None
    process: AgentProcess | None = None

    @property
    def log_file(self) -> Path:
        return self.home.log_file


@dataclass
class Fleet:
    """An appliance, an API key, environments, and the agents registered with it."""

    root: Path
    environments: Sequence[str] = ("Dev",)
    #: extra environment of ``serve`` (e.g. ``{"OCTO_LOG_LEVEL": "debug"}``)
    serve_env: dict[str, str] = field(default_factory=dict)
    #: how ``octo-appliance`` is started: the development install, or ``[path]`` of the
    #: single executable (tests/binary)
    appliance_command: Sequence[str] = APPLIANCE_COMMAND
    #: how ``octo-agent`` is started: the development install, or ``[path]`` of the frozen
    #: agent (tests/binary/test_agent_build.py)
    agent_command: Sequence[str] = AGENT_COMMAND
    appliance: ServeProcess | None = None
    api_key: str = ""
    agents: dict[str, FleetAgent] = field(default_factory=dict)
    processes: list[AgentProcess] = field(default_factory=list)
    #: appliances started by the fleet (restarts included), all stopped at close
    appliances: list[ServeProcess] = field(default_factory=list)
    #: processes found still running under ``root`` after a clean stop (should stay empty)
    strays: list[str] = field(default_factory=list)
    _client: httpx.Client | None = None

    # -- the appliance -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "appliance-data"

    @property
    def key_file(self) -> Path:
        return self.root / "api-key"

    @property
    def server(self) -> ServeProcess:
        assert self.appliance is not None, "the appliance is not running"
        return self.appliance

    def start(self) -> Fleet:
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_appliance()
        created = subprocess.run(
            [
                *self.appliance_command,
                "api-key",
                "create",
                "--data-dir",
                str(self.data_dir),
                "--user",
                "admin",
                "--name",
                "fleet",
            ],
            capture_output=True,
            text=True,
            env=clean_env(**self.serve_env),  # the same database (OCTO_DATABASE) as serve
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        self.api_key = created.stdout.strip().splitlines()[-1].strip()
        self.key_file.write_text(self.api_key + "\n", encoding="utf-8")
        self.key_file.chmod(0o600)
        for name in self.environments:
            response = self.api().post("/api/v1/environments", json={"name": name})
            assert response.status_code == 201, response.text
        return self

    def start_appliance(self, *, same_ports: bool = False) -> ServeProcess:
        """Start ``serve`` on the fleet's data dir (port 0, or the previous run's ports)."""
        listen, polling = "127.0.0.1:0", "127.0.0.1:0"
        if same_ports:
            previous = self.appliances[-1].banner
            listen = f"127.0.0.1:{previous.port}"
            polling = f"127.0.0.1:{previous.polling_port}"
        server = ServeProcess(
            self.data_dir,
            listen=listen,
            polling_listen=polling,
            env=self.serve_env,
            command=self.appliance_command,
        )
        self.appliances.append(server)
        server.start()
        self.appliance = server
        self._close_client()
        return server

    def stop_appliance(self, sig: int = signal.SIGTERM) -> int:
        self._close_client()
        code = self.server.stop(sig)
        self.server.output()
        return code

    def restart_appliance(self) -> ServeProcess:
        """SIGTERM, then start again on the same data dir and the same two ports."""
        self.stop_appliance()
        return self.start_appliance(same_ports=True)

    def api(self) -> httpx.Client:
        """An HTTP/2 client with the API key, pinned to the appliance's certificate."""
        if self._client is None:
            self._client = self.server.http2_client(
                headers={"X-Api-Key": self.api_key}, timeout=30.0
            )
        return self._client

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """``METHOD /api/v1<path>``, asserting the status; the JSON body (None when empty)."""
        response = self.api().request(method, "/api/v1" + path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- agents --------------------------------------------------------------------------------

    def agent_cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.agent_command, *args],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=timeout,
        )
        if check:
            assert done.returncode == 0, f"octo-agent {args[0]} failed:\n{done.stderr}"
        return done

    def register(
        self,
        name: str,
        mode: str,
        *,
        environments: Iterable[str] = ("Dev",),
        roles: Iterable[str] = ("web",),
        polling_address: str | None = None,
    ) -> FleetAgent:
        """``new-certificate`` + ``register`` through the CLI, as an operator would
        (``polling_address``: ``--polling-address``, one node's or several)."""
        home = Home(self.root / "agents" / name)
        self.agent_cli("new-certificate", "--home", str(home.root))
        args = ["register", "--home", str(home.root), "--server", self.server.url.rstrip("/")]
        args += ["--server-thumbprint", self.server.banner.thumbprint]
        args += ["--api-key-file", str(self.key_file), "--name", name]
        for env in environments:
            args += ["--environment", env]
        for role in roles:
            args += ["--role", role]
        port = None
        if mode == "listening":
            port = free_port()
            args += ["--listen", f"127.0.0.1:{port}"]
        else:
            args += ["--poll"]
            if polling_address:
                args += ["--polling-address", polling_address]
        self.agent_cli(*args)
        config = home.require_registered()
        agent = FleetAgent(name, mode, home, config.target_id, port)
        self.agents[name] = agent
        return agent

    def register_many(
        self, specs: Sequence[tuple[str, str] | tuple[str, str, Sequence[str]]]
    ) -> list[FleetAgent]:
        """Register several agents at once: ``(name, mode)`` or ``(name, mode, roles)``
        (each registration is two CLI processes, so they run side by side)."""

        def one(spec: tuple[Any, ...]) -> FleetAgent:
            roles = spec[2] if len(spec) > 2 else ("web",)
            return self.register(spec[0], spec[1], roles=roles)

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(one, specs))

    def appliance_identity(self) -> Identity:
        """The certificate and key the appliance presents to agents, read from its data dir
        (for tests that play the appliance's side of the wire themselves)."""
        config = load_config({"data_dir": str(self.data_dir)})
        appliance, _ = open_appliance(config, initialise=False)
        try:
            cert = load_or_create_certificate(config, appliance.vault.ring)
        finally:
            appliance.close()
        return load_identity(cert.cert_file, cert.key_file, cert.key_password)

    def start_agents(self, agents: Sequence[FleetAgent], *, together: bool = False) -> None:
        """One ``octo-agent run`` per agent, or one process for all (``together``)."""
        groups = [list(agents)] if together else [[a] for a in agents]
        for group in groups:
            process = AgentProcess(
                [a.home for a in group], log_level="DEBUG", command=self.agent_command
            )
            self.processes.append(process)
            process.start()
            for agent in group:
                agent.process = process
                if agent.mode == "listening":
                    assert process.listen_port(agent.name) == agent.listen_port

    def kill_agent(self, agent: FleetAgent, sig: int = signal.SIGKILL) -> None:
        assert agent.process is not None
        agent.process.stop(sig)

    def wait_connected(self, agents: Iterable[FleetAgent], timeout: float = 30.0) -> None:
        """Until each polling agent's log says it is connected to the appliance (the last
        connect it logged came after the last connection it lost: right after an appliance
        restart this waits for the new connection)."""
        for agent in agents:
            if agent.mode == "polling":
                wait_until(
                    functools.partial(_connected_now, agent),
                    timeout,
                    f"{agent.name} to connect",
                )

    # -- tasks ---------------------------------------------------------------------------------

    def run_script(
        self,
        body: str,
        *,
        syntax: str = "bash",
        environment: str | None = "Dev",
        roles: Sequence[str] = (),
        targets: Sequence[str] = (),
        variables: dict[str, Any] | None = None,
        timeout: int | None = None,
    ) -> str:
        """``POST /api/v1/scripts``; the task id."""
        payload: dict[str, Any] = {"syntax": syntax, "body": body, "roles": list(roles)}
        if environment is not None:
            payload["environment"] = environment
        if targets:
            payload["targets"] = list(targets)
        if variables:
            payload["variables"] = variables
        if timeout is not None:
            payload["timeout"] = timeout
        response = self.api().post("/api/v1/scripts", json=payload)
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def start_deployment(
        self, steps: list[dict[str, Any]], variables: Sequence[Any] = (), name: str = ""
    ) -> str:
        """A new project with ``steps`` (and ``variables``), a release of it deployed to Dev:
        the deployment's task id."""
        project = self.call("POST", "/projects", 201, json={"name": name or f"p-{token_hex(4)}"})
        self.call("PUT", f"/projects/{project['id']}/process", json={"steps": steps})
        if variables:
            body = {"variables": list(variables)}
            self.call("PUT", f"/projects/{project['id']}/variables", json=body)
        release = self.call("POST", f"/projects/{project['id']}/releases", 201, json={})
        deployment = {"release": release["id"], "environment": "Dev"}
        return str(self.call("POST", "/deployments", 201, json=deployment)["task_id"])

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.api().get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_task(self, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll ``GET /tasks/{id}`` until the task is in a final state."""
        return dict(
            wait_until(
                lambda: (t := self.task(task_id))["state"] in FINAL_STATES and t,
                timeout,
                f"task {task_id} to finish",
                every=0.2,
            )
        )

    def wait_target_state(
        self, task_id: str, target: str, states: Sequence[str], timeout: float = 30.0
    ) -> dict[str, Any]:
        def result() -> dict[str, Any] | None:
            for row in self.task(task_id)["targets"]:
                if row["target_name"] == target and row["state"] in states:
                    return dict(row)
            return None

        return dict(wait_until(result, timeout, f"{target} of {task_id} to be {states}"))

    def log(self, task_id: str) -> list[dict[str, Any]]:
        """Every stored log line of the task (``GET /tasks/{id}/log``, page by page)."""
        lines: list[dict[str, Any]] = []
        since = 0
        while True:
            response = self.api().get(f"/api/v1/tasks/{task_id}/log", params={"since": since})
            assert response.status_code == 200, response.text
            page = response.json()
            lines += page["items"]
            if not page["items"]:
                return lines
            since = page["next_since"]

    def text_log(self, task_id: str) -> str:
        """The task's log messages, one a line (for an assertion's message)."""
        return "\n".join(line["message"] for line in self.log(task_id))

    def log_of(self, task_id: str, target: str) -> list[str]:
        """The messages of the lines tagged with ``target`` (a target name)."""
        return [
            line["message"]
            for line in self.log(task_id)
            if line["target"] is not None and line["target"]["name"] == target
        ]

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        self._close_client()
        for process in self.processes:
            process.close()
        for server in self.appliances:
            server.stop()
            server.__exit__(None, None, None)
        self.strays = kill_strays(self.root)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _connected_now(agent: FleetAgent) -> bool:
    try:
        text = agent.log_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False
    return text.rfind("agent: connected to ") > text.rfind("lost the connection to appliance")


@contextlib.contextmanager
def running_fleet(root: Path, **kwargs: Any) -> Iterator[Fleet]:
    """A started fleet, closed at the end, which then checks that nothing it ran lives on."""
    fleet = Fleet(root, **kwargs)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.close()
    assert not fleet.strays, "processes outlived the fleet:\n" + "\n".join(fleet.strays)
