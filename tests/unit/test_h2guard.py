"""The HTTP/2 guard hooks into Hypercorn internals: these checks fail loudly when a new version
moves them (the pin in pyproject.toml says to run this before moving), instead of the guard
silently not running. Its behaviour on a real connection: tests/integration/test_early_answers.py.
"""

from __future__ import annotations

import inspect

import hypercorn.protocol as hypercorn_protocol
from hypercorn.protocol.h2 import H2Protocol

from octo_appliance.web import h2guard


def test_the_hooks_the_guard_uses_exist() -> None:
    handle_events = inspect.getsource(H2Protocol._handle_events)
    init = inspect.getsource(H2Protocol.__init__)

    assert "h2.events.DataReceived" in handle_events  # where the forgotten stream failed
    assert "self.streams" in init and "self.connection" in init
    # the wrapper builds the protocol by the module-level name the guard replaces
    assert "H2Protocol(" in inspect.getsource(hypercorn_protocol.ProtocolWrapper)


def test_install_puts_the_guard_where_hypercorn_looks() -> None:
    h2guard.install()

    assert hypercorn_protocol.H2Protocol is h2guard.GuardedH2Protocol
