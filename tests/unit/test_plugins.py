"""The plugin manager: built-ins like third parties, duplicates and misspelt hooks fail at start."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.agent import contract
from octo_appliance.comms import CallFailed, Response
from octo_appliance.exceptions import PluginError
from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugin_api.transport_context import agent_context
from octo_appliance.plugin_api.transports import AgentCall, AgentTransport
from octo_appliance.plugins import create_plugin_manager
from octo_appliance.steps.base import StepType
from octo_appliance.transports import BUILTIN_MODULES
from octo_appliance.transports.base import (
    CallOptions,
    RunnerCommand,
    TargetAddress,
    Transport,
)
from octo_appliance.transports.ssh import SshTransport
from tests.plugin_wheels import plugin_source


class Echo(StepType):
    name = "echo"
    summary = "Echo a message"


class Carrier(Transport):
    name = "carrier-pigeon"
    summary = "Very slow"


def make_plugin(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.OCTO_PLUGIN_API = 2  # type: ignore[attr-defined]
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, fn)
    return module


def steps_hook(*classes: type[StepType]) -> object:
    @hookimpl
    def register_step_types(registry):  # type: ignore[no-untyped-def]
        for cls in classes:
            registry.add(cls)

    return register_step_types


def test_extra_plugin_registers_step_type_and_transport() -> None:
    @hookimpl
    def register_transports(registry):  # type: ignore[no-untyped-def]
        registry.add(Carrier)

    plugin = make_plugin(
        "my_plugin", register_step_types=steps_hook(Echo), register_transports=register_transports
    )
    plugins = create_plugin_manager(extra_plugins=[plugin], load_entry_points=False)
    assert plugins.step_types.get("echo") is Echo
    assert "carrier-pigeon" in plugins.transports
    rows = {row["name"]: row for row in plugins.describe()}
    assert rows["my_plugin"]["step_types"] == ["echo"]
    assert rows["my_plugin"]["transports"] == ["carrier-pigeon"]
    assert rows["my_plugin"]["builtin"] is False


def test_duplicate_names_fail_naming_both_plugins() -> None:
    first = make_plugin("first_plugin", register_step_types=steps_hook(Echo))
    second = make_plugin("second_plugin", register_step_types=steps_hook(Echo))
    with pytest.raises(PluginError) as caught:
        create_plugin_manager(extra_plugins=[first, second], load_entry_points=False)
    message = str(caught.value)
    assert "echo" in message
    assert "first_plugin" in message
    assert "second_plugin" in message


def test_misspelt_hook_fails_at_start() -> None:
    @hookimpl
    def register_step_typos(registry):  # type: ignore[no-untyped-def]
        pass

    plugin = make_plugin("typo_plugin", register_step_typos=register_step_typos)
    with pytest.raises(PluginError, match="does not exist"):
        create_plugin_manager(extra_plugins=[plugin], load_entry_points=False)


@pytest.mark.parametrize("bad_name", ["", "Echo", "two words", "under_score", "-lead"])
def test_invalid_names_are_rejected(bad_name: str) -> None:
    cls = type("Bad", (StepType,), {"name": bad_name})
    plugin = make_plugin("bad_plugin", register_step_types=steps_hook(cls))
    with pytest.raises(PluginError, match="invalid name"):
        create_plugin_manager(extra_plugins=[plugin], load_entry_points=False)


def test_registering_a_non_step_type_is_rejected() -> None:
    @hookimpl
    def register_step_types(registry):  # type: ignore[no-untyped-def]
        registry.add(Carrier)

    plugin = make_plugin("wrong_kind", register_step_types=register_step_types)
    with pytest.raises(PluginError, match="not a subclass"):
        create_plugin_manager(extra_plugins=[plugin], load_entry_points=False)


def test_plugins_folder_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "greeter.py").write_text(plugin_source("greet"))
    try:
        plugins = create_plugin_manager(plugin_dir=tmp_path, load_entry_points=False)
    finally:
        sys.modules.pop("greeter", None)
    assert "greet" in plugins.step_types
    rows = {row["name"]: row for row in plugins.describe()}
    assert rows["greeter"]["source"] == "folder"
    assert rows["greeter"]["step_types"] == ["greet"]


def test_entry_point_plugins_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party package installed beside the appliance, found by its entry point."""
    (tmp_path / "octo_thirdparty.py").write_text(plugin_source("smoke-signal", transport=True))
    dist_info = tmp_path / "octo_thirdparty-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: octo-thirdparty\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[octo_appliance]\nthirdparty = octo_thirdparty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        plugins = create_plugin_manager()
    finally:
        sys.modules.pop("octo_thirdparty", None)
    assert "smoke-signal" in plugins.transports
    assert any(row["transports"] == ["smoke-signal"] for row in plugins.describe())


