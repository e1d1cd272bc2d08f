"""Running the ``octo-appliance`` client commands as subprocesses against a real appliance
process (tests/serve_process.py), with an API key made by ``api-key create``.

::

    with running_appliance(tmp_path / "data") as appliance:
        done = appliance.cli("environment", "create", "Dev")
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from tests.serve_process import ServeProcess

CLI = (sys.executable, "-m", "octo_appliance")
#: guards against a hang, not a timing assertion
TIMEOUT = 180


class Appliance:
    def __init__(self, server: ServeProcess, key: str) -> None:
        self.server = server
        self.key = key

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OCTO_", "SSL_CERT"))}
        env.update(
            OCTO_SERVER=self.server.url,
            OCTO_API_KEY=self.key,
            OCTO_SERVER_THUMBPRINT=self.server.banner.thumbprint,
        )
        env.update(extra)
        return env

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run one command; no output of it may hold a traceback or the API key."""
        done = subprocess.run(
            [*CLI, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=self.env(**env),
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert self.key not in done.stdout + done.stderr
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start one command that runs on while the test acts; the caller kills it."""
        return subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    def api(self) -> httpx.Client:
        return self.server.http2_client(headers={"X-Api-Key": self.key}, timeout=30)


@contextlib.contextmanager
def running_appliance(data_dir: Path) -> Iterator[Appliance]:
    """``serve`` on ``data_dir`` and an API key of the first administrator, ``admin``."""
    with ServeProcess(data_dir) as server:
        yield Appliance(server, server.create_api_key())


def run_octo(
    *args: str, timeout: float = 60, command: Sequence[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``octo-appliance ARGS`` of this checkout (or of ``command``, e.g. a frozen executable),
    with none of the caller's ``OCTO_*`` settings."""
    return subprocess.run(
        [*(command or [sys.executable, "-m", "octo_appliance"]), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OCTO_")},
    )
