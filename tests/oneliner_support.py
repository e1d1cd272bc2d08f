"""What the one-line install's tests and bench share: asking the appliance for the line, and
running it as ``sh`` does on a target (as root or as ``nobody``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet

PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
NOBODY = 65534
#: the marks of a module of one-liner tests: slow, root (to run as nobody), curl
MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="runs the install as another user (needs root)"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the one-liner needs curl"),
]


@pytest.fixture(scope="module", name="shared_dir")
def shared_dir_fixture() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="octo-oneliner-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def install_command(fleet: Fleet, *args: str, program: Sequence[str] = ()) -> str:
    """What ``octo-appliance agent install-command --environment Dev --role web ARGS`` prints
    last: the one-liner (``program``: how to start octo-appliance, default the fleet's)."""
    banner = fleet.server.banner
    done = subprocess.run(
        [
            *(program or fleet.appliance_command),
            "agent",
            "install-command",
            *("--server", banner.url, "--server-thumbprint", banner.thumbprint),
            *("--api-key-file", str(fleet.key_file), "--environment", "Dev", "--role", "web"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": PATH, "HOME": "/root"},
    )
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    assert command.startswith("curl -fsSk --pinnedpubkey 'sha256//"), command
    return command


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(
    command: str, *, user: int | None = None, home: Path | None = None, path: str = PATH
) -> Run:
    """``sh -c COMMAND`` in a clean environment, as ``user`` (setpriv) or as root."""
    env = {"PATH": path, "HOME": str(home or "/root"), "LANG": "C.UTF-8"}
    argv = ["sh", "-c", command]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    return Run(done.returncode, done.stdout, done.stderr)


def fresh_home(shared_dir: Path, name: str) -> Path:
    home = shared_dir / name
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    return home


def targets(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in fleet.api().get("/api/v1/targets").json()["items"]}
