"""The octo-agent executable the appliance serves: embedded in a frozen appliance, built and
cached by source hash in a development install, so both serve the same kind of thing.

A development install runs ``agent.spec`` through PyInstaller (minutes on a small machine)
into ``<cache dir>/<source digest>/octo-agent`` beside ``build.json`` (version, platform,
size, SHA-256); the digest is :func:`octo_appliance.builds.sources.sources_digest`, so a
build is reused until something it is made from changes, by every data dir and test run that
shares the cache dir. Builds of one digest take turns on a lock file, and a build appears
only by rename once complete. A frozen appliance carries the build made when it was frozen
(``appliance.spec`` embeds ``octo-agent-linux-x86_64`` and its ``.json``) and never builds.

``python -m octo_appliance.builds.agent OUT_DIR [--version V]`` builds into ``OUT_DIR`` (what
``build/build_agent.sh`` runs).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octo_appliance import __version__
from octo_appliance.builds.sources import ROOT, SPEC, sources_digest
from octo_appliance.exceptions import OctoError

COMPONENT = "octo-agent"
#: the only platform built today (the bootstrap script refuses the others)
LINUX_X86_64 = "linux-x86_64"
PLATFORMS = (LINUX_X86_64,)
EXECUTABLE_NAME = "octo-agent"
INFO_NAME = "build.json"
#: sets the version a build is stamped with (default: the package's)
VERSION_ENV = "OCTO_AGENT_BUILD_VERSION"
#: where development installs keep builds when the ``agent_build_dir`` setting is empty
CACHE_DIR_NAME = "agent-builds"
BUILD_TIMEOUT = 1800
#: builds of other sources kept in a cache dir (older ones go once a day has passed)
KEEP_BUILDS = 8
STALE_SECONDS = 86400.0


class BuildError(OctoError):
    """The agent executable could not be built, or no build is available."""


@dataclass(frozen=True)
class AgentBuild:
    """One octo-agent executable and what its manifest says of it."""

    #: stamped at build time (``OCTO_AGENT_BUILD_VERSION``)
    version: str
    platform: str
    #: the executable (in the cache dir, or unpacked from a frozen appliance)
    path: Path
    size: int
    sha256: str

    def info(self) -> dict[str, Any]:
        return {
            "component": COMPONENT,
            "version": self.version,
            "platform": self.platform,
            "size": self.size,
            "sha256": self.sha256,
        }


def current_platform() -> str:
    """This machine as a platform name (``linux-x86_64``), built or not."""
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower())
    return f"{sys.platform}-{machine or platform.machine().lower()}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "octo-appliance" / CACHE_DIR_NAME


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_build(info_file: Path, path: Path) -> AgentBuild | None:
    """The build at ``path`` as ``info_file`` describes it (None: none, or not that size)."""
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        build = AgentBuild(
            str(info["version"]), str(info["platform"]), path, int(info["size"]), info["sha256"]
        )
        if path.stat().st_size != build.size:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return build


def build_agent(out_dir: Path, *, version: str | None = None) -> AgentBuild:
    """Run PyInstaller on ``agent.spec``: ``out_dir/octo-agent`` and ``out_dir/build.json``."""
    version = version or os.environ.get(VERSION_ENV) or __version__
    if current_platform() not in PLATFORMS:
        raise BuildError(
            f"octo-agent is built for {', '.join(PLATFORMS)}, not {current_platform()}",
            hint="build it on a linux-x86_64 machine",
        )
    if not SPEC.is_file():
        raise BuildError(
            f"no {SPEC.name} at {SPEC.parent}: this install is not a checkout",
            hint="use the single octo-appliance executable (it embeds the agent), or install "
            "from a checkout of the repository",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".building-", dir=out_dir) as work:
        # a PyInstaller cache of this build's own: ``--clean`` of another build on the shared
        # one (~/.cache/pyinstaller) deletes files from under a build running beside it
        env = {**os.environ, VERSION_ENV: version, "OCTO_AGENT_BUILD_WORK": work}
        env["PYINSTALLER_CONFIG_DIR"] = f"{work}/pyinstaller-cache"
        command = [sys.executable, "-m", "PyInstaller", "--noconfirm"]
        command += ["--log-level", "WARN", "--distpath", f"{work}/dist", "--workpath", work]
        try:
            done = subprocess.run(
                [*command, str(SPEC)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(
                f"cannot run PyInstaller: {exc}", hint="install the [test] extras"
            ) from None
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise BuildError(
                f"PyInstaller failed to build octo-agent:\n{tail}",
                hint="pip install -e '.[test]' brings PyInstaller; run build/build_agent.sh "
                "to see the whole output",
            )
        built = Path(work) / "dist" / EXECUTABLE_NAME
        os.replace(built, out_dir / EXECUTABLE_NAME)
    path = out_dir / EXECUTABLE_NAME
    build = AgentBuild(version, LINUX_X86_64, path, path.stat().st_size, _sha256_file(path))
    info = json.dumps(build.info(), indent=2) + "\n"
    (out_dir / INFO_NAME).write_text(info, encoding="utf-8")
    return build


def cache_entry(cache_dir: Path, version: str | None) -> Path:
    return cache_dir / sources_digest(version or os.environ.get(VERSION_ENV) or __version__)


def find_cached(cache_dir: Path, *, version: str | None = None) -> AgentBuild | None:
    """The build of today's sources in ``cache_dir``, if one was made."""
    return _read_cached(cache_entry(cache_dir, version))


