"""The agent build the appliance offers its agents for self-update, with its signed manifest.

The manifest (``component``, ``version``, ``platform``, ``size``, ``sha256``, ``signature``:
:mod:`octo_appliance.builds.manifest`) is what an agent checks before it replaces anything
(agent/builds.py). Which build is offered is the appliance's choice (background.py): the one
it serves at ``GET /api/v1/agent``, or the file the setting ``agent_build_file`` names, whose
version is declared beside it in ``FILE.manifest.json`` (``{"version": ...}``; the appliance
measures and signs the file itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_appliance.exceptions import ConfigError

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class OfferedBuild:
    path: Path
    #: the signed manifest, as ``GET /api/v1/agent`` shows it
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def declared_version(path: Path) -> str:
    """The version ``FILE.manifest.json`` declares for the build ``path`` (ConfigError)."""
    declaration = path.with_name(path.name + MANIFEST_SUFFIX)
    hint = f'put the build\'s version beside it: {declaration} holding {{"version": "..."}}'
    if not path.is_file():
        raise ConfigError(f"agent_build_file {path} does not exist", hint=hint)
    try:
        data = json.loads(declaration.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {declaration}: {exc}", hint=hint) from None
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or not version:
        raise ConfigError(f"{declaration} declares no version", hint=hint)
    return version
