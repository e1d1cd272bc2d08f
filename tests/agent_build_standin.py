"""A stand-in for the frozen agent build, until the appliance serves its own (issue 16.2).

``python -m tests.agent_build_standin ARGS`` is ``octo-appliance ARGS`` with two endpoints
added: ``GET /api/v1/agent?platform=`` (the manifest: component, version, platform, size,
SHA-256) and ``GET /api/v1/agent/download?platform=``, serving ``$STANDIN_AGENT_FILE``, a
small script that runs this checkout's ``octo-agent``. The install script downloads, checks
and runs it exactly as it will the frozen build.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import sysconfig
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from octo_appliance import __version__
from octo_appliance.api import agents
from octo_appliance.api.context import RequestContext
from octo_appliance.exceptions import NotFound

FILE_ENV = "STANDIN_AGENT_FILE"


def _interpreter() -> str:
    """A Python of this minor version every user may run (this one may live in a home only
    root enters, e.g. pyenv's), with this checkout and its packages on the path."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    return str(system) if system.exists() else sys.executable


def write_standin_agent(path: Path) -> Path:
    """An executable that runs this checkout's agent (readable by every user)."""
    root = Path(__file__).resolve().parents[1]
    paths = [*sysconfig.get_paths()["purelib"].split(os.pathsep), str(root), str(root / "runner")]
    path.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(os.pathsep.join(paths))} "
        f'exec {_interpreter()} -m octo_appliance.agent "$@"\n'
    )
    path.chmod(0o755)
    return path


def _file(platform: str) -> Path:
    if platform != "linux-x86_64":
        raise NotFound(f"no agent build for platform '{platform}'")
    return Path(os.environ[FILE_ENV])


def _install() -> None:
    @agents.router.get("/agent", summary="stand-in manifest", auth=False, raw_response=True)
    def manifest(ctx: RequestContext, request: Request) -> dict[str, Any]:
        data = _file(request.query_params.get("platform", "")).read_bytes()
        return {
            "component": "octo-agent",
            "version": __version__,
            "platform": "linux-x86_64",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "signature": "",
        }

    @agents.router.get("/agent/download", summary="stand-in", auth=False, raw_response=True)
    def download(ctx: RequestContext, request: Request) -> Response:
        return FileResponse(_file(request.query_params.get("platform", "")))


if __name__ == "__main__":
    _install()
    from octo_appliance.cli import main

    sys.exit(main())
