"""What a package command learns from its request: the agent's paths and the deployment.

The agent puts absolute paths in ``request.context`` (``cache_dir``, ``applications_dir``,
``journal_file``); the engine's system variables name the project, environment and release.
A missing piece is a ``BadInputError`` that names it, raised before anything is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadInputError
from ..protocol import Request

_AGENT_HINT = "the agent fills the request context; use an agent that supports this command"
#: Calamari's name for the folder releases are extracted under, which ported scripts read
APPLICATIONS_DIR = "Tentacle.Agent.ApplicationDirectoryPath"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


@dataclass(frozen=True)
class TargetPaths:
    """Absolute paths on the target, given by the agent."""

    cache_dir: str
    applications_dir: str
    journal_file: str

    @classmethod
    def from_request(cls, request: Request, command: str) -> TargetPaths:
        return cls(
            cache_dir=context_path(request.context, "cache_dir", command),
            applications_dir=context_path(request.context, "applications_dir", command),
            journal_file=context_path(request.context, "journal_file", command),
        )

    def package_file(self, sha256: str) -> str:
        return os.path.join(self.cache_dir, sha256)


def agent_variables(context: Mapping[str, Any]) -> dict[str, str]:
    """``Octo.``/``Octopus.Tentacle.Agent.ApplicationDirectoryPath`` when the agent named its
    applications folder (every script on a Tentacle sees it); else nothing."""
    folder = context.get("applications_dir")
    if not isinstance(folder, str) or "\x00" in folder or not os.path.isabs(folder):
        return {}
    return {prefix + APPLICATIONS_DIR: os.path.normpath(folder) for prefix in ("Octo.", "Octopus.")}


def context_path(context: Mapping[str, Any], key: str, command: str) -> str:
    value = context.get(key)
    if not isinstance(value, str) or not value:
        raise BadInputError(
            f"{command}: the request context has no {key!r} (an absolute path)", hint=_AGENT_HINT
        )
    if "\x00" in value or not os.path.isabs(value):
        raise BadInputError(
            f"{command}: context {key!r} must be an absolute path", hint=_AGENT_HINT
        )
    return os.path.normpath(value)


@dataclass(frozen=True)
class Deployment:
    """The facts a journal entry records and a release folder is named after."""

    project: str
    project_id: str
    environment: str
    release: str
    deployment_id: str

    @classmethod
    def from_request(cls, request: Request, command: str) -> Deployment:
        variables = request.variable_map()
        deployment_id = request.context.get("deployment_id")

        def variable(name: str, *, required: bool) -> str:
            for prefix in ("Octo.", "Octopus."):
                value = variables.get(prefix + name)
                if value:
                    return value
            if required:
                raise BadInputError(
                    f"{command}: the variable Octo.{name} is missing",
                    hint="the engine sets it for every deployment; send the system variables",
                )
            return ""

        return cls(
            project=variable("Project.Name", required=True),
            project_id=variable("Project.Id", required=False),
            environment=variable("Environment.Name", required=True),
            release=variable("Release.Number", required=True),
            deployment_id=deployment_id
            if isinstance(deployment_id, str) and deployment_id
            else variable("Deployment.Id", required=False),
        )


def safe_component(name: str) -> str:
    """``name`` as one folder name: separators, control and reserved characters become
    ``_``; ``.``, ``..`` and the empty name become ``_`` so a folder never leaves its parent."""
    cleaned = _UNSAFE.sub("_", name).strip()
    if cleaned in ("", ".", ".."):
        return "_"
    return cleaned[:200]
