"""Plugins for tests: the fixture distributions of tests/plugin_fixtures/ as wheels, built by
the same ``build/build_plugins.py`` that builds the first-party plugins' wheels, and the
source of a one-class plugin that a test writes where the loader looks."""

from __future__ import annotations

import importlib.util
import textwrap
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "plugin_fixtures"
GREETING = "octo-greeting"
NEEDS_MISSING = "octo-needs-missing"

PLUGIN_SOURCE = """
from octo_appliance.plugin_api import {base}, hookimpl
{extra}
OCTO_PLUGIN_API = 2

class Added({base}):
    name = "{name}"

@hookimpl
def register_{hook}(registry):
    registry.add(Added)
"""


def plugin_source(name: str, *, transport: bool = False, extra: str = "") -> str:
    """A plugin module adding one step type (or transport) called ``name``; ``extra``: lines
    run first, at its import."""
    base, hook = ("Transport", "transports") if transport else ("StepType", "step_types")
    return PLUGIN_SOURCE.format(base=base, hook=hook, name=name, extra=textwrap.dedent(extra))


@cache
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_plugins", ROOT / "build" / "build_plugins.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_wheel(name: str, out: Path) -> Path:
    """The wheel of ``tests/plugin_fixtures/<name>/``, written into ``out``."""
    wheel: Path = builder().build_wheel(FIXTURES / name, out)
    return wheel
