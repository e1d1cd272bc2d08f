"""Agent self-updates, seen from the appliance: who runs what, who updates, who failed.

Every agent says its version at connect (HELLO), whether it can update itself (it runs under
its supervisor) and which build it last rolled back, and why. The version is recorded on the
target. With ``agent_updates = auto`` an updatable agent that runs another version than the
build this appliance serves is updated at once, at most ``agent_update_cap`` at a time;
``manual`` waits for ``POST /api/v1/targets/{ref}/update-agent``.

One update: close the target's gate (new calls wait, bounded: transports/update_gate.py),
wait until no call to it is in flight, send ``agent.update`` with the signed manifest (the
agent refuses when busy: the gate opens and the update is retried later), then wait for the
agent to come back running the new build and confirm it (``agent.update.confirm``). An agent
that comes back on the old build reporting a rollback, or not at all in time, is ``failed``
with the reason; the appliance does not retry that build on that target by itself (a manual
request does).

The state shown in the API (``none | available | in-progress | failed (<reason>)``) lives in
this node's memory plus what agents report: an agent repeats its last failure at every connect,
so an appliance restart forgets nothing that matters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from octo_appliance.agent.contract import AGENT_INFO, AGENT_UPDATE, AGENT_UPDATE_CONFIRM
from octo_appliance.comms import CallFailed, CommsError
from octo_appliance.db import Target, utcnow
from octo_appliance.db.connection import write_transaction
from octo_appliance.exceptions import OctoError
from octo_appliance.transports.base import TargetAddress
from octo_appliance.transports.network import AgentNetwork

log = logging.getLogger("octo_appliance.agent_updates")

NONE, AVAILABLE, IN_PROGRESS, FAILED = "none", "available", "in-progress", "failed"
#: how long the coordinator waits for calls in flight to end before it tries again later
DRAIN_SECONDS = 10.0
#: how long a busy agent is left alone before the next try
BUSY_RETRY_SECONDS = 5.0
#: the longest one contract call of the update may take
CALL_TIMEOUT = 300.0
#: beyond the agent's own confirmation bound: time for a rolled-back agent to report back
ROLLBACK_MARGIN = 30.0


class UpdateFailed(OctoError):
    """One update did not succeed (or cannot start); the message is the reason shown."""


@dataclass
class UpdatePolicy:
    mode: str = "auto"
    cap: int = 10
    confirm_seconds: float = 60.0


class AgentUpdates:
    def __init__(self, network: AgentNetwork, policy: UpdatePolicy) -> None:
        self.network = network
        self.policy = policy
        self._cap = asyncio.Semaphore(policy.cap)
        self._running: dict[str, asyncio.Task[None]] = {}
        #: target id -> (version, reason) of the last failed update
        self._failed: dict[str, tuple[str, str]] = {}
        #: target id -> (version it runs, can update itself), as it last said at connect
        self._seen: dict[str, tuple[str, bool]] = {}
        #: the version last written on each target's row by this node
        self._recorded: dict[str, str] = {}
        #: versions waiting to be written, and the task writing them (one transaction per
        #: batch: after a restart every agent reconnects within seconds)
        self._unwritten: dict[str, str] = {}
        self._writing: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def served(self) -> str | None:
        build = self.network.agent_build
        return build.version if build is not None else None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.network.hello_observers.append(self.observe)

    async def stop(self) -> None:
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # -- what the API shows --------------------------------------------------------------

    def status(self, target_id: str, agent_version: str) -> str:
        if target_id in self._running:
            return IN_PROGRESS
        served = self.served
        failed = self._failed.get(target_id)
        if failed is not None and failed[0] == served:
            return f"{FAILED} ({failed[1]})"
        if served is None or not agent_version or agent_version == served:
            return NONE
        return AVAILABLE

    # -- connections ---------------------------------------------------------------------

    def observe(self, target: TargetAddress, hello: Mapping[str, Any]) -> None:
        """An agent connected (on the network's loop): record it, maybe update it."""
        version = str(hello.get("agent_version", ""))[:40]
        updatable = hello.get("updatable") is True
        self._seen[target.id] = (version, updatable)
        failed = hello.get("update_failed")
        if isinstance(failed, dict) and failed.get("version"):
            self._failed[target.id] = (str(failed["version"]), str(failed.get("reason", "")))
        if version and self._recorded.get(target.id) != version:
            self._recorded[target.id] = version
            self._unwritten[target.id] = version
            if self._writing is None or self._writing.done():
                self._writing = asyncio.get_running_loop().create_task(self._write_versions())
        if self.policy.mode == "auto" and self._wanted(target.id, version, updatable):
            self._begin(target)

    def _wanted(self, target_id: str, version: str, updatable: bool) -> bool:
        served = self.served
        if served is None or not updatable or not version or version == served:
            return False
        failed = self._failed.get(target_id)
        return target_id not in self._running and (failed is None or failed[0] != served)

    # -- requests ------------------------------------------------------------------------

    def request(self, target_id: str) -> str:
        """Thread-safe (API worker threads): update this target now; the new status."""
        if self._loop is None:
            raise UpdateFailed("the appliance's agent network is not running")
        future = asyncio.run_coroutine_threadsafe(self._request(target_id), self._loop)
        return future.result(timeout=30)

    async def _request(self, target_id: str) -> str:
        served = self.served
        if served is None:
            raise UpdateFailed("this appliance serves no agent build")
        target = self.network.target_by_id(target_id)
        if target is None:
            raise UpdateFailed("the target is not an enabled agent target")
        version, updatable = self._seen.get(target_id, ("", True))
        if version == served:
            return NONE
        if target_id in self._seen and not updatable:
            raise UpdateFailed("its agent runs without its supervisor, so it cannot update itself")
        self._failed.pop(target_id, None)  # asked by a person: the failed build is retried
        self._begin(target)
        return IN_PROGRESS

    def _begin(self, target: TargetAddress) -> None:
        if target.id in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._update(target))
        self._running[target.id] = task
        task.add_done_callback(lambda _: self._running.pop(target.id, None))

    async def _update(self, target: TargetAddress) -> None:
        build = self.network.agent_build
        if build is None:
            return
        while True:
            async with self._cap:  # a busy agent waits without holding a place under the cap
                started = time.monotonic()  # the update itself, not the wait for the cap
                try:
                    staged = await self._stage(target, build.manifest)
                    if staged:
                        await self._until_confirmed(target, build.version)
                except UpdateFailed as exc:
                    self._failed[target.id] = (build.version, exc.message)
                    log.error(
                        "update of %s to agent %s failed: %s", target.name, build.version, exc
                    )
                    return
                finally:
                    self.network.gate.open(target.thumbprint)
            if staged is not None:
                break
            await asyncio.sleep(BUSY_RETRY_SECONDS)
        self._failed.pop(target.id, None)
        if staged:
            elapsed = time.monotonic() - started
            log.info("%s updated to agent %s in %.1f s", target.name, build.version, elapsed)

    async def _stage(self, target: TargetAddress, manifest: dict[str, Any]) -> bool | None:
        """Close the gate, wait for calls in flight, ask the agent to stage the build: True
        (it restarts into it), False (it already runs it) or None (busy: try again later)."""
        gate = self.network.gate
        gate.close(target.thumbprint)
        if not await gate.drained(target.thumbprint, DRAIN_SECONDS):
            return None
        params = {"manifest": manifest, "confirm_seconds": self.policy.confirm_seconds}
        try:
            response = await self._call(target, AGENT_UPDATE, params)
        except CallFailed as exc:
            if exc.code == "busy":
                return None
            raise UpdateFailed(exc.message) from None
        except CommsError as exc:
            raise UpdateFailed(f"the agent could not be reached: {exc.message}") from None
        return bool(response.get("staged"))

    async def _until_confirmed(self, target: TargetAddress, version: str) -> None:
        """The agent is back on ``version`` and confirmed, or UpdateFailed with the reason."""
        bound = self.policy.confirm_seconds
        deadline = time.monotonic() + bound + ROLLBACK_MARGIN
        while (left := deadline - time.monotonic()) > 0:
            try:
                info = await self._call(target, AGENT_INFO, {}, pickup=min(left, 5.0), timeout=5.0)
            except CommsError:
                await asyncio.sleep(0.2)  # it is restarting
                continue
            failed = info.get("update_failed")
            if isinstance(failed, dict) and failed.get("version") == version:
                raise UpdateFailed(str(failed.get("reason") or "the agent rolled back"))
            if info.get("agent_version") == version:
                try:
                    await self._call(target, AGENT_UPDATE_CONFIRM, {"version": version})
                except CommsError:
                    continue  # it dropped again: whatever runs next tells
                self._seen[target.id] = (version, True)
                return
            await asyncio.sleep(0.3)
        raise UpdateFailed(f"the agent did not come back on {version} within {bound:g} s")

    async def _call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        *,
        pickup: float = 30.0,
        timeout: float = CALL_TIMEOUT,
    ) -> dict[str, Any]:
        response = await self.network.call_agent(
            target, method, params, timeout=timeout, pickup_timeout=pickup
        )
        return dict(response.result or {})

    async def _write_versions(self) -> None:
        """Write what agents said at connect, in batches: whatever arrived while one batch
        was written goes in the next."""
        while self._unwritten:
            batch, self._unwritten = self._unwritten, {}
            try:
                await asyncio.to_thread(_record_versions, batch)
            except Exception as exc:  # the database may be away: the next connect records it
                log.warning(
                    "could not record the agent versions of %d targets: %s", len(batch), exc
                )
                for target_id, version in batch.items():  # so that the next connect does
                    if self._recorded.get(target_id) == version:
                        del self._recorded[target_id]


def _record_versions(versions: Mapping[str, str]) -> None:
    """Each target's agent version and last-seen time, in one transaction."""
    now = utcnow()
    with write_transaction(Target._meta.database):
        for target_id, version in versions.items():
            Target.update({Target.agent_version: version, Target.last_seen: now}).where(
                Target.id == target_id
            ).execute()
