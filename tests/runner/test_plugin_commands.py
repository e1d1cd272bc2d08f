"""Plugin runner commands: a step type's target-side code, bundled by the appliance and run by
a real runner from the bundle named by path and SHA-256 (docs/runner-protocol.md, "Plugin
commands")."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from octo_appliance.exceptions import PluginError
from octo_appliance.plugin_api import StepTypeRegistry
from octo_appliance.plugin_loading.bundles import BundleStore, bundle_bytes
from octo_appliance.steps.base import StepType, TargetCode
from octo_appliance.steps.target_runs import run_in_runner

from .conftest import RunRunner
from .support import make_request

SAMPLE = TargetCode(
    "tests.runner.sample_target",
    {"sample-greet": "commands:greet", "sample-wait": "commands:wait_for_cancel"},
)


class Sample(StepType):
    name = "sample"
    target_code = SAMPLE


def test_a_plugin_command_uses_the_runner_api(tmp_path: Path) -> None:
    run = run_in_runner(
        Sample,
        "sample-greet",
        {"who": "#{Name}"},
        work_dir=tmp_path,
        variables={"Name": "ada", "Secret": "s3cr3t-value", "Greeting": "hi"},
        sensitive=["Secret"],
    )
    assert run.success, (run.events, run.stderr)
    assert "HELLO ADA" in run.messages
    assert "the secret is ********" in run.messages  # sensitive variables are masked
    assert "token ********" in run.messages  # so is a sensitive output, once set
    assert "from the script hi" in run.messages  # scripts get #{...} and the helpers
    assert run.outputs == {"Greeted": "ada", "Token": "tok-ada", "FromScript": "yes"}


def test_a_bundle_is_reproducible_and_named_by_its_hash(tmp_path: Path) -> None:
    first = bundle_bytes("sample", SAMPLE)
    assert bundle_bytes("sample", SAMPLE) == first
    bundle = BundleStore(tmp_path).bundle_for("sample", SAMPLE)
    assert bundle.path.name == hashlib.sha256(first).hexdigest() + ".zip"
    assert bundle.path.read_bytes() == first
    with zipfile.ZipFile(bundle.path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("octo-commands.json"))
    # the parents are empty stubs: nothing of the appliance-side package reaches the target
    assert "tests/__init__.py" in names and "tests/runner/__init__.py" in names
    assert "tests/runner/sample_target/helper.py" in names
    assert not any(name.endswith(".pyc") for name in names)
    assert manifest["commands"]["sample-greet"] == "tests.runner.sample_target.commands:greet"
    assert BundleStore(tmp_path).get(bundle.sha256) is None  # a store serves its own only


def test_a_bundle_whose_hash_differs_is_not_loaded(run_runner: RunRunner, tmp_path: Path) -> None:
    bundle = BundleStore(tmp_path).bundle_for("sample", SAMPLE)
    plugin = {"name": "sample", "sha256": "0" * 64, "path": str(bundle.path)}
    request = make_request("sample-greet", {"who": "x"}, work_dir=tmp_path / "w", plugin=plugin)
    result = run_runner(request)
    assert result.exit_code == 1
    assert "nothing of it was loaded" in result.result["message"]
    assert "HELLO" not in " ".join(result.logs())


def test_a_plugin_command_without_its_bundle_is_unknown(
    run_runner: RunRunner, tmp_path: Path
) -> None:
    """What a runner says when an agent from before bundles drops the ``plugin`` field."""
    result = run_runner(make_request("sample-greet", {}, work_dir=tmp_path))
    assert result.exit_code == 2
    assert "unknown command 'sample-greet'" in result.result["message"]


def test_a_bundle_for_another_api_version_is_refused(run_runner: RunRunner, tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("octo-commands.json", json.dumps({"api": 99, "commands": {}}))
    sha256 = hashlib.sha256(bundle.read_bytes()).hexdigest()
    plugin = {"name": "old", "sha256": sha256, "path": str(bundle)}
    result = run_runner(make_request("x-y", {}, work_dir=tmp_path / "w", plugin=plugin))
    assert result.exit_code == 1
    assert "runner plugin API 99; this runner has API 1" in result.result["message"]


def test_a_plugin_cannot_replace_a_built_in_command() -> None:
    code = TargetCode("tests.runner.sample_target", {"run-script": "commands:greet"})
    with pytest.raises(PluginError, match="built into the runner: not replaceable"):
        bundle_bytes("evil", code)
    with pytest.raises(PluginError, match="has no module"):
        bundle_bytes("typo", TargetCode("tests.runner.sample_target", {"a-b": "nothere:run"}))


def test_a_package_inside_a_wheel_is_bundled_like_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The single executable imports plugins from wheels: their target-side package is read
    from the archive, and gives the bundle a folder gives."""
    folder = Path(__file__).with_name("sample_target")
    wheel = tmp_path / "octo_zipped-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in sorted(folder.glob("*.py")):
            archive.write(path, f"octo_zipped/target/{path.name}")
        archive.writestr("octo_zipped/__init__.py", "APPLIANCE_SIDE = True\n")
    monkeypatch.syspath_prepend(str(wheel))
    code = TargetCode("octo_zipped.target", {"sample-greet": "commands:greet"})

    class Zipped(StepType):
        name = "zipped"
        target_code = code

    with zipfile.ZipFile(BundleStore(tmp_path / "b").bundle_for("zipped", code).path) as bundle:
        names = sorted(bundle.namelist())
        assert bundle.read("octo_zipped/__init__.py") == b""  # the parent stays behind
    expected = sorted(f"octo_zipped/target/{p.name}" for p in folder.glob("*.py"))
    assert names == sorted(["octo-commands.json", "octo_zipped/__init__.py", *expected])
    run = run_in_runner(
        Zipped, "sample-greet", {"who": "zip"}, work_dir=tmp_path / "w", variables={"Greeting": "x"}
    )
    assert run.success, (run.messages, run.stderr)
    assert "HELLO ZIP" in run.messages


def test_a_bad_target_code_declaration_is_refused_at_registration() -> None:
    class Evil(StepType):
        name = "evil"
        target_code = TargetCode("tests.runner.sample_target", {"deploy-package": "commands:x"})

    registry = StepTypeRegistry()
    with pytest.raises(PluginError, match="declares bad target code: runner command 'deploy-pa"):
        registry.add(Evil)
    Evil.target_code = TargetCode("tests.runner.sample_target", {"a-b": "no colon"})
    with pytest.raises(PluginError, match="'no colon' is not 'module:function'"):
        registry.add(Evil)
