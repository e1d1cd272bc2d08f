"""docs/plugins.md documents the whole plugin surface, and its examples are the real files.

Fails when a hook, a public class of the plugin API, a name a plugin imports from
``octo_appliance.plugin_api`` or a name of the author's kit (``octo_appliance.testing``) is
not on the page, or when an example shown there differs from its file in docs/examples/.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pluggy
import pytest

import octo_appliance.plugin_api as plugin_api
import octo_appliance.testing as testing
from octo_appliance.plugin_api import hookspecs

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "plugins.md"
EXAMPLES = ROOT / "docs" / "examples"
TEXT = PAGE.read_text(encoding="utf-8")
EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```\n", re.DOTALL)


def documented(name: str) -> bool:
    """``name`` appears in inline code on the page (alone or as in ``name(...)``)."""
    return re.search(rf"`[^`\n]*\b{re.escape(name)}\b[^`\n]*`", TEXT) is not None


def hook_names() -> list[str]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return sorted(name for name in vars(manager.hook) if not name.startswith("_"))


def public_classes() -> list[str]:
    found = []
    for info in pkgutil.iter_modules(plugin_api.__path__):
        module = importlib.import_module(f"{plugin_api.__name__}.{info.name}")
        found += [
            name
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and value.__module__ == module.__name__
            and not name.startswith("_")
        ]
    return sorted(set(found))


def test_the_hooks_are_found() -> None:
    assert hook_names() == ["register_step_types", "register_transports"]


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented(name: str) -> None:
    assert documented(name), f"docs/plugins.md does not document the hook {name}"
    assert getattr(hookspecs, name).__doc__, f"the hook {name} has no docstring"


@pytest.mark.parametrize("name", sorted({*public_classes(), *plugin_api.__all__, *testing.__all__}))
def test_every_public_plugin_facing_name_is_documented(name: str) -> None:
    assert documented(name), f"docs/plugins.md does not mention `{name}`"


@pytest.mark.parametrize("fixture", ["octo_appliance_factory", "octo_api", "octo_runner"])
def test_every_fixture_of_the_kit_is_documented(fixture: str) -> None:
    assert hasattr(testing, fixture)
    assert documented(fixture)


def test_the_examples_on_the_page_are_the_files() -> None:
    shown = {path: body for path, body in EXAMPLE_BLOCK.findall(TEXT)}
    files = {
        str(path.relative_to(ROOT))
        for path in EXAMPLES.rglob("*")
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts
    }
    assert set(shown) == files, "show every file of docs/examples/ on the page, and no other"
    for path, body in shown.items():
        assert body == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from the page"


def test_an_undocumented_name_is_caught() -> None:
    """The check can fail: a name that is not on the page is reported."""
    assert not documented("NoSuchPluginThing")
