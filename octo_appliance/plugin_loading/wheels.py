"""Plugin wheels: their metadata read without installing them, and their contents unpacked
into a cache keyed by the wheel's SHA-256.

Why unpack instead of ``zipimport``: a wheel may carry data files its code opens by path, and
an unpacked directory behaves exactly like a development install. Keying the cache by the
hash means a wheel replaced by another of the same name is never served from a stale copy,
and unpacking is skipped on every later start.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from octo_appliance.exceptions import PluginError

#: the entry-point group a plugin declares its modules in (pluggy project name)
ENTRY_POINT_GROUP = "octo_appliance"
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(name: str) -> str:
    """``Octo_HTTP.check`` -> ``octo-http-check``: how plugins are named everywhere."""
    return re.sub(r"[-_.]+", "-", name).lower()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class WheelInfo:
    """What a wheel says about itself (``*.dist-info/``)."""

    path: Path
    name: str
    version: str
    #: entry point name -> ``module`` or ``module:attribute`` in the ``octo_appliance`` group
    entry_points: dict[str, str]
    #: names of the distributions it needs (extras left out)
    requires: tuple[str, ...]
    sha256: str


def read_wheel(path: Path) -> WheelInfo:
    """The wheel's name, version, plugin entry points and needs; :class:`PluginError` when it
    is not a pure-Python wheel with at least one ``octo_appliance`` entry point."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            dist_info = _dist_info_dir(path, names)

            def text(member: str) -> str:
                if f"{dist_info}/{member}" not in names:
                    return ""
                return archive.read(f"{dist_info}/{member}").decode("utf-8")

            metadata = HeaderParser().parsestr(text("METADATA"))
            wheel = HeaderParser().parsestr(text("WHEEL"))
            entry_text = text("entry_points.txt")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise PluginError(
            f"{path.name} is not a readable wheel: {exc}", hint="build it again"
        ) from None
    name, version = metadata.get("Name", ""), metadata.get("Version", "")
    if not name or not version:
        raise PluginError(f"{path.name} has no Name or Version in its METADATA")
    if (wheel.get("Root-Is-Purelib") or "").strip().lower() != "true":
        raise PluginError(
            f"{path.name} is not a pure-Python wheel",
            hint="the single executable loads pure-Python plugins only",
        )
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(entry_text)
    entry_points = dict(parser[ENTRY_POINT_GROUP]) if parser.has_section(ENTRY_POINT_GROUP) else {}
    if not entry_points:
        raise PluginError(
            f"{path.name} declares no entry point in the group '{ENTRY_POINT_GROUP}'",
            hint="add [project.entry-points.octo_appliance] to its pyproject.toml",
        )
    requires = tuple(_requirement_names(metadata.get_all("Requires-Dist") or []))
    return WheelInfo(path, canonical_name(name), version, entry_points, requires, file_sha256(path))


def _dist_info_dir(path: Path, names: list[str]) -> str:
    tops = {name.split("/", 1)[0] for name in names if name.endswith(".dist-info/METADATA")}
    if len(tops) != 1:
        raise PluginError(f"{path.name} has {len(tops)} .dist-info directories, not one")
    return tops.pop()


def _requirement_names(lines: list[str]) -> list[str]:
    names = []
    for line in lines:
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue  # an optional extra: the plugin runs without it
        match = _REQUIREMENT_NAME.match(requirement)
        if match:
            names.append(match.group(1))
    return names


def missing_requirements(requires: tuple[str, ...]) -> list[str]:
    """The needed distributions the appliance does not hold (by distribution metadata, or a
    top-level module of the same name: the single executable keeps only some metadata)."""
    missing = []
    for name in requires:
        try:
            importlib.metadata.distribution(name)
            continue
        except importlib.metadata.PackageNotFoundError:
            pass
        if importlib.util.find_spec(canonical_name(name).replace("-", "_")) is None:
            missing.append(name)
    return missing


def unpack(info: WheelInfo, cache_root: Path) -> Path:
    """The directory holding the wheel's contents (unpacked once; put it on ``sys.path``)."""
    target = cache_root / info.sha256
    if target.is_dir():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_root))
    try:
        with zipfile.ZipFile(info.path) as archive:
            for member in archive.infolist():
                parts = PurePosixPath(member.filename).parts
                if member.filename.startswith("/") or ".." in parts:
                    raise PluginError(f"{info.path.name} holds an unsafe path {member.filename!r}")
            archive.extractall(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # another process won the race with the same content
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prune_cache(cache_root: Path, keep: set[str]) -> None:
    """Remove unpacked wheels no plugins folder holds any more."""
    if not cache_root.is_dir():
        return
    for entry in cache_root.iterdir():
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
