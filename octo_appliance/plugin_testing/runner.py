"""Run one runner command in a real runner process, as an agent would, for plugin tests.

:func:`run_runner_command` starts the runner zipapp the appliance serves (built from this
installation's ``octo_runner``) with the interpreter agents use, writes the request document
on its stdin (docs/runner-protocol.md) and collects its events and result exactly as the agent's
runner host does. ``document`` fields beyond the standard ones (``extra``) are merged into the
request, which is how target-side code shipped by a plugin is named to the runner.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_runner import PROTOCOL_VERSION

from octo_appliance.agent.interpreter import python_command
from octo_appliance.agent.runner_host import Collected
from octo_appliance.runner_bundle import RunnerBuild, prepare_runner


@dataclass(frozen=True)
class RunnerOutcome:
    """What the runner reported: its events in order and the result the agent would send."""

    events: list[dict[str, Any]]
    result: dict[str, Any]
    stderr: str

    @property
    def success(self) -> bool:
        return bool(self.result.get("success"))

    @property
    def log(self) -> str:
        """The log lines' messages, one per line (masked by the runner)."""
        return "\n".join(
            str(event.get("message", "")) for event in self.events if event.get("type") == "log"
        )


def build_runner(directory: Path) -> RunnerBuild:
    """The runner zipapp, written under ``directory`` (as an appliance does at start)."""
    return prepare_runner(directory)


def run_runner_command(
    runner: RunnerBuild | Path,
    command: str,
    arguments: Mapping[str, Any],
    *,
    work_dir: Path,
    variables: Sequence[Mapping[str, Any]] = (),
    context: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
) -> RunnerOutcome:
    """Run ``command`` with ``arguments`` in a runner process in ``work_dir`` (created).

    ``variables`` are ``{"name", "value", "sensitive"}`` rows as the engine sends them
    (sensitive values are masked in the events); ``context`` is the document's context
    (``task_id`` defaults to ``task_test``)."""
    pyz = runner.path if isinstance(runner, RunnerBuild) else runner
    work_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "command": command,
        "arguments": dict(arguments),
        "variables": [dict(row) for row in variables],
        "work_dir": str(work_dir),
        "context": {"task_id": "task_test", **(context or {})},
        **(extra or {}),
    }
    done = subprocess.run(
        [*python_command(), str(pyz)],
        input=json.dumps(document).encode("utf-8"),
        capture_output=True,
        cwd=work_dir,
        timeout=timeout,
        check=False,
    )
    collected = Collected()
    events = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.strip():
            event = json.loads(line)
            events.append(event)
            collected.add(event)
    result = collected.outcome(done.returncode, work_dir)
    return RunnerOutcome(events, result, done.stderr.decode("utf-8", "replace"))
