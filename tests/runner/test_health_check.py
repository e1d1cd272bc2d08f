"""``health-check``: the facts it reports, and how a health script sets the status."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunRunner
from .support import make_request, script


def _health(tmp_path: Path, **arguments: Any) -> dict[str, Any]:
    cache = tmp_path / "cache"
    cache.mkdir()
    paths = {"work": str(tmp_path / "work" / "not-yet-created"), "cache": str(cache)}
    return make_request(
        "health-check",
        {"agent_version": "9.8.7", "paths": paths, **arguments},
        work_dir=tmp_path / "work",
    )


def test_facts(run_runner: RunRunner, tmp_path: Path) -> None:
    done = run_runner(_health(tmp_path))
    assert done.exit_code == 0
    result = done.result
    assert (result["success"], result["status"], result["message"]) == (True, "Healthy", "Healthy")
    details = result["details"]
    assert details["system"] == platform.system()
    assert details["cpu_count"] >= 1
    memory = details["memory"]
    assert 0 < memory["available_bytes"] <= memory["total_bytes"]
    for name in ("work", "cache"):
        disk = details["disks"][name]
        assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    assert details["disks"]["work"]["path"].endswith("not-yet-created")
    assert details["python"]["version"].count(".") == 2
    assert details["runner_version"] == "0.1.0"
    assert details["protocol"] == 1
    assert details["agent_version"] == "9.8.7"
    logs = " | ".join(done.logs("info", "runner"))
    for fragment in ("OS: ", "CPUs: ", "Memory: ", "Disk (cache, ", "Disk (work, ", "agent 9.8.7"):
        assert fragment in logs


def test_low_disk_space_is_a_warning(run_runner: RunRunner, tmp_path: Path) -> None:
    done = run_runner(_health(tmp_path, min_free_disk_bytes=2**62))
    assert done.exit_code == 0
    assert done.result["status"] == "HealthyWithWarnings"
    assert done.result["success"] is True
    assert any("has less than" in w for w in done.logs("warning", "runner"))


@pytest.mark.parametrize(
    ("body", "status", "exit_code"),
    [
        ("echo all good", "Healthy", 0),
        ("write_warning 'certificate expires soon'", "HealthyWithWarnings", 0),
        ("echo 'noise on stderr' >&2", "HealthyWithWarnings", 0),
        ("echo broken; exit 4", "Unhealthy", 4),
        ("fail_step 'service is down'", "Unhealthy", 1),
    ],
)
def test_health_script_sets_the_status(
    run_runner: RunRunner, tmp_path: Path, body: str, status: str, exit_code: int
) -> None:
    done = run_runner(_health(tmp_path, script=script("bash", body)))
    assert done.exit_code == exit_code
    assert done.result["status"] == status
    assert done.result["success"] is (status != "Unhealthy")
    assert done.result["details"]["agent_version"] == "9.8.7"
    if body == "fail_step 'service is down'":
        assert done.result["message"] == "Unhealthy: service is down"
