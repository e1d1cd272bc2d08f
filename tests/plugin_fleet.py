"""A fleet whose appliance loads first-party plugins from their source folders, the way an
operator's plugin folder does: a one-line module per plugin in ``<data dir>/plugins/`` that
re-exports the plugin's hooks, with the plugin's ``src`` folder on the appliance's
``PYTHONPATH``. Agents get nothing: they fetch the plugins' target-side code on demand."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.fleet import Fleet, running_fleet

ROOT = Path(__file__).resolve().parents[1]


def plugin_src(distribution: str) -> Path:
    """``plugins/<distribution>/src`` of this repository."""
    return ROOT / "plugins" / distribution / "src"


@contextlib.contextmanager
def fleet_with_plugins(root: Path, plugins: Mapping[str, str], **kwargs: Any) -> Iterator[Fleet]:
    """A started fleet loading ``plugins`` (plugin module -> distribution folder name)."""
    folder = root / "appliance-data" / "plugins"
    folder.mkdir(parents=True)
    for module in plugins:
        shim = folder / (module.replace(".", "_") + "_shim.py")
        shim.write_text(f"from {module} import *  # noqa: F403\n", encoding="utf-8")
    path = os.pathsep.join(str(plugin_src(name)) for name in plugins.values())
    env = {"PYTHONPATH": path, **kwargs.pop("serve_env", {})}
    with running_fleet(root, serve_env=env, **kwargs) as fleet:
        yield fleet


def deploy(fleet: Fleet, steps: list[dict[str, Any]], timeout: float = 180) -> dict[str, Any]:
    """A project with ``steps``, a release, a deployment to Dev; the finished task."""
    project = fleet.call("POST", "/projects", 201, json={"name": f"p-{os.urandom(4).hex()}"})
    fleet.call("PUT", f"/projects/{project['id']}/process", json={"steps": steps})
    release = fleet.call("POST", f"/projects/{project['id']}/releases", 201, json={})
    body = {"release": release["id"], "environment": "Dev"}
    deployment = fleet.call("POST", "/deployments", 201, json=body)
    return fleet.wait_task(deployment["task_id"], timeout=timeout)


def task_log(fleet: Fleet, task_id: str) -> str:
    return "\n".join(line["message"] for line in fleet.log(task_id))
