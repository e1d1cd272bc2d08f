"""Agent builds for the self-update tests and bench: launchers, signed manifests, agents.

A "build" here is what the update mechanism treats as one: an executable file started as
``BUILD run --home H``. The launchers are small shell scripts that start the development
agent with a stamped version (``OCTO_AGENT_LAUNCHER_VERSION``), so real agent processes update
over real connections without a PyInstaller build; a launcher can also be broken (it exits at
start) to exercise the rollback. The appliance offers a build through ``agent_build_file``
(its version declared beside it) and signs it with its own key, which agents receive at
registration.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from octo_appliance.agent.builds import COMPONENT
from octo_appliance.agent.home import Home
from octo_appliance.agent.version import LAUNCHER_VERSION_ENV
from octo_appliance.builds.manifest import public_key_text, sign
from octo_appliance.transports.agent_build import MANIFEST_SUFFIX
from tests.agent.support import AgentProcess


@dataclass
class Signer:
    """A signing key like the one an appliance keeps in its vault (for tests of the agent's
    checks without an appliance)."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_key(self) -> str:
        return public_key_text(self.key)

    def manifest(self, build: Path, version: str) -> dict[str, Any]:
        content = build.read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        signed = sign(
            self.key,
            component=COMPONENT,
            version=version,
            platform="linux-x86_64",
            size=len(content),
            sha256=digest,
        )
        return signed.to_json()


def declare(build: Path, version: str) -> Path:
    """Offer ``build`` as agent ``version`` (``agent_build_file``): the appliance signs it."""
    build.with_name(build.name + MANIFEST_SUFFIX).write_text(json.dumps({"version": version}))
    return build


def launcher(path: Path, version: str, *, exits_at_start: bool = False) -> Path:
    """A launcher build of the development agent stamped ``version`` (or one that fails)."""
    command = shlex.join([sys.executable, "-m", "octo_appliance.agent"])
    body = (
        f'echo "agent build {version} is broken" >&2\nexit 3\n'
        if exits_at_start
        else f"{LAUNCHER_VERSION_ENV}={shlex.quote(version)}\nexport {LAUNCHER_VERSION_ENV}\n"
        f'exec {command} "$@"\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n# octo-agent launcher build {version}\n{body}")
    path.chmod(0o755)
    return path


def supervised_agent(home: Home, build: Path) -> AgentProcess:
    """``BUILD run --supervise --home H``: the agent as its service unit runs it."""
    process = AgentProcess([home])
    process.args = [str(build), "run", "--supervise", "--home", str(home.root)]
    process.args += ["--log-level", "DEBUG"]
    return process


def alter(build: Path, *, truncate: bool = False) -> None:
    """Change a published build's bytes after its manifest was signed."""
    content = build.read_bytes()
    build.write_bytes(content[:-10] if truncate else content[:-2] + b"#\n")
