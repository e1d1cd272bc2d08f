"""Loading a plugin's runner command from its bundle: a zip the request names by path and
SHA-256 (docs/runner-protocol.md, "Plugin commands").

The bundle holds the plugin's target-side package and ``octo-commands.json``, the manifest:
``{"api": 1, "name": "...", "commands": {"command-name": "package.module:function"}}``. The
file's SHA-256 is checked against the request before anything of it is read, so a bundle
that changed after the agent verified it is refused, never run. Built-in commands always
win: a bundle cannot replace one (the appliance refuses to build such a bundle, and the
runner looks built-ins up first).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import zipfile
from typing import Any

from .commands import Command
from .errors import RunnerError
from .plugin_api import API_VERSION
from .protocol import PluginBundleRef

MANIFEST = "octo-commands.json"
_CHUNK = 1024 * 1024


def load_plugin_command(ref: PluginBundleRef, name: str) -> Command:
    """The function that runs ``name``, from the bundle ``ref`` (RunnerError otherwise)."""
    what = f"plugin bundle {ref.name or ref.path}"
    actual = _sha256(ref.path, what)
    if actual != ref.sha256:
        raise RunnerError(
            f"{what} has SHA-256 {actual}, not the {ref.sha256} the request names; "
            "nothing of it was loaded",
            hint="the bundle changed after the agent verified it: run the step again",
        )
    manifest = _manifest(ref.path, what)
    api = manifest.get("api")
    if api != API_VERSION:
        raise RunnerError(
            f"{what} was built for runner plugin API {api!r}; this runner has API {API_VERSION}",
            hint="use a plugin version written for this appliance's runner",
        )
    commands = manifest.get("commands")
    target = commands.get(name) if isinstance(commands, dict) else None
    if not isinstance(target, str) or ":" not in target:
        known = ", ".join(sorted(commands)) if isinstance(commands, dict) else "none"
        raise RunnerError(f"{what} has no command {name!r}", hint=f"its commands: {known}")
    module_name, _, attribute = target.partition(":")
    if ref.path not in sys.path:
        sys.path.insert(0, ref.path)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        only = "the standard library, octo_runner.plugin_api and its own modules"
        message = f"{what}: command {name!r} cannot be imported: {exc}"
        raise RunnerError(message, hint=f"a target-side package may import {only}") from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise RunnerError(f"{what}: {target} is not a function")
    command: Command = handler
    return command


def _sha256(path: str, what: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise RunnerError(f"{what} cannot be read: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _manifest(path: str, what: str) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read(MANIFEST).decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise RunnerError(
            f"{what} is not a plugin command bundle ({MANIFEST} unreadable: {exc})"
        ) from exc
    if not isinstance(document, dict):
        raise RunnerError(f"{what}: {MANIFEST} must be a JSON object")
    return document
