"""The deployment rig: a real task engine running the deployment kind on the built-in worker
(real runner processes), with rows created through the models; on SQLite and PostgreSQL.

The ``rig`` fixture is offered to every engine test by ``tests/engine/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from octo_appliance.builds.runner import prepare_runner
from octo_appliance.db import (
    Deployment,
    Environment,
    Interruption,
    Project,
    Release,
    ServerTask,
    new_id,
    utcnow,
)
from octo_appliance.db.tasks import FINAL_STATES
from octo_appliance.engine import lifecycles
from octo_appliance.engine.deployments import KIND, DeploymentServices, make_deployment_handler
from octo_appliance.engine.dispatch import Dispatcher
from octo_appliance.engine.tasks import TaskEngine, TaskKindRegistry
from octo_appliance.engine.tasks.log import read_lines
from octo_appliance.testing import OctoTestAppliance
from octo_appliance.transports.local import LocalTransport
from tests.engine.support import wait_until

T = TypeVar("T")


@dataclass
class Rig:
    octo: OctoTestAppliance
    engine: TaskEngine
    local: LocalTransport
    environment: Environment
    project: Project

    def release(
        self,
        steps: list[dict[str, Any]],
        variables: list[dict[str, Any]] | None = None,
        phases: list[dict[str, Any]] | None = None,
    ) -> Release:
        """A release whose sensitive variables are sealed as the documented format says."""
        variables = variables or []
        release_id = new_id(Release.id_prefix)
        plain = [{**v, "value": None} if v.get("sensitive") else v for v in variables]
        secret = {str(i): v["value"] for i, v in enumerate(variables) if v.get("sensitive")}
        sealed = None
        if secret:
            sealed = self.octo.appliance.vault.seal(
                json.dumps(secret), Release(id=release_id).aad("sealed_variables")
            )
        release: Release = Release.create(
            id=release_id,
            project=self.project,
            version=f"1.0.{secrets.randbelow(10**6)}",
            process_snapshot=steps,
            variables_snapshot=plain,
            sealed_variables=sealed,
            lifecycle_snapshot=phases
            or [{"name": "All", "environments": [self.environment.id], "automatic": False}],
        )
        return release

    def deploy(
        self, release: Release, *, not_before: datetime | None = None, **options: Any
    ) -> Deployment:
        settings: dict[str, Any] = {"skip_steps": [], "targets": [], "exclude_targets": []}
        settings.update(guided_failure=False, force=False)
        settings.update(options)
        return lifecycles.queue_deployment(
            self.engine.enqueue,
            release,
            self.environment,
            settings,
            created_by="test",
            not_before=not_before,
        )

    def in_engine(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the engine's event loop, where the transports' processes live."""
        loop = self.engine._loop
        if loop is None or loop.is_closed():  # stopped (a test may have replaced the engine)
            coro.close()
            raise RuntimeError("the engine's event loop is gone")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    def log(self, task_id: str) -> list[str]:
        return [line.message for line in read_lines(self.octo.appliance.vault, task_id, 0, 5000)]

    def answer(self, task_id: str, result: str, *, kind: str | None = None) -> Interruption:
        """Wait for the task's pending interruption and answer it as the API would."""

        def pending() -> Interruption | None:
            query = Interruption.select().where(
                (Interruption.task_id == task_id) & (Interruption.state == "pending")
            )
            found: Interruption | None = query.first()
            return found

        def asked_or_ended() -> bool:
            return pending() is not None or ServerTask.get_by_id(task_id).state in FINAL_STATES

        try:
            wait_until(asked_or_ended, f"an interruption of {task_id}", timeout=90)
            row = pending()
        except AssertionError:
            row = None
        if row is None:  # say what the task was doing, not only that nobody was asked
            task = ServerTask.get_by_id(task_id)
            lines = "\n".join(self.log(task_id)[-40:])
            raise AssertionError(
                f"task {task_id} asked nothing: state {task.state}, error {task.error!r}, "
                f"interruptions {[(i.kind, i.state) for i in Interruption.select()]}\n{lines}"
            )
        if kind is not None:
            assert row.kind == kind
        assert result in row.options
        Interruption.update(
            state="submitted", result=result, submitted_by="alice", submitted_at=utcnow()
        ).where(Interruption.id == row.id).execute()
        return row


@pytest.fixture
def rig(
    octo_appliance_factory: Callable[..., OctoTestAppliance],
    database_url: str | None,
    tmp_path: Path,
) -> Iterator[Rig]:
    """On SQLite and on PostgreSQL (the ``backend`` parameter of tests/conftest.py)."""
    octo = octo_appliance_factory(database=database_url)
    appliance = octo.appliance
    network: Any = SimpleNamespace(runner=prepare_runner(appliance.data_dir))
    local = LocalTransport(network)
    local.configure(
        enabled=True, root=tmp_path / "worker", user=None, appliance_user_for_tests=True
    )
    services = DeploymentServices(
        Dispatcher({"local": local}),
        appliance.plugins.step_types,
        appliance.vault,
        poll_interval=0.05,
    )
    kinds = TaskKindRegistry()
    kinds.register(KIND, make_deployment_handler(services))
    engine = TaskEngine(appliance.db, appliance.vault, "node-1", kinds=kinds, poll_interval=0.2)
    engine.start_in_thread()
    services.enqueue = engine.enqueue
    environment = Environment.create_new(name="Dev")
    project = Project.create_new(name="Shop")
    rig = Rig(octo, engine, local, environment, project)
    try:
        yield rig
    finally:
        with contextlib.suppress(Exception):  # its runners and fork server live in that loop
            rig.in_engine(local.close())
        engine.stop_in_thread()


def script(name: str, body: str, **fields: Any) -> dict[str, Any]:
    properties = {"syntax": "bash", "body": body, "run_on": "appliance"}
    return {"name": name, "type": "run-script", "properties": properties, **fields}
