"""Agent builds for the self-update tests and bench: launchers, signed manifests, agents.

A "build" here is what the update mechanism treats as one: an executable file started as
``BUILD run --home H``. The launchers are small shell scripts that start the development
agent with a stamped version (``OCTO_AGENT_BUILD_VERSION``), so real agent processes update
over real connections without a PyInstaller build; a launcher can also be broken (it exits at
start) to exercise the rollback. Each build gets the manifest the appliance serves
(``FILE.manifest.json``), signed with a test Ed25519 key whose public half the agent is given
as the appliance's signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from octo_appliance.agent.builds import COMPONENT, VERSION_ENV, canonical_fields
from octo_appliance.agent.home import Home
from octo_appliance.transports.agent_build import MANIFEST_SUFFIX
from tests.agent.support import AgentProcess


@dataclass
class Signer:
    """The signing key an appliance would keep in its vault (a fresh one per test)."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_pem(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        return raw.decode("ascii")

    def manifest(self, build: Path, version: str) -> dict[str, object]:
        content = build.read_bytes()
        manifest: dict[str, object] = {
            "component": COMPONENT,
            "version": version,
            "platform": "linux-x86_64",
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        manifest["signature"] = base64.b64encode(self.key.sign(canonical_fields(manifest))).decode()
        return manifest

    def publish(self, build: Path, version: str) -> Path:
        """Write the signed manifest beside ``build``; the build's path."""
        manifest = self.manifest(build, version)
        build.with_name(build.name + MANIFEST_SUFFIX).write_text(json.dumps(manifest))
        return build


def launcher(path: Path, version: str, *, exits_at_start: bool = False) -> Path:
    """A launcher build of the development agent stamped ``version`` (or one that fails)."""
    command = shlex.join([sys.executable, "-m", "octo_appliance.agent"])
    body = (
        f'echo "agent build {version} is broken" >&2\nexit 3\n'
        if exits_at_start
        else f'{VERSION_ENV}={shlex.quote(version)}\nexport {VERSION_ENV}\nexec {command} "$@"\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n# octo-agent launcher build {version}\n{body}")
    path.chmod(0o755)
    return path


def trust_signer(home: Home, signer: Signer) -> None:
    """Give a registered agent the appliance's signing key (what registration hands over)."""
    config = home.require_registered()
    config.signing_public_key = signer.public_pem
    home.save_config(config)


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
