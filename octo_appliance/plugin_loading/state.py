"""Which plugins the operator switched off, and where plugins are looked for.

Two switches add up: ``disabled_plugins`` (the setting, so ``OCTO_DISABLED_PLUGINS=a,b`` for
one start) and the list ``octo-appliance plugin disable NAME`` keeps in
``<data dir>/plugins/disabled.txt`` (one name a line, so it survives restarts and can be
read and edited by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

from octo_appliance.agent.interpreter import program_path
from octo_appliance.filesystem.durable import write_atomic
from octo_appliance.plugin_loading.wheels import canonical_name

PLUGINS_DIR_NAME = "plugins"
DISABLED_FILE_NAME = "disabled.txt"
#: unpacked wheels, one directory per SHA-256 (see :mod:`.wheels`)
CACHE_DIR_NAME = "plugin-cache"


def data_plugin_dir(data_dir: Path) -> Path:
    return data_dir / PLUGINS_DIR_NAME


def executable_plugin_dir() -> Path | None:
    """``plugins/`` beside the single executable (None in a development install, whose
    interpreter's folder is no place for plugins)."""
    if not getattr(sys, "frozen", False):
        return None
    # the one-file executable, not the copy its launcher unpacked into the user's cache
    return Path(program_path()).resolve().parent / PLUGINS_DIR_NAME


def parse_names(text: str | None) -> set[str]:
    """``"a, B_c"`` -> ``{"a", "b-c"}``: the setting's comma list."""
    return {canonical_name(part.strip()) for part in (text or "").split(",") if part.strip()}


def persisted_disabled(data_dir: Path) -> set[str]:
    path = data_plugin_dir(data_dir) / DISABLED_FILE_NAME
    if not path.is_file():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {canonical_name(line.strip()) for line in lines if line.strip()}


def set_disabled(data_dir: Path, name: str, disabled: bool) -> bool:
    """Add or remove ``name`` in the persisted list; whether that changed anything."""
    names = persisted_disabled(data_dir)
    name = canonical_name(name)
    if (name in names) == disabled:
        return False
    names = names | {name} if disabled else names - {name}
    folder = data_plugin_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{entry}\n" for entry in sorted(names))
    write_atomic(folder / DISABLED_FILE_NAME, text.encode("utf-8"))
    return True
