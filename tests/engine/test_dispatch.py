"""The dispatcher's own duties beyond fanning out (fan-out is covered by the deployment and
console tests with real runners)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from octo_appliance.engine.dispatch import Dispatcher
from octo_appliance.plugin_api.transport_context import TransportContext
from octo_appliance.transports.base import Transport


class Closing(Transport):
    """Records its close; ``fails`` makes the close raise."""

    def __init__(self, name: str, fails: bool) -> None:
        network: Any = SimpleNamespace()
        super().__init__(network)
        self.name = name  # type: ignore[misc]
        self.fails = fails
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        if self.fails:
            raise RuntimeError("its processes would not end")


async def test_close_closes_every_transport_even_when_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = Closing("first", fails=True), Closing("second", fails=False)
    dispatcher = Dispatcher({"first": first, "second": second})

    with caplog.at_level(logging.WARNING, logger="octo_appliance.engine"):
        await dispatcher.close()

    assert first.closed and second.closed
    assert "closing the first transport failed: its processes would not end" in caplog.text


async def test_the_base_transport_has_nothing_to_close() -> None:
    """Third-party transports that hold nothing need not override it."""
    await Transport(TransportContext("plain", SimpleNamespace())).close()  # type: ignore[arg-type]  # raises nothing
