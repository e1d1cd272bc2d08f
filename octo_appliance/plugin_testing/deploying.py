"""Deploy a process end to end through the API of an in-process appliance whose services run
(``octo_appliance_factory(services=True)``), for a plugin author's tests of ``execute``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

FINAL_STATES = frozenset({"success", "failed", "canceled", "timed_out"})


class Api(Protocol):
    def get(self, path: str, **kwargs: Any) -> Any: ...

    def post(self, path: str, **kwargs: Any) -> Any: ...

    def put(self, path: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class DeploymentOutcome:
    """The finished deployment's task (``state``, ``error``...) and its log as text."""

    task: dict[str, Any]
    log: str

    @property
    def state(self) -> str:
        return str(self.task["state"])


def _ok(response: Any, status: int = 200) -> Any:
    if response.status_code != status:
        raise AssertionError(f"{response.status_code} from the API: {response.text}")
    return response.json()


def _ensure(api: Api, collection: str, name: str, body: dict[str, Any]) -> None:
    if not _ok(api.get(collection, params={"name": name}))["items"]:
        _ok(api.post(collection, json=body), 201)


def deploy_steps(
    api: Api,
    steps: Sequence[dict[str, Any]],
    *,
    project: str = "Plugin test",
    environment: str = "Test",
    timeout: float = 120.0,
) -> DeploymentOutcome:
    """Save ``steps`` as the process of ``project`` (created with ``environment`` and a
    lifecycle through it when missing), release, deploy, and wait for the task to end."""
    _ensure(api, "/environments", environment, {"name": environment})
    phases = [{"name": environment, "environments": [environment]}]
    lifecycle = f"{project} lifecycle"
    _ensure(api, "/lifecycles", lifecycle, {"name": lifecycle, "phases": phases})
    _ensure(api, "/projects", project, {"name": project, "lifecycle": lifecycle})
    _ok(api.put(f"/projects/{project}/process", json={"steps": list(steps)}))
    release = _ok(api.post(f"/projects/{project}/releases", json={}), 201)
    body = {"release": release["id"], "environment": environment}
    task_id = _ok(api.post("/deployments", json=body), 201)["task_id"]
    deadline = time.monotonic() + timeout
    while (task := _ok(api.get(f"/tasks/{task_id}")))["state"] not in FINAL_STATES:
        if time.monotonic() > deadline:
            raise AssertionError(f"the deployment did not finish in {timeout} s: {task}")
        time.sleep(0.1)
    lines = _ok(api.get(f"/tasks/{task_id}/log"))["items"]
    return DeploymentOutcome(task, "\n".join(str(line["message"]) for line in lines))
