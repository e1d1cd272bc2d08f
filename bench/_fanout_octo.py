"""Octo's side of ``bench/fanout.py``: one appliance, N agents, a ``deploy-package`` release.

The appliance (``serve``, its data directory on disk) and the agents (their homes, the
targets, under the bench's target root) are real processes started as ``bench/_fleet.py``
starts them (25 identities per ``octo-agent run``, every fifth listening, the rest polling);
each agent's home is one target. The package goes to the built-in feed once
(``POST /api/v1/packages``); the project's one step is ``deploy-package`` with
``_job.SCRIPT`` as its Deploy script, which runs in the extraction folder. A timed run is
``POST /api/v1/deployments`` with ``force`` (a warm run reinstalls instead of being skipped by
the target's journal) until ``GET /api/v1/tasks/{id}`` shows a final state.

Cold: before the run (untimed) the targets' package cache, journal and release folders are
removed, so the package must travel again; the agent's identity, configuration, runners
and logs stay. Warm: nothing is removed. After each run every target's newest ``sha.txt``
is checked against the package's digests.

Any step the appliance does not offer yet (the feed, the step type) raises
:class:`Unavailable`, which the bench prints in its table instead of figures.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
from _fanout_phases import phases_text
from _fleet import (
    ENVIRONMENT,
    FINAL_STATES,
    ROLE,
    AgentFleet,
    AgentSpec,
    create_key,
    register_agents,
    reserve_ports,
    start_appliance,
)
from _job import (
    PACKAGE_FILE,
    PACKAGE_ID,
    PACKAGE_VERSION,
    SCRIPT,
    Package,
    check_sha_file,
    empty_dir,
)
from _peers import ToolFailed
from _tasks import (
    parse_iso,
    run_script,
    wait_for_task,
)

from tests.fleet import kill_strays
from tests.serve_process import ServeProcess

#: one agent process per target, as on real machines (and as the floor and the peers run
#: each target's work in processes of its own): one process holding many homes would receive
#: every target's package through one interpreter
PER_PROCESS = 1
#: the runner's helper folder: runners before this session created it in the Deploy
#: script's working directory (the release folder); the check still ignores it there
RUNNER_DIR_PREFIX = "./.octo-"
#: the agent's own files in a home, kept by a cold reset (docs/agent.md, "The home")
KEEP = frozenset({"agent.json", "identity", "runners", "logs", "tmp"})
DEPLOY_TIMEOUT = 1800.0


class Unavailable(Exception):
    """The appliance does not offer something the job needs (yet); the message says what."""


class Octo:
    name = "octo"

    def __init__(self, root: Path, count: int, package: Package, data_dir: Path) -> None:
        self.root = root / self.name
        #: the appliance's data directory: on a disk, as on the real appliance (fsyncs count)
        self.data_dir = data_dir
        self.count = count
        self.package = package
        self.names: list[str] = []
        self.homes: list[Path] = []
        self.release_id = ""
        self.upload_seconds = float("nan")
        #: created_at -> finished_at of the last run's task (the appliance's own clock)
        self.last_task_seconds = float("nan")
        #: for the progress line: how long placing the package took in the last run
        self.last_detail = ""
        #: (n, "cold" | "warm") -> those seconds, one per run
        self.package_seconds: dict[tuple[int, str], list[float]] = {}
        self.phase = "cold"
        #: whether a script listed the runner's folder (reported as a note)
        self.saw_runner_dir = False
        self._stack = contextlib.ExitStack()
        self._server: ServeProcess | None = None
        self._client: httpx.Client | None = None

    # -- set-up --------------------------------------------------------------------------------

    def start(self) -> None:
        """Appliance, agents, a warm-up script on all (connections, runner fetch), the
        process, the upload and the release. Unavailable when the appliance lacks a part."""
        self.root.mkdir(parents=True, exist_ok=True)
        ports = iter(reserve_ports(self.count))
        specs = [
            AgentSpec(f"fan-{i:03d}", "listening", f"127.0.0.1:{next(ports)}")
            if i % 5 == 4
            else AgentSpec(f"fan-{i:03d}", "polling")
            for i in range(self.count)
        ]
        self.names = [spec.name for spec in specs]
        try:
            # the appliance and every target's agent each in a session of their own, as the
            # floor's and the peers' per-target work is (bench/README.md, fairness)
            server = start_appliance(self.data_dir, new_session=True)
            self._server = server
            self._stack.callback(server.__exit__, None, None, None)
            key = create_key(self.data_dir)
            homes = register_agents(server, key, self.root / "agents", specs)
            self.homes = [home.root for home in homes]
            fleet = self._stack.enter_context(AgentFleet(new_session=True))
            started = time.monotonic()
            fleet.start(homes, PER_PROCESS)
            client = self._stack.enter_context(
                server.http2_client(headers={"X-Api-Key": key}, timeout=120)
            )
            self._client = client
            warm = run_script(client, self.names, timeout=300)
        except SystemExit as exc:  # the _fleet helpers exit with a message
            raise Unavailable(f"the fleet did not start: {exc}") from None
        if warm.state != "success":
            raise Unavailable(f"the warm-up script failed on {warm.failed_targets[:5]}")
        print(
            f"  octo: appliance + {self.count} agents "
            f"({-(-self.count // PER_PROCESS)} processes) ready and warmed up in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        self._prepare_release(client)

    def _prepare_release(self, client: httpx.Client) -> None:
        """The project, the package in the feed, the release every run deploys."""
        project_id = self._project(client)
        self._upload(client)
        release = self._call(
            client, "POST", f"/projects/{project_id}/releases", json={"version": "1.0.0"}
        )
        self.release_id = str(release["id"])

    def _call(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
        response = client.request(method, "/api/v1" + path, **kwargs)
        if response.status_code not in (200, 201):
            raise Unavailable(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    def _project(self, client: httpx.Client) -> str:
        project = self._call(client, "POST", "/projects", json={"name": "Bench fanout"})
        steps = [
            {
                "name": "Install",
                "type": "deploy-package",
                "roles": [ROLE],
                "properties": {"package": PACKAGE_ID, "deploy": {"syntax": "bash", "body": SCRIPT}},
            }
        ]
        response = client.put(f"/api/v1/projects/{project['id']}/process", json={"steps": steps})
        if response.status_code >= 400:
            if "deploy-package" in response.text:
                raise Unavailable(f"deploy-package not available yet ({response.status_code})")
            raise Unavailable(f"PUT process answered {response.status_code}: {response.text}")
        return str(project["id"])

    def _upload(self, client: httpx.Client) -> None:
        started = time.perf_counter()
        with self.package.path.open("rb") as file:
            response = client.post(
                "/api/v1/packages", files={"file": (PACKAGE_FILE, file, "application/zip")}
            )
        self.upload_seconds = time.perf_counter() - started
        if response.status_code in (404, 405):
            raise Unavailable(
                f"the package feed is not available yet (POST /packages: {response.status_code})"
            )
        if response.status_code != 201:
            raise Unavailable(f"POST /packages answered {response.status_code}: {response.text}")
        sha256 = response.json().get("sha256")
        if sha256 != self.package.sha256:
            raise Unavailable(
                f"the feed stored SHA-256 {sha256}, the file has {self.package.sha256}"
            )
        print(
            f"  octo: uploaded {self.package.size / 2**20:.0f} MiB to the feed in "
            f"{self.upload_seconds:.2f} s",
            flush=True,
        )

    # -- runs ----------------------------------------------------------------------------------

    def reset(self, n: int, cold: bool) -> None:
        """Untimed. Cold: empty the targets but for the agent's own files. Warm: remove the
        last run's release folders, as the peers' reset removes their last extraction, so every
        tool starts a warm run with the same files (the package, no extraction). Keeping them
        cost Octo alone ~3 s of system time per GB written on this VM: memory the guest has not
        used lately is backed afresh by the host on first touch (``bench/first_touch.py``)."""
        self.phase = "cold" if cold else "warm"
        if not cold:
            for home in self.homes[:n]:
                empty_dir(home / "applications")
            return
        for home in self.homes[:n]:
            for entry in home.iterdir():
                if entry.name in KEEP:
                    continue
                if entry.is_dir():
                    empty_dir(entry)
                else:
                    entry.unlink()

    def run(self, n: int) -> float:
        """One deployment to the first ``n`` targets: request sent -> final state seen."""
        try:
            return self._deploy(n)
        except httpx.HTTPError as exc:
            raise ToolFailed(f"octo: the API call failed: {exc!r}") from exc

    def _deploy(self, n: int) -> float:
        client = self._client
        assert client is not None, "start() first"
        body = {
            "release": self.release_id,
            "environment": ENVIRONMENT,
            "targets": self.names[:n],
            "force": True,
        }
        sent, sent_at = time.perf_counter(), time.time()
        response = client.post("/api/v1/deployments", json=body)
        if response.status_code != 201:
            raise ToolFailed(f"POST /deployments answered {response.status_code}: {response.text}")
        task_id = response.json()["task_id"]
        task = wait_for_task(client, task_id, DEPLOY_TIMEOUT)
        if task.get("state") not in FINAL_STATES:
            raise ToolFailed(f"task {task_id} did not finish in {DEPLOY_TIMEOUT:g} s")
        elapsed = time.perf_counter() - sent
        if task["state"] != "success":
            raise ToolFailed(
                f"deployment task {task_id} ended {task['state']}: {task.get('error')}\n"
                + self._log_tail(client, task_id)
            )
        self.last_task_seconds = parse_iso(task["finished_at"]) - parse_iso(task["created_at"])
        self._check(n, sent_at)
        items = self._log(client, task_id)
        placed = self._package_seconds(items)
        self.last_detail = (
            "" if placed is None else f"(package on all targets after {placed:.2f} s)"
        ) + phases_text(items)
        if placed is not None:
            self.package_seconds.setdefault((n, self.phase), []).append(placed)
        return elapsed

    def _log(self, client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        since = 0
        while True:
            page = client.get(f"/api/v1/tasks/{task_id}/log", params={"since": since}).json()
            if not page.get("items"):
                return items
            items += page["items"]
            since = page["next_since"]

    def _log_tail(self, client: httpx.Client, task_id: str, lines: int = 15) -> str:
        """The warnings and errors (why a target failed), then the log's last lines."""
        items = self._log(client, task_id)
        tail = items[-lines:]
        problems = [i for i in items[:-lines] if i.get("level") in ("warning", "error")]
        shown = [
            f"    {(item.get('target') or {}).get('name', '-')}: {item.get('message')}"
            for item in [*problems[-lines:], *tail]
        ]
        return "\n".join(shown)

    def _package_seconds(self, items: list[dict[str, Any]]) -> float | None:
        """From the task's first log line to the last target's transfer line
        (``MyApp 1.0.0: sent ...`` or ``...: already in the target's cache``): how long
        placing the package took, by the appliance's clock. None if the log has no such
        line (the wording belongs to the engine)."""
        prefix = f"{PACKAGE_ID} {PACKAGE_VERSION}: "
        placed = [
            parse_iso(item["time"]) for item in items if str(item["message"]).startswith(prefix)
        ]
        if not items or not placed:
            return None
        return max(placed) - parse_iso(items[0]["time"])

    def _check(self, n: int, since: float) -> None:
        """Each target has the package cached and a ``sha.txt`` written by this run."""
        for home in self.homes[:n]:
            if not (home / "cache" / self.package.sha256).is_file():
                raise ToolFailed(f"octo: {home.name} has no cached package after the run")
            found = sorted(home.rglob("sha.txt"), key=lambda p: p.stat().st_mtime)
            if not found or found[-1].stat().st_mtime < since - 0.05:
                raise ToolFailed(f"octo: the script wrote no sha.txt on {home.name} in this run")
            text = found[-1].read_text(encoding="utf-8")
            self.saw_runner_dir = self.saw_runner_dir or f"  {RUNNER_DIR_PREFIX}" in text
            problem = check_sha_file(found[-1], self.package, ignore=RUNNER_DIR_PREFIX)
            if problem:
                raise ToolFailed(f"octo did not do the job: {problem}")

    def close(self) -> None:
        """Client, agents and appliance; then whatever still runs under the root."""
        self._stack.close()
        self._client = None
        strays = kill_strays(self.root) + kill_strays(self.data_dir)
        if strays:
            print(f"  octo: killed {len(strays)} leftover process(es): {strays[:3]}")
