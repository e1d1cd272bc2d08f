"""The agent builds a home runs: the current one, a trial one, and the last failed one.

``H/builds/state.json`` (written atomically, under ``H/builds/.lock``) is the one record the
supervisor (:mod:`octo_appliance.agent.supervisor`) and the agent it runs share::

    {"current": {"version", "command": [...]} | null,   # null: the installed executable
     "previous": {...} | null,                          # what ran before the last update
     "trial": {"version", "sha256", "command", "confirm_seconds"} | null,
     "failed": {"version", "sha256", "reason"} | null}

A build is any executable file started as ``BUILD run --home H``; staged builds live in
``H/builds/octo-agent-<version>``. A build is verified (length, SHA-256, and the appliance's
Ed25519 signature over its manifest's fields: :mod:`octo_appliance.builds.manifest`) *before*
it is written there, so a tampered or truncated file never replaces anything. The trial
becomes current only when the new build, connected to the appliance, confirms
(``agent.update.confirm``); otherwise the supervisor rolls back and records ``failed`` with
the reason, which the agent reports at every connect.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_appliance.agent.errors import AgentError
from octo_appliance.builds.manifest import ManifestError, verify
from octo_appliance.filesystem.durable import write_atomic

#: set by the supervisor in the environment of the agent it runs (the agent may update)
SUPERVISED_ENV = "OCTO_AGENT_SUPERVISED"
#: the exit code with which an agent asks its supervisor to start the staged trial build
RESTART_FOR_UPDATE = 75
COMPONENT = "octo-agent"
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


def check_manifest(manifest: dict[str, Any], public_key: str) -> None:
    """Refuse a manifest that is not an agent build signed by the appliance (AgentError)."""
    if manifest.get("component") != COMPONENT:
        raise AgentError(f"the manifest is for {manifest.get('component')!r}, not {COMPONENT}")
    if not public_key:
        raise AgentError(
            "this agent holds no signing key of its appliance, so it cannot check a build",
            hint="register the agent again (octo-agent register --force) to store the key",
        )
    try:
        verify(manifest, public_key)
    except ManifestError as exc:
        raise AgentError(f"{exc.message}; it was refused", hint=exc.hint) from None


def check_file(path: Path, manifest: dict[str, Any], actual_sha256: str) -> None:
    """The downloaded file must be exactly what the signed manifest describes."""
    size = path.stat().st_size
    if size != manifest.get("size"):
        raise AgentError(
            f"agent build {manifest.get('version')} is {size} bytes, but its signed manifest "
            f"says {manifest.get('size')}; it was refused",
            hint="the download was truncated or altered; nothing was replaced",
        )
    if actual_sha256 != manifest.get("sha256"):
        raise AgentError(
            f"agent build {manifest.get('version')} has SHA-256 {actual_sha256[:16]}…, not "
            f"the {str(manifest.get('sha256'))[:16]}… its signed manifest names; it was refused",
            hint="the download was altered; nothing was replaced",
        )


@dataclass
class BuildState:
    current: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    trial: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "previous": self.previous,
            "trial": self.trial,
            "failed": self.failed,
        }


class Builds:
    """``H/builds/``: staged builds and the state the supervisor and the agent share."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_file = directory / "state.json"
        self._lock_file = directory / ".lock"

    def path_for(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise AgentError(f"{version!r} is not a build version")
        return self.directory / f"octo-agent-{version}"

    @contextlib.contextmanager
    def locked(self) -> Iterator[BuildState]:
        """The state, locked against the other process; written back when the block ends."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock_file.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            before = state.to_json()
            yield state
            if state.to_json() != before:
                text = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
                write_atomic(self.state_file, text.encode("utf-8"), mode=0o600)

    def read(self) -> BuildState:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return BuildState()
        except (OSError, ValueError):
            # a state nobody can read is no trial: the installed build runs, nothing is lost
            return BuildState()
        if not isinstance(data, dict):
            return BuildState()
        return BuildState(**{k: _entry(data.get(k)) for k in BuildState().to_json()})

    def stage(self, downloaded: Path, manifest: dict[str, Any], confirm_seconds: float) -> Path:
        """Move a verified download into place and record it as the trial build."""
        version = str(manifest["version"])
        path = self.path_for(version)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(downloaded, 0o755)
        os.replace(downloaded, path)
        with self.locked() as state:
            state.trial = {
                "version": version,
                "sha256": manifest["sha256"],
                "command": [str(path)],
                "confirm_seconds": confirm_seconds,
            }
        return path

    def confirm(self, version: str) -> bool:
        """The trial build ``version`` connected and was confirmed: it becomes current."""
        with self.locked() as state:
            if state.trial is None or state.trial.get("version") != version:
                return False
            state.previous = state.current
            state.current = {k: state.trial[k] for k in ("version", "sha256", "command")}
            state.trial = state.failed = None
            keep = {_staged(state.current), _staged(state.previous)}
        for stale in self.directory.glob("octo-agent-*"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
        return True

    def roll_back(self, reason: str) -> dict[str, Any] | None:
        """The trial failed: forget it, remember why; the failed entry (None: no trial)."""
        with self.locked() as state:
            trial = state.trial
            if trial is None:
                return None
            state.trial = None
            state.failed = {
                "version": trial.get("version"),
                "sha256": trial.get("sha256"),
                "reason": reason,
            }
            failed = state.failed
        name = _staged(trial)
        if name and name != _staged(self.read().current):
            (self.directory / name).unlink(missing_ok=True)
        return failed

    def clear_failed(self) -> None:
        with self.locked() as state:
            state.failed = None


def _entry(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _staged(entry: dict[str, Any] | None) -> str:
    """The file name in ``builds/`` of an entry's build ("" when it is not a staged one)."""
    command = (entry or {}).get("command") or []
    return Path(command[0]).name if len(command) == 1 else ""