def cached_build(cache_dir: Path, *, version: str | None = None) -> AgentBuild:
    """The build of today's sources from ``cache_dir``, made first when missing. Safe to call
    from several processes at once: one builds, the others wait and then read its build."""
    version = version or os.environ.get(VERSION_ENV) or __version__
    target = cache_entry(cache_dir, version)
    found = _read_cached(target)
    if found is not None:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        found = _read_cached(target)
        if found is not None:
            return found
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        build_agent(staging, version=version)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    built = _read_cached(target)
    if built is None:
        raise BuildError(f"the agent build in {target} vanished", hint="build it again")
    _prune(cache_dir, keep=target)
    return built


def _prune(cache_dir: Path, keep: Path) -> None:
    """Forget builds of sources long gone: beyond the newest :data:`KEEP_BUILDS`, those
    untouched for a day (a build in use by a running test or appliance is recent)."""
    entries = sorted(
        (p for p in cache_dir.iterdir() if p.is_dir() and p != keep and len(p.name) == 64),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for entry in entries[KEEP_BUILDS:]:
        if time.time() - entry.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(entry, ignore_errors=True)


def frozen() -> bool:
    """Whether this process is a frozen (PyInstaller) appliance, which serves what it embeds."""
    return getattr(sys, "_MEIPASS", None) is not None


def bundled_name(platform_name: str) -> str:
    """The name a frozen appliance carries the build of ``platform_name`` under."""
    return f"{COMPONENT}-{platform_name}"


def bundled_build(platform_name: str) -> AgentBuild | None:
    """The build a frozen appliance embeds for ``platform_name`` (None: not frozen, or none)."""
    base = getattr(sys, "_MEIPASS", None)
    if base is None:
        return None
    name = bundled_name(platform_name)
    return read_build(Path(base) / f"{name}.json", Path(base) / name)


def _read_cached(directory: Path) -> AgentBuild | None:
    return read_build(directory / INFO_NAME, directory / EXECUTABLE_NAME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m octo_appliance.builds.agent", description="Build octo-agent (PyInstaller)."
    )
    parser.add_argument("out_dir", type=Path, help="where octo-agent and build.json are written")
    parser.add_argument("--version", help=f"the version to stamp (default: ${VERSION_ENV} or ours)")
    args = parser.parse_args(argv)
    try:
        build = build_agent(args.out_dir, version=args.version)
    except BuildError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    mib = build.size / 1048576
    print(f"built {build.path} ({build.platform}, version {build.version}): {mib:.1f} MiB")
    print(json.dumps(build.info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
