"""Which agent version a health check writes on its target.

An agent's version is written when it connects (engine/agent_updates.py). A health check reads
the version first (``agent.info``) and ends after its runner call, which waits while the agent
updates itself: writing the version it read would put the old one back over the new one, and
the target would show its update ``available`` for ever (a listening agent whose check was in
flight when its update began: tests/integration/test_agent_update.py). Transports without an
agent (SSH) have no connect to say it, so the check writes theirs.
"""

from __future__ import annotations

import secrets
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from octo_appliance.db import Target
from octo_appliance.engine.health import make_health_handler
from octo_appliance.transports.base import TargetAddress
from tests.engine.test_agent_versions import register

OLD, NEW = "1.0.0", "2.0.0"


class _Transport:
    """Answers ``agent.info`` with the version the target ran when the check began."""

    agent_transport: ClassVar[bool]

    def __init__(self, version: str) -> None:
        self.version = version

    async def info(self, target: TargetAddress, timeout: float | None = 30.0) -> dict[str, Any]:
        return {"agent_version": self.version, "work_dir": "/w", "cache_dir": "/c"}


class _Agent(_Transport):
    agent_transport = True


class _Ssh(_Transport):
    agent_transport = False


class _Dispatcher:
    """Runs the check's runner call; meanwhile the target's version changes to ``NEW`` (the
    agent updated itself and reconnected, which recorded it)."""

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport

    def transport_for(self, target: TargetAddress) -> _Transport:
        return self.transport

    async def run_on_targets(self, task: Any, targets: list[TargetAddress], make: Any) -> list[Any]:
        [target] = targets
        Target.update({Target.agent_version: NEW}).where(Target.id == target.id).execute()
        result = SimpleNamespace(details={"status": "Healthy"})
        return [SimpleNamespace(result=result, success=True)]


class _Task:
    id = "task-1"

    def __init__(self, target: TargetAddress) -> None:
        self.arguments = {"target_ids": [target.id]}
        self.lines: list[str] = []

    async def set_target_result(self, *args: Any, **kwargs: Any) -> None:
        pass

    def info(self, message: str, ref: Any = None) -> None:
        self.lines.append(message)

    def error(self, message: str, ref: Any = None) -> None:
        self.lines.append(message)


@pytest.mark.parametrize(
    ("transport", "shown"),
    [
        (_Agent(OLD), NEW),  # the version said at the agent's last connect stays
        (_Ssh("ssh (python 3.11)"), "ssh (python 3.11)"),  # the check is the only source
    ],
    ids=["agent", "ssh"],
)
async def test_a_check_writes_the_version_only_for_targets_without_an_agent(
    api: Any, monkeypatch: pytest.MonkeyPatch, transport: _Transport, shown: str
) -> None:
    api.post("/environments", json={"name": "Dev"})
    target = register(api, f"web-{secrets.token_hex(3)}")
    Target.update({Target.agent_version: OLD}).where(Target.id == target.id).execute()
    monkeypatch.setattr("octo_appliance.engine.health.load_addresses", lambda ids: [target])

    check = make_health_handler(_Dispatcher(transport))  # type: ignore[arg-type]
    task = _Task(target)
    await check(task)  # type: ignore[arg-type]

    row = Target.get_by_id(target.id)
    assert row.health_status == "Healthy"
    assert row.agent_version == shown
    assert row.last_seen is not None
