"""Imports point down: the layer rules of docs/architecture.md, checked over the source.

The layers are read from the "Layers" table of docs/architecture.md itself, so the page and
this test cannot disagree: a module may import its own layer and the layers below it, never
one above. Every module of the package must be in the table, so a new one is placed on
purpose. The rules the layers alone do not express (DESIGN.md's dependency rules) follow as
their own tests. An import under ``if TYPE_CHECKING:`` or inside a function counts too: it is
still a dependency, only a later one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from octo_appliance.builds.sources import imported

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "octo_appliance"
RUNNER = ROOT / "runner" / "octo_runner"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: the third-party packages that speak HTTP
HTTP_LIBRARIES = ("starlette", "hypercorn", "httpx", "httpx2", "h11", "h2", "aioquic")


def unit_of(module: str) -> str:
    """``octo_appliance.api.auth`` -> ``api``; ``octo_appliance.web.server`` -> ``web``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def source_modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def is_within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layers_from_docs() -> list[set[str]]:
    """The "Layers" table of docs/architecture.md: one row per layer, top first; its second
    column names the units in backticks (``api/`` a package, ``config.py`` a module)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\|\s*\d+\s*\|", line)]
    return [
        {
            name.removesuffix("/").removesuffix(".py")
            for name in re.findall(r"`([^`]+)`", row.split("|")[2])
        }
        for row in rows
    ]


LAYERS = layers_from_docs()
LAYER_OF = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}
MODULES = dict(source_modules(PACKAGE, "octo_appliance"))


def internal_imports(module: str) -> set[str]:
    """What ``module`` imports of this package (``octo_appliance.__version__`` is no module)."""
    return {
        name
        for name in imported(module, MODULES[module])
        if is_within(name, ("octo_appliance",)) and unit_of(name) in LAYER_OF
    }


def test_the_table_places_every_module_once() -> None:
    units = [unit for layer in LAYERS for unit in layer]
    present = {unit_of(module) for module in MODULES}

    assert len(units) == len(set(units))
    assert present - set(units) == set(), "add these to the Layers table of architecture.md"
    assert set(units) - present == set(), "the Layers table names what does not exist"


def test_imports_point_down() -> None:
    upward = []
    for module in MODULES:
        here = LAYER_OF[unit_of(module)]
        for name in internal_imports(module):
            target = unit_of(name)
            if target != unit_of(module) and LAYER_OF[target] < here:
                upward.append(f"{module} -> {name}")

    assert upward == []


@pytest.mark.parametrize(
    ("units", "forbidden", "why"),
    [
        (
            ("agent",),
            ("db", "engine", "api", "web", "appliance", "certificate", "cli", "vault"),
            "the agent program carries no storage, engine or HTTP API",
        ),
        (
            ("comms",),
            ("db", "vault", "feed", "engine", "steps"),
            "comms knows no deployments or storage",
        ),
        (("vault",), ("db",), "the vault sits below the database"),
        (("db", "engine", "security"), ("api", "web", "appliance_client"), "no HTTP"),
        (("api",), ("portal",), "the portal stands on the API's rules, never the reverse"),
    ],
)
def test_what_a_unit_never_imports(
    units: tuple[str, ...], forbidden: tuple[str, ...], why: str
) -> None:
    prefixes = tuple(f"octo_appliance.{unit}" for unit in forbidden)
    offenders = [
        f"{module} -> {name}"
        for module in MODULES
        if unit_of(module) in units
        for name in internal_imports(module)
        if is_within(name, prefixes)
    ]

    assert offenders == [], why


def test_storage_and_engine_use_no_http_library() -> None:
    offenders = [
        f"{module} -> {name}"
        for module, path in MODULES.items()
        if unit_of(module) in ("db", "engine", "security", "vault", "comms")
        for name in imported(module, path)
        if is_within(name, HTTP_LIBRARIES)
    ]

    assert offenders == []


def test_interfaces_do_not_import_their_implementations() -> None:
    """``transports/base.py`` and ``steps/base.py`` are what plugins build on: the concrete
    built-ins beside them depend on them, not the other way round."""
    offenders = []
    for unit in ("transports", "steps"):
        module = f"octo_appliance.{unit}.base"
        offenders += [
            f"{module} -> {name}"
            for name in imported(module, MODULES[module])
            if is_within(name, (f"octo_appliance.{unit}",))
        ]

    assert offenders == []


def test_the_plugin_api_imports_no_builtin_and_no_loader() -> None:
    """``plugin_api/`` is what built-ins and third parties import: it depends on neither."""
    forbidden = tuple(
        f"octo_appliance.{unit}" for unit in ("steps", "transports", "plugins", "hookspecs")
    )
    offenders = [
        f"{module} -> {name}"
        for module, path in MODULES.items()
        if is_within(module, ("octo_appliance.plugin_api",))
        for name in imported(module, path)
        if is_within(name, forbidden)
    ]

    assert offenders == []


def test_the_engine_reaches_built_ins_through_the_registry_only() -> None:
    """The engine, the API and the services import no built-in step type or transport: they
    reach them (the built-in worker included) by name through the registries, as a plugin's."""
    builtins = ("octo_appliance.steps", "octo_appliance.transports")
    allowed = ("octo_appliance.steps.base", "octo_appliance.transports.base")
    # the agent network and its parts (the build it offers agents, the update gate, the relay
    # of calls across nodes), not transports
    allowed += ("octo_appliance.transports.network", "octo_appliance.transports.agent_build")
    allowed += ("octo_appliance.transports.update_gate", "octo_appliance.transports.relay")
    offenders = [
        f"{module} -> {name}"
        for module, path in MODULES.items()
        if (
            is_within(module, ("octo_appliance.engine", "octo_appliance.api"))
            or module == "octo_appliance.background"
        )
        for name in imported(module, path)
        if is_within(name, builtins) and not is_within(name, allowed) and name not in builtins
    ]

    assert offenders == []


def test_runner_uses_the_standard_library_only() -> None:
    offenders = [
        f"{module} -> {name}"
        for module, path in source_modules(RUNNER, "octo_runner")
        for name in imported(module, path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and not is_within(name, ("octo_runner",))
    ]

    assert offenders == []


def test_loading_the_agent_loads_nothing_forbidden() -> None:
    """What the agent's imports import must stay out of storage, the engine and HTTP too."""
    agent = [module for module in MODULES if unit_of(module) == "agent"]
    agent.remove("octo_appliance.agent.__main__")
    forbidden = tuple(
        f"octo_appliance.{unit}"
        for unit in ("db", "engine", "api", "web", "appliance", "certificate")
    )
    probe = (
        "import importlib, sys\n"
        f"for name in {agent!r}: importlib.import_module(name)\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if any(m == f or "
        f"m.startswith(f + '.') for f in {forbidden!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert done.stdout.split() == []
