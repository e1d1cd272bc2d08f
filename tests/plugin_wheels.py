"""Plugin wheels for tests: the fixture distributions of tests/plugin_fixtures/ built by the
same ``build/build_plugins.py`` that builds the first-party plugins' wheels."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "plugin_fixtures"
GREETING = "octo-greeting"
NEEDS_MISSING = "octo-needs-missing"


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
