"""docs/getting-started.md cannot rot: its ``bash`` blocks marked ``<!-- getting-started: run
-->`` run in order, as one bash script, against a real appliance and two real agents.

Only where things go changes: ``WORK``, ``OCTO_DATA_DIR`` (whose master key is kept beside it,
never in the machine's place), free ports in ``OCTO_LISTEN`` and ``OCTO_POLLING_LISTEN``, and
``bash build/run.sh``, which installs the checkout into ``.venv`` before it runs
``octo-appliance serve``: the test runs ``octo-appliance serve`` from the ``.venv`` it already
runs in (``$PWD/.venv`` links to it). What the page says comes out is checked against what did.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from octo_appliance.testing import keep_key_beside
from tests.fleet import clean_env
from tests.ports import free_port
from tests.serve_process import reachable_worker_dir

pytestmark = pytest.mark.slow

PAGE = Path(__file__).parents[2] / "docs" / "getting-started.md"
MARKER = "<!-- getting-started: run -->"
RUN_SH = "bash build/run.sh"
#: what build/run.sh runs once .venv is installed
SERVE = "octo-appliance serve"
#: guards against a hang, not a timing assertion
TIMEOUT = 900


def page_blocks(text: str) -> list[str]:
    """The marked blocks, in order."""
    return re.findall(re.escape(MARKER) + r"\n```bash\n(.*?)```", text, re.DOTALL)


def shown_variables(text: str) -> dict[str, object]:
    """The variables file as the page shows it."""
    after = re.split(r"The variables\s+file now reads:", text, maxsplit=1)[1]
    match = re.search(r"```json\n(.*?)```", after, re.DOTALL)
    assert match is not None
    return dict(json.loads(match[1]))


def stop_started(work: Path) -> None:
    """End the processes the page started and left running (it ends them itself when it gets
    that far); a pid counts only while its process still carries this run's ``WORK``."""
    for pid_file in [work / "appliance.pid", *work.glob("agents/*.pid")]:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            process = psutil.Process(int(pid_file.read_text().strip()))
            if process.environ().get("WORK") == str(work):
                process.send_signal(signal.SIGTERM)


def test_the_getting_started_page_runs(tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    blocks = page_blocks(text)
    script = "set -euo pipefail\n" + "\n".join(blocks)
    assert len(blocks) >= 8 and script.count(RUN_SH) == 1
    script = script.replace(RUN_SH, SERVE)

    venv_bin = Path(sys.prefix) / "bin"
    if not (venv_bin / "octo-appliance").exists() or not (venv_bin / "octo-agent").exists():
        pytest.skip(f"{venv_bin} holds no octo-appliance and octo-agent (not a venv install)")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(sys.prefix)
    work = tmp_path / "work"
    data_dir = tmp_path / "appliance-data"
    keep_key_beside(data_dir)
    env = clean_env(
        WORK=str(work),
        OCTO_DATA_DIR=str(data_dir),
        OCTO_LISTEN=f"127.0.0.1:{free_port()}",
        OCTO_POLLING_LISTEN=f"127.0.0.1:{free_port()}",
    )
    env.pop("OCTO_AGENT_HOME", None)
    if os.geteuid() == 0:
        env["OCTO_WORKER_DIR"] = str(reachable_worker_dir(data_dir))

    try:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        stop_started(work)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output + _logs(work)

    for name in ("web-1", "web-2"):
        assert f"[{name}] hello from {name} in Dev" in done.stdout
        assert f"[{name}] installed: <h1>Hello from {name} in Dev</h1>" in done.stdout
        page = (work / "sites" / name / "index.html").read_text()
        assert page == f"<h1>Hello from {name} in Dev</h1>\n"
    assert "No environments." in done.stdout
    for name in ("web-1", "web-2"):  # target list, after the health checks
        assert re.search(rf"^{name} +Dev +web +polling +Healthy ", done.stdout, re.MULTILINE)
    assert "  + Install: deploy-package" in done.stdout
    assert re.search(r"^Task task_\w+ success", done.stdout, re.MULTILINE)
    assert env.get("OCTO_API_KEY") is None and "OCTO-" not in output  # the key is never shown
    exported = json.loads((work / "hello-variables.json").read_text())
    shown = json.dumps(shown_variables(text)).replace("/home/you/octo-getting-started", str(work))
    assert exported == json.loads(shown)


def _logs(work: Path) -> str:
    parts = []
    for log in [work / "appliance.log", *sorted(work.glob("agents/*.log"))]:
        if log.is_file():
            parts.append(f"\n--- {log.name}\n" + log.read_text(errors="replace")[-4000:])
    return "".join(parts)
