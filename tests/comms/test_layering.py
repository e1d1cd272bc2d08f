"""comms/ is pure transport: it must not reach into storage, the engine or HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import octo_appliance.comms

FORBIDDEN = (
    "octo_appliance.db",
    "octo_appliance.engine",
    "octo_appliance.api",
    "octo_appliance.app",
)


def test_comms_imports_nothing_above_it() -> None:
    package = Path(octo_appliance.comms.__file__).parent
    offenders = []
    for module in sorted(package.glob("*.py")):
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
