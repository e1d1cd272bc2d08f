"""A step plugin's target-side code on an SSH target: the bundle goes over SFTP into
``plugins/<sha256>.zip`` (checked against its hash before it is renamed into place), is reused
by later runs and connections, and the runner there loads the command from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.plugin_loading.bundles import BundleStore
from octo_appliance.transports.base import PluginBundle, RunnerCommand
from tests.runner.test_plugin_commands import SAMPLE
from tests.ssh.conftest import Rig

pytestmark = pytest.mark.slow  # and needs an sshd: tests/ssh/conftest.py marks every test here


def greet(bundle: PluginBundle) -> RunnerCommand:
    return RunnerCommand(
        task_id="tsk_plugin",
        command="sample-greet",
        arguments={"who": "#{Name}"},
        variables=[
            {"name": "Name", "value": "ssh", "sensitive": False},
            {"name": "Greeting", "value": "hi", "sensitive": False},
            {"name": "Secret", "value": "s3cr3t-value", "sensitive": True},
        ],
        plugin=bundle,
    )


async def run(rig: Rig, target: Any, command: RunnerCommand) -> tuple[Any, list[str]]:
    lines: list[str] = []

    def collect(event: dict[str, Any]) -> None:
        if event.get("type") == "log":
            lines.append(str(event.get("message")))

    return await rig.transport.run_runner(target, command, collect), lines


async def test_a_plugin_command_runs_from_its_uploaded_bundle_which_is_reused(
    rig: Rig, tmp_path: Path
) -> None:
    bundle = BundleStore(tmp_path / "bundles").bundle_for("sample", SAMPLE)
    target = rig.add("plugged")
    result, lines = await run(rig, target, greet(bundle))
    assert result.success, (result.message, lines)
    assert "HELLO SSH" in lines
    assert "the secret is ********" in lines
    assert "from the script hi" in lines
    names = {v["name"]: v["value"] for v in result.output_variables if not v.get("sensitive")}
    assert names == {"Greeted": "ssh", "FromScript": "yes"}
    uploaded = rig.root / "plugged" / "plugins" / f"{bundle.sha256}.zip"
    assert uploaded.read_bytes() == bundle.path.read_bytes()
    first = uploaded.stat().st_mtime_ns
    # reused: by the next run, and by a new connection (found on the target, not re-sent)
    assert (await run(rig, target, greet(bundle)))[0].success
    await rig.transport.pool.close()  # type: ignore[union-attr]
    assert (await run(rig, target, greet(bundle)))[0].success
    assert uploaded.stat().st_mtime_ns == first
    assert [p.name for p in uploaded.parent.iterdir()] == [uploaded.name]


async def test_a_bundle_that_does_not_match_its_hash_is_not_placed_or_run(
    rig: Rig, tmp_path: Path
) -> None:
    bundle = BundleStore(tmp_path / "bundles").bundle_for("sample", SAMPLE)
    forged = dataclasses.replace(bundle, sha256="0" * 64)
    target = rig.add("forged")
    with pytest.raises(Exception, match="is not 0000"):
        await run(rig, target, greet(forged))
    assert list((rig.root / "forged" / "plugins").iterdir()) == []
