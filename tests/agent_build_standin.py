"""A stand-in for the frozen agent build, for tests that must not wait for PyInstaller.

:func:`put_standin_build` writes a small script that runs this checkout's ``octo-agent`` where
a development install caches the build of today's sources; an appliance whose
``agent_build_dir`` is that folder serves it (signed manifest, download) exactly as it serves
the frozen build, and the install script downloads, checks and runs it the same way.
``tests/binary`` uses the frozen build itself.
"""

from __future__ import annotations

import os
import shlex
import sys
import sysconfig
from pathlib import Path

from octo_appliance import __version__
from tests.builds.support import put_stand_in


def serve_env(cache_dir: Path) -> dict[str, str]:
    """The settings that make an appliance serve the builds of ``cache_dir`` and build none."""
    return {"OCTO_AGENT_BUILD_DIR": str(cache_dir), "OCTO_AGENT_BUILD_ON_REQUEST": "false"}


def _interpreter() -> str:
    """A Python of this minor version every user may run (this one may live in a home only
    root enters, e.g. pyenv's), with this checkout and its packages on the path."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    return str(system) if system.exists() else sys.executable


def standin_agent() -> bytes:
    """An executable that runs this checkout's agent (for every user)."""
    root = Path(__file__).resolve().parents[1]
    paths = [*sysconfig.get_paths()["purelib"].split(os.pathsep), str(root), str(root / "runner")]
    return (
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(os.pathsep.join(paths))} "
        f'exec {_interpreter()} -m octo_appliance.agent "$@"\n'
    ).encode()


def put_standin_build(cache_dir: Path) -> None:
    """Cache the stand-in as the build of today's sources in ``cache_dir``."""
    put_stand_in(cache_dir, __version__, standin_agent())
