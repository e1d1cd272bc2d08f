"""Running a step type's target-side command in a real runner process, without an agent:
for plugin authors' tests (docs/plugins.md, "Testing target-side code").

The runner is the zipapp the appliance serves (built from the installed ``octo_runner``,
without bytecode: quicker to build, the same behaviour), the command comes from the step
type's bundle exactly as an agent delivers it (by path and SHA-256), and the request is
written on stdin like the agent writes it. What comes back is every event the runner wrote.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_runner import PROTOCOL_VERSION

from octo_appliance.builds.runner import archive_bytes
from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_loading.bundles import BundleStore
from octo_appliance.steps.base import StepType


@dataclass(frozen=True)
class CommandRun:
    """What one runner process did: its exit code and its events, in order."""

    exit_code: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        return next((e for e in reversed(self.events) if e.get("type") == "result"), {})

    @property
    def success(self) -> bool:
        return bool(self.result.get("success")) and self.exit_code == 0

    @property
    def messages(self) -> list[str]:
        return [str(e.get("message", "")) for e in self.events if e.get("type") == "log"]

    @property
    def outputs(self) -> dict[str, str]:
        found = (e for e in self.events if e.get("type") == "output-variable")
        return {str(e["name"]): str(e["value"]) for e in found}


@functools.cache
def _runner_archive() -> Path:
    """The runner zipapp, built once per process into a private temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="octo-runner-"))
    path = folder / "octo-runner.pyz"
    path.write_bytes(archive_bytes(bytecode=False))
    return path


def run_in_runner(
    step_type: type[StepType],
    command: str,
    arguments: Mapping[str, Any],
    *,
    work_dir: Path,
    variables: Mapping[str, str] | None = None,
    sensitive: Sequence[str] = (),
    context: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> CommandRun:
    """Run ``command`` of ``step_type``'s target-side code in a fresh runner process in
    ``work_dir`` (created); ``sensitive`` names the variables marked sensitive; ``env`` is
    the runner's environment (default: this process's)."""
    code = step_type.target_code
    if code is None or command not in code.commands:
        raise PluginError(f"step type {step_type.name!r} ships no runner command {command!r}")
    work_dir.mkdir(parents=True, exist_ok=True)
    bundle = BundleStore(work_dir / "bundles").bundle_for(step_type.name, code)
    document = {
        "protocol": PROTOCOL_VERSION,
        "command": command,
        "arguments": dict(arguments),
        "variables": [
            {"name": name, "value": value, "sensitive": name in sensitive}
            for name, value in (variables or {}).items()
        ],
        "work_dir": str((work_dir / "work").absolute()),
        "context": {"task_id": "test", **(context or {})},
        "plugin": {**bundle.as_param(), "path": str(bundle.path.absolute())},
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(_runner_archive())],
        input=json.dumps(document).encode("utf-8"),
        capture_output=True,
        cwd=work_dir,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
    events = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines() if line]
    return CommandRun(done.returncode, events, done.stderr.decode("utf-8", "replace"))
