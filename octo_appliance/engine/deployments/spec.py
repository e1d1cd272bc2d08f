"""A deployment's inputs as the engine reads them: the steps of the release snapshot and the
options of the deployment task, with defaults filled in and types checked.

The API validates a process when it is saved; this module still checks what it reads, because
a release snapshot may predate a rule and a task's arguments are only JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from octo_appliance.exceptions import OctoError


class SpecError(OctoError):
    """The snapshot or the task arguments cannot be read."""


@dataclass(frozen=True)
class StepSpec:
    """One step of a release's process snapshot (see ``db/deployments.py``)."""

    name: str
    type: str
    roles: tuple[str, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)
    condition: Any = "success"
    environments: tuple[str, ...] = ()
    start_with_previous: bool = False
    window: int | None = None
    required: bool = False
    retries: int = 0
    timeout: int | None = None
    #: kept in the process but never run (the portal's "disable")
    disabled: bool = False

    @classmethod
    def from_snapshot(cls, index: int, raw: Any) -> StepSpec:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise SpecError(f"step {index + 1} of the release's process has no name")
        name = raw["name"]
        step_type = raw.get("type")
        if not isinstance(step_type, str) or not step_type:
            raise SpecError(f"step '{name}' has no step type")
        properties = raw.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise SpecError(f"step '{name}': properties must be an object")
        return cls(
            name=name,
            type=step_type,
            roles=_strings(raw.get("roles"), name, "roles"),
            properties=dict(properties),
            condition=raw.get("condition") or "success",
            environments=_strings(raw.get("environments"), name, "environments"),
            start_with_previous=bool(raw.get("start_with_previous", False)),
            window=_count(raw.get("window"), name, "window", minimum=1),
            required=bool(raw.get("required", False)),
            retries=_count(raw.get("retries"), name, "retries", minimum=0) or 0,
            timeout=_count(raw.get("timeout"), name, "timeout", minimum=1),
            disabled=bool(raw.get("disabled", False)),
        )


def _strings(value: Any, step: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"step '{step}': {key} must be a list of names")
    return tuple(value)


def _count(value: Any, step: str, key: str, *, minimum: int) -> int | None:
    if value is None or (value == 0 and minimum > 0):
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"step '{step}': {key} must be a whole number of at least {minimum}")
    return value


@dataclass(frozen=True)
class DeploymentOptions:
    """The deployment task's arguments (queued by ``POST /api/v1/deployments``)."""

    deployment_id: str
    release_id: str
    environment_id: str
    skip_steps: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    exclude_targets: tuple[str, ...] = ()
    guided_failure: bool = False
    force: bool = False
    not_before: datetime | None = None

    @classmethod
    def from_arguments(cls, args: Mapping[str, Any]) -> DeploymentOptions:
        missing = [k for k in ("deployment_id", "release_id", "environment_id") if not args.get(k)]
        if missing:
            raise SpecError("the deployment task lacks " + ", ".join(missing))
        return cls(
            deployment_id=str(args["deployment_id"]),
            release_id=str(args["release_id"]),
            environment_id=str(args["environment_id"]),
            skip_steps=tuple(str(s) for s in args.get("skip_steps") or ()),
            targets=tuple(str(t) for t in args.get("targets") or ()),
            exclude_targets=tuple(str(t) for t in args.get("exclude_targets") or ()),
            guided_failure=bool(args.get("guided_failure", False)),
            force=bool(args.get("force", False)),
            not_before=parse_time(args.get("not_before") or args.get("queue_time")),
        )


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as naive UTC (how the database keeps times); None stays None."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(f"not_before {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
