"""The example plugins of docs/plugins.md pass their own tests, run as their author runs
them: pytest in the plugin's folder, the kit (``octo_appliance.testing``) loaded through its
pytest11 entry point, the appliance's services and built-in worker running in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize("example", ["greeter", "timed_listening"])
def test_the_example_plugin_passes_its_tests(example: str) -> None:
    folder = EXAMPLES / example
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, "--rootdir", str(folder), str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
