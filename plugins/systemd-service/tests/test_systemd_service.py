"""``systemd-service``: its target-side command in a real runner with a fake ``systemctl`` on
the runner's PATH (this machine runs no systemd: ``systemctl is-system-running`` says
``offline``), its property schema, and a deployment on a real agent that installs a unit from
the deployed package, then rolls a broken update back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from octo_systemd_service.plugin import SystemdService

from octo_appliance.plugin_api import property_problems
from octo_appliance.steps.target_runs import CommandRun, run_in_runner
from tests.first_party import BAD_UNIT, GOOD_UNIT, FakeSystemd, install_then_roll_back
from tests.plugin_fleet import fleet_with_plugins

GOOD, BAD = GOOD_UNIT, BAD_UNIT


@pytest.fixture
def systemd(tmp_path: Path) -> FakeSystemd:
    return FakeSystemd(tmp_path / "systemd")


def apply(systemd: FakeSystemd, tmp_path: Path, unit_text: str, **extra: object) -> CommandRun:
    source = tmp_path / "package" / "app.service"
    source.parent.mkdir(exist_ok=True)
    source.write_text(unit_text)
    arguments = {
        "unit_name": "app.service",
        "unit_file": str(source),
        "unit_dir": str(systemd.units),
        "wait_seconds": 3,
        "settle_seconds": 0,
        **extra,
    }
    env = {**os.environ, "PATH": systemd.path}
    return run_in_runner(
        SystemdService, "systemd-service", arguments, work_dir=tmp_path / "run", env=env
    )


def test_a_new_unit_is_installed_reloaded_enabled_restarted_and_active(
    systemd: FakeSystemd, tmp_path: Path
) -> None:
    run = apply(systemd, tmp_path, GOOD)
    assert run.success, (run.messages, run.stderr)
    assert (systemd.units / "app.service").read_text() == GOOD
    assert (systemd.units / "app.service").stat().st_mode & 0o777 == 0o644
    assert systemd.calls()[:3] == ["daemon-reload", "enable app.service", "restart app.service"]
    assert run.outputs == {"UnitName": "app.service", "UnitChanged": "True", "UnitState": "active"}


def test_a_broken_update_puts_the_previous_unit_back(systemd: FakeSystemd, tmp_path: Path) -> None:
    assert apply(systemd, tmp_path, GOOD).success
    systemd.reset_calls()
    run = apply(systemd, tmp_path, BAD)
    assert not run.success
    assert run.result["message"] == (
        "app.service did not become active (failed); the previous unit was restored: "
        "previous unit active"
    )
    assert (systemd.units / "app.service").read_text() == GOOD
    assert systemd.state("app.service") == "active"
    calls = systemd.calls()
    # the broken unit was loaded and started, then the old one reloaded and restarted
    assert calls.count("daemon-reload") == 2 and calls.count("restart app.service") == 2
    assert calls.index("status app.service --no-pager --lines 20") < calls.index("daemon-reload", 1)
    assert "restored the previous " + str(systemd.units / "app.service") in run.messages


def test_a_broken_new_unit_is_removed(systemd: FakeSystemd, tmp_path: Path) -> None:
    run = apply(systemd, tmp_path, BAD, enable=False)
    assert not run.success
    assert "the new unit removed: removed" in run.result["message"]
    assert not (systemd.units / "app.service").exists()
    assert "enable app.service" not in systemd.calls()


def test_an_unchanged_unit_is_restarted_without_being_rewritten(
    systemd: FakeSystemd, tmp_path: Path
) -> None:
    assert apply(systemd, tmp_path, GOOD).success
    run = apply(systemd, tmp_path, GOOD)
    assert run.success
    assert run.outputs["UnitChanged"] == "False"
    assert f"{systemd.units / 'app.service'} is unchanged" in run.messages


def test_a_target_without_systemctl_says_so(tmp_path: Path, systemd: FakeSystemd) -> None:
    run = apply(systemd, tmp_path, GOOD, systemctl="no-such-systemctl")
    assert not run.success
    assert "no-such-systemctl is not on this target's PATH" in run.result["message"]


def test_the_properties_are_declared_and_checked() -> None:
    step = SystemdService()
    assert [p.field for p in property_problems(step, {})] == ["unit_name", "unit_file"]
    problems = property_problems(step, {"unit_name": "app", "unit_file": "relative/app.service"})
    assert {p.field for p in problems} == {"unit_name", "unit_file"}
    ok = {"unit_name": "app.service", "unit_file": "#{Octopus.Action[I].Output.X}/app.service"}
    assert property_problems(step, ok) == []


@pytest.mark.slow
def test_a_deployment_installs_the_unit_and_rolls_a_broken_one_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd = FakeSystemd(tmp_path / "systemd")
    # the agent's environment is the runner's: the fake systemctl is on its PATH
    monkeypatch.setenv("PATH", systemd.path)
    with fleet_with_plugins(tmp_path / "fleet", ["systemd-service"]) as fleet:
        install_then_roll_back(fleet, systemd)
