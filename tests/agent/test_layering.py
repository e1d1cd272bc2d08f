"""agent/ sits on comms/ and the runner: it must not reach into storage, the engine or HTTP."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import octo_appliance.agent

FORBIDDEN = (
    "octo_appliance.db",
    "octo_appliance.engine",
    "octo_appliance.api",
    "octo_appliance.app",
    "octo_appliance.appliance",
    "octo_appliance.tls",  # the appliance's certificate code needs the vault and db
    "octo_appliance.cli",
)
PACKAGE = Path(octo_appliance.agent.__file__).parent


def test_agent_modules_import_nothing_above_them() -> None:
    offenders = []
    for module in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{module.name}: {name}"
                for name in names
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
            ]

    assert offenders == []


def test_loading_the_agent_loads_nothing_forbidden() -> None:
    """Also indirectly: what the agent's imports import must stay below the line."""
    modules = [
        f"octo_appliance.agent.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__main__"
    ]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {FORBIDDEN!r}))\n"
        "print('\\n'.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert done.stdout.split() == []
