"""The agent's side of a self-update: ``agent.update`` and ``agent.update.confirm``.

``agent.update`` carries the appliance's signed manifest of the build to run. The agent
accepts it only when it runs under its supervisor (``run --supervise``) and is idle; it checks
the signature with the key it stored at registration, fetches the build over the connection
the call came on (``agent.fetch``: the same pinned connection, like ``runner.fetch``), checks
length and SHA-256 against the signed manifest, and only then stages it and exits so its
supervisor starts it. Anything refused leaves the running build and the home untouched.

``agent.update.confirm`` is the appliance's word that the new build connected: the trial
becomes the current build (:meth:`octo_appliance.agent.builds.Builds.confirm`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octo_appliance.agent.builds import SUPERVISED_ENV, Builds, check_file, check_manifest
from octo_appliance.agent.cache import sha256_file
from octo_appliance.agent.contract import AGENT_FETCH
from octo_appliance.agent.errors import AgentError
from octo_appliance.agent.home import AgentConfig, Home
from octo_appliance.agent.version import running_version as current_version
from octo_appliance.comms import CallFailed, CommsError, Connection, IncomingRequest

log = logging.getLogger("octo_appliance.agent.update")

#: how long after answering ``agent.update`` the agent exits (the answer must get out first)
RESTART_DELAY = 0.2
DEFAULT_CONFIRM_SECONDS = 60.0


def supervised() -> bool:
    return os.environ.get(SUPERVISED_ENV) == "1"


class SelfUpdate:
    """One identity's update calls; ``is_idle`` says no task runs, ``restart`` exits."""

    def __init__(
        self,
        home: Home,
        config: AgentConfig,
        is_idle: Callable[[], bool],
        connection_of: Callable[[IncomingRequest], Connection | None],
    ) -> None:
        self.home = home
        self.config = config
        self.builds = Builds(home.builds_dir)
        self.is_idle = is_idle
        self.connection_of = connection_of
        #: set by ``octo-agent run``: stop serving and exit for the supervisor (None: cannot)
        self.restart: Callable[[], None] | None = None
        self.staging = False

    @property
    def updatable(self) -> bool:
        return self.restart is not None and supervised()

    def hello(self) -> dict[str, Any]:
        """What the agent says about updates at every connect."""
        failed = self.builds.read().failed
        extra: dict[str, Any] = {"updatable": self.updatable}
        if failed:
            extra["update_failed"] = {
                "version": str(failed.get("version", "")),
                "reason": str(failed.get("reason", ""))[:500],
            }
        return extra

    async def update(self, request: IncomingRequest) -> dict[str, Any]:
        manifest = request.params.get("manifest")
        if not isinstance(manifest, dict):
            raise _refused("bad_request", "manifest must be the appliance's signed manifest")
        confirm = request.params.get("confirm_seconds", DEFAULT_CONFIRM_SECONDS)
        if not isinstance(confirm, int | float) or isinstance(confirm, bool) or confirm <= 0:
            raise _refused("bad_request", "confirm_seconds must be a positive number")
        version = str(manifest.get("version", ""))
        if not self.updatable:
            raise _refused(
                "update_unsupported",
                "this agent runs without its supervisor, so it cannot update itself",
                "run it as `octo-agent run --supervise` (the service unit does)",
            )
        if version == current_version():
            return {"staged": False, "version": version, "message": "already running it"}
        if self.staging or not self.is_idle():
            raise _refused("busy", "a task is running on this agent; it updates when idle")
        self.staging = True  # stays set: the process exits once the build is staged
        try:
            path = await self._fetch_and_stage(request, manifest, float(confirm))
        except AgentError as exc:
            self.staging = False
            log.error("agent build %s refused: %s", version, exc.message)
            raise _refused("build_refused", exc.message, exc.hint) from None
        except BaseException:
            self.staging = False
            raise
        log.info("agent build %s staged at %s; restarting into it", version, path)
        asyncio.get_running_loop().call_later(RESTART_DELAY, self.restart)  # type: ignore[arg-type]
        return {"staged": True, "version": version}

    async def _fetch_and_stage(
        self, request: IncomingRequest, manifest: dict[str, Any], confirm_seconds: float
    ) -> Path:
        check_manifest(manifest, self.config.signing_public_key)
        version = str(manifest["version"])
        conn = self.connection_of(request)
        if conn is None or not conn.accepts_calls:
            raise AgentError("there is no connection to the appliance to fetch the build on")
        try:
            response = await conn.call(
                AGENT_FETCH, {"version": version}, download_dir=self.home.tmp_dir
            )
        except CommsError as exc:
            raise AgentError(f"fetching agent build {version} failed: {exc.message}") from None
        downloaded = response.file_path
        if downloaded is None:
            raise AgentError(f"the appliance answered agent.fetch for {version} without a file")
        try:
            actual = await asyncio.to_thread(sha256_file, downloaded)
            check_file(downloaded, manifest, actual)
            self.builds.clear_failed()
            return await asyncio.to_thread(self.builds.stage, downloaded, manifest, confirm_seconds)
        finally:
            downloaded.unlink(missing_ok=True)

    async def confirm(self, request: IncomingRequest) -> dict[str, Any]:
        version = str(request.params.get("version", ""))
        if version != current_version():
            raise _refused("bad_request", f"this agent runs {current_version()}, not {version}")
        confirmed = await asyncio.to_thread(self.builds.confirm, version)
        if confirmed:
            log.info("agent build %s confirmed by the appliance", version)
        return {"confirmed": confirmed, "version": version}


def _refused(code: str, message: str, hint: str | None = None) -> CallFailed:
    return CallFailed(code, message, hint=hint or "see docs/agent.md (self-update)")
