"""The handlers in-process (real runner, no wire): the target mutex and parameter checks."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.agent.handlers import WAITING_MESSAGE, AgentHandlers
from octo_appliance.agent.home import AgentConfig, Home
from octo_appliance.comms import CallFailed

from .conftest import RunnerBuild
from .support import incoming

STAMPS = """\
set_octovariable start "$(date +%s%N)"
sleep 0.2
set_octovariable end "$(date +%s%N)"
"""


@pytest.fixture
def handlers(tmp_path: Path, runner_build: RunnerBuild) -> AgentHandlers:
    home = Home(tmp_path / "h")
    home.ensure()
    # the runner is already cached, so no connection is needed to fetch it
    shutil.copy(runner_build.path, home.runners_dir / runner_build.path.name)
    config = AgentConfig(name="web", mode="listening", target_id="tgt_1")
    return AgentHandlers(home, config, lambda request: None)


def run_params(
    build: RunnerBuild, task_id: str, body: str, exclusive: bool = True
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "runner": build.ref,
        "command": "run-script",
        "arguments": {"syntax": "bash", "body": body},
        "exclusive": exclusive,
    }


async def test_the_mutex_runs_exclusive_tasks_one_after_the_other(
    handlers: AgentHandlers, runner_build: RunnerBuild
) -> None:
    events: list[list[dict[str, Any]]] = [[], [], []]
    results = await asyncio.gather(
        *(
            handlers(incoming("runner.run", run_params(runner_build, f"t{i}", STAMPS), events[i]))
            for i in range(3)
        )
    )

    spans = sorted(
        ({v["name"]: int(v["value"]) for v in r["output_variables"]} for r in results),
        key=lambda s: s["start"],
    )
    assert all(later["start"] >= earlier["end"] for earlier, later in itertools.pairwise(spans))
    waiting = [e for evs in events for e in evs if e.get("message") == WAITING_MESSAGE]
    assert len(waiting) == 2
    assert waiting[0]["stream"] == "agent" and waiting[0]["type"] == "log"
    assert not handlers.mutex.locked()


async def test_a_cancelled_waiter_does_not_hold_the_mutex(
    handlers: AgentHandlers, runner_build: RunnerBuild
) -> None:
    events: list[dict[str, Any]] = []
    first = asyncio.create_task(
        handlers(incoming("runner.run", run_params(runner_build, "a", "sleep 0.5"), events))
    )
    while not handlers.mutex.locked():
        await asyncio.sleep(0.01)
    waiter = asyncio.create_task(
        handlers(incoming("runner.run", run_params(runner_build, "b", "true"), events))
    )
    while not any(e.get("message") == WAITING_MESSAGE for e in events):
        await asyncio.sleep(0.01)

    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    result = await first

    assert result["success"]
    assert not handlers.mutex.locked()
    assert handlers.work.attempts("b") == []  # it never started


async def test_without_a_cached_runner_or_connection_the_run_fails_clearly(
    handlers: AgentHandlers, runner_build: RunnerBuild
) -> None:
    params = run_params(runner_build, "t", "true")
    params["runner"] = {"version": "0.0.1", "sha256": "00" * 32}

    with pytest.raises(CallFailed) as failed:
        await handlers(incoming("runner.run", params, []))

    assert failed.value.code == "runner_unavailable"


@pytest.mark.parametrize(
    "change",
    [
        {"runner": "0.1.0"},
        {"runner": {"version": "../../x", "sha256": "00" * 32}},
        {"command": ""},
        {"arguments": []},
        {"variables": {"a": 1}},
        {"exclusive": "yes"},
        {"task_id": "a/b"},
    ],
)
async def test_malformed_runner_run_is_a_bad_request(
    handlers: AgentHandlers, runner_build: RunnerBuild, change: dict[str, Any]
) -> None:
    params = {**run_params(runner_build, "t", "true"), **change}

    with pytest.raises(CallFailed) as refused:
        await handlers(incoming("runner.run", params, []))

    assert refused.value.code == "bad_request"
    assert refused.value.hint


async def test_unknown_methods_are_refused(handlers: AgentHandlers) -> None:
    with pytest.raises(CallFailed) as refused:
        await handlers(incoming("shell.exec", {}, []))
    assert refused.value.code == "unknown_method"


async def test_cache_put_needs_an_upload(handlers: AgentHandlers) -> None:
    with pytest.raises(CallFailed) as refused:
        await handlers(incoming("cache.put", {"sha256": "00" * 32, "length": 1, "name": "x"}, []))
    assert refused.value.code == "bad_request"


async def test_a_work_dir_that_cannot_be_created_is_a_clear_failure(
    handlers: AgentHandlers, runner_build: RunnerBuild
) -> None:
    shutil.rmtree(handlers.home.work_dir)
    handlers.home.work_dir.write_text("not a directory")

    with pytest.raises(CallFailed) as failed:
        await handlers(incoming("runner.run", run_params(runner_build, "t", "true"), []))

    assert failed.value.code == "work_dir_failed"
    assert failed.value.hint
