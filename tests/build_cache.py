"""Where the tests keep the executables they build, from one run to the next.

A PyInstaller build takes minutes on the 2-core machine, and a clean checkout (CI's) has no
``dist/``: without a cache every run would build the appliance, the agent and the previous
version's appliance again. Builds are kept under ``$OCTO_TEST_BUILD_CACHE`` (default
``$XDG_CACHE_HOME/octo-appliance-tests``, i.e. ``~/.cache/octo-appliance-tests``), in a folder
per *build environment*: the Python version and every installed distribution with its
version (PyInstaller, cryptography, ...), so a new dependency or tool builds afresh. Inside
it each executable is keyed by the digest of its own sources, as before. A fresh machine
builds each once; nothing is ever reused for sources or tools that differ.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: environment folders nobody used for this long are removed
KEEP_UNUSED_SECONDS = 14 * 24 * 3600


def environment_digest() -> str:
    """The build environment: interpreter and installed distributions, with versions."""
    names = sorted(  # a .dist-info folder's name is the distribution's name and version
        entry.name
        for place in sys.path
        if os.path.isdir(place)
        for entry in os.scandir(place)
        if entry.name.endswith(".dist-info")
    )
    text = "\n".join([sys.version, sys.platform, *names])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def root() -> Path:
    """This environment's build folder (created; stale siblings pruned)."""
    base = os.environ.get("OCTO_TEST_BUILD_CACHE")
    if base:
        parent = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        parent = Path(xdg) / "octo-appliance-tests"
    folder = parent / environment_digest()
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)
    _prune(parent, keep=folder)
    return folder


def _prune(parent: Path, keep: Path) -> None:
    cutoff = time.time() - KEEP_UNUSED_SECONDS
    for entry in parent.iterdir():
        if entry != keep and entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One process builds ``path`` at a time; the others wait and then find it made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def cached_file(path: Path, build: Callable[[Path], None]) -> Path:
    """``path`` from the cache, built by ``build(partial_path)`` first when missing."""
    if path.is_file():
        return path
    with locked(path):
        if not path.is_file():
            partial = path.with_name(f".{path.name}.building")
            partial.unlink(missing_ok=True)
            build(partial)
            os.replace(partial, path)
    return path