def test_builtins_are_registered_as_modules() -> None:
    plugins = create_plugin_manager(load_entry_points=False)
    names = {name for name, _ in plugins.manager.list_name_plugin()}
    from octo_appliance.plugins import builtin_modules

    assert set(builtin_modules()) <= names


class GateLog:
    """Stands for the agent network: records what passes its update gate, and when."""

    runner = types.SimpleNamespace(version="1", sha256="s")

    def __init__(self) -> None:
        self.events: list[str] = []

    @contextlib.asynccontextmanager
    async def gated(self, thumbprint: str, on_event: object) -> AsyncIterator[None]:
        self.events.append(f"gate {thumbprint}")
        yield
        self.events.append("left")


class Recorder(AgentTransport):
    """A third-party agent transport that implements only ``send``: what every operation asks."""

    name = "recorder"
    summary = "Records its calls"

    def __init__(self) -> None:
        self.gate = GateLog()
        super().__init__(agent_context("recorder", self.gate))  # type: ignore[arg-type]
        self.calls: list[tuple[str, CallOptions]] = []

    async def send(self, target: TargetAddress, call: AgentCall) -> Response:
        self.gate.events.append(f"send {call.method}")
        self.calls.append((call.method, call.options))
        if call.method == contract.FILES_FETCH:
            assert call.options.download_dir is not None
            return Response(result={}, file_path=call.options.download_dir / "fetched")
        return Response(result={})


async def test_a_transport_implementing_only_call_gets_each_operations_options(
    tmp_path: Path,
) -> None:
    """The operations of the base class carry their options in one CallOptions."""
    transport, target = Recorder(), TargetAddress("tgt_1", "web", "recorder", thumbprint="AB")

    def on_event(event: dict[str, Any]) -> None:
        pass

    await transport.run_runner(target, RunnerCommand("tsk_1", "run-script", {}), on_event)
    await transport.upload(target, b"content", "0" * 64, "app.zip")
    await transport.fetch(target, "tsk_1", "out.txt", tmp_path)
    await transport.info(target, timeout=5)
    await transport.has_file(target, "0" * 64)
    assert transport.calls == [
        (contract.RUNNER_RUN, CallOptions(on_event=on_event)),
        (contract.CACHE_PUT, CallOptions(upload=b"content")),
        (contract.FILES_FETCH, CallOptions(download_dir=tmp_path)),
        (contract.AGENT_INFO, CallOptions(timeout=5)),
        (contract.CACHE_HAS, CallOptions()),
    ]
    # each call waited at the agent's update gate, and was sent while inside it
    assert transport.gate.events[:3] == ["gate AB", f"send {contract.RUNNER_RUN}", "left"]
    assert transport.gate.events.count("gate AB") == len(transport.calls)


class Mute(AgentTransport):
    """An agent transport that forgot to implement ``send``."""

    name = "mute"


@pytest.mark.parametrize("transport_class", [Carrier, Mute, SshTransport])
async def test_a_transport_that_carries_no_contract_call_refuses_it_with_a_hint(
    transport_class: type[Transport], tmp_path: Path
) -> None:
    """The default ``call`` fails the operation as an agent refuses a method it does not know
    (``unknown_method``, with a hint), so a step gets a clear failure; the SSH transport
    offers no file fetch, and a package then sees no cached versions to patch."""
    transport = transport_class(agent_context(transport_class.name, GateLog()))  # type: ignore[arg-type]
    target = TargetAddress("tgt_1", "web", transport_class.name, thumbprint="AB")
    with pytest.raises(CallFailed) as caught:
        await transport.fetch(target, "tsk_1", "out.txt", tmp_path)
    assert caught.value.code == "unknown_method"
    assert caught.value.message == (
        f"the {transport_class.name} transport does not carry 'files.fetch': it has no agent "
        "to call"
    )
    assert "agent target" in (caught.value.hint or "")
    if transport_class is not SshTransport:
        with pytest.raises(CallFailed, match=r"does not carry 'runner\.run'"):
            await transport.run_runner(target, RunnerCommand("tsk_1", "run-script", {}))
    assert await transport.cached_versions(target, "app") == []


@pytest.mark.parametrize("module", BUILTIN_MODULES)
def test_builtin_transports_share_the_base_call_signature(module: str) -> None:
    """One signature for every transport's call(): the options are one parameter."""
    classes = [
        cls
        for cls in vars(importlib.import_module(module)).values()
        if isinstance(cls, type) and issubclass(cls, Transport) and cls is not Transport
    ]
    assert classes
    for cls in classes:
        assert inspect.signature(cls.call) == inspect.signature(Transport.call)
