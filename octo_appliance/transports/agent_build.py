"""The agent build the appliance offers its agents, with its signed manifest.

The manifest (``component``, ``version``, ``platform``, ``size``, ``sha256``, ``signature``)
is what an agent checks before it replaces anything (agent/builds.py). Where the build comes
from is the appliance's business: the setting ``agent_build_file`` names a build file whose
signed manifest lies beside it as ``FILE.manifest.json`` (what a release pipeline, or a test,
provides).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_appliance.exceptions import ConfigError

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FIELDS = ("component", "version", "platform", "size", "sha256", "signature")


@dataclass(frozen=True)
class AgentBuild:
    path: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def load_agent_build(path: Path) -> AgentBuild:
    """The build at ``path`` and its manifest (ConfigError naming what is wrong)."""
    manifest_file = path.with_name(path.name + MANIFEST_SUFFIX)
    hint = f"give agent_build_file a build with its signed manifest beside it ({manifest_file})"
    if not path.is_file():
        raise ConfigError(f"the agent build {path} does not exist", hint=hint)
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the agent build manifest {manifest_file}: {exc}", hint=hint
        ) from None
    if not isinstance(manifest, dict) or any(key not in manifest for key in MANIFEST_FIELDS):
        raise ConfigError(f"{manifest_file} must hold {', '.join(MANIFEST_FIELDS)}", hint=hint)
    return AgentBuild(path, {key: manifest[key] for key in MANIFEST_FIELDS})
