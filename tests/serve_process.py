"""Start ``octo-appliance serve`` as a real subprocess and read its banner.

Used by the integration tests, the binary smoke test and the bench::

    with ServeProcess(tmp_path / "data") as server:
        with server.http2_client() as client:
            client.get("/api/v1/health")
        status, headers, body = asyncio.run(h3_get(server.host, server.port, "/api/v1/health",
                                                   cafile=server.cert_file))

The banner is the ``name: value`` lines ``serve`` prints on stdout up to ``ready``. The
default command is this interpreter's ``-m octo_appliance``; pass ``command=[path]`` for the
single executable. Inherited ``OCTO_*`` variables are dropped so the caller's environment
cannot change what the test starts. Unless ``env`` names a key, the data dir keeps its master
key in a directory of its own beside it (``keep_key_beside``), never in the machine's.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from octo_appliance.testing import keep_key_beside
from tests.child_process import ChildFailed, StdoutPump, read_log, stop_process

READY_PREFIX = "ready"
START_TIMEOUT = 60.0


class ServeFailed(RuntimeError):
    """The process exited or said nothing usable before ``ready``."""


@dataclass
class Banner:
    lines: list[str] = field(default_factory=list)
    url: str = ""
    host: str = ""
    port: int = 0
    h3_port: int | None = None
    thumbprint: str = ""
    polling_port: int = 0
    cert_file: Path | None = None
    database: str = ""
    admin_password: str | None = None
    first_start: bool = False

    def add(self, line: str) -> None:
        self.lines.append(line)
        name, _, value = line.partition(": ")
        if name == "url":
            match = re.fullmatch(r"https://(\[[^\]]+\]|[^:/]+):(\d+)/", value)
            if match is None:
                raise ServeFailed(f"cannot parse the url line: {line!r}")
            self.url = value
            self.host, self.port = match[1].strip("[]"), int(match[2])
        elif line.startswith("HTTP/3 on udp/"):
            self.h3_port = int(line.rsplit("/", 1)[1])
        elif name == "certificate SHA-256 thumbprint":
            self.thumbprint = value
        elif name == "certificate":
            self.cert_file = Path(value.rsplit(" (", 1)[0])
        elif name == "polling listener":
            self.polling_port = int(value.rsplit(":", 1)[1])
        elif name == "database":
            self.database = value
        elif name == "admin password":
            self.first_start = True
            if not value.startswith("taken from "):
                self.admin_password = value
        elif name == "first start":
            self.first_start = True


_WORKER_DIRS: set[Path] = set()


def reachable_worker_dir(data_dir: Path) -> Path:
    """A worker dir the ``octo-worker`` account can reach (as root the appliance runs the
    worker as that account, and pytest's tmp dirs are 0700), the same for every start on
    ``data_dir``; removed when the test run ends."""
    digest = hashlib.sha256(str(Path(data_dir).absolute()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"octo-test-worker-{digest}"
    if path not in _WORKER_DIRS:
        _WORKER_DIRS.add(path)
        atexit.register(shutil.rmtree, path, True)
    return path


class ServeProcess:
    """One ``serve`` subprocess; a context manager that SIGTERMs it on exit."""

    def __init__(
        self,
        data_dir: Path,
        *,
        listen: str = "127.0.0.1:0",
        polling_listen: str = "127.0.0.1:0",
        database: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        #: a session of its own: its own share of a busy machine under the kernel's
        #: scheduler autogroups (a bench's appliance, as on a machine of its own)
        self.new_session = new_session
        self.command = list(command or [sys.executable, "-m", "octo_appliance"])
        self.database = database
        self.args = [*self.command, "serve"]
        self.args += ["--data-dir", str(self.data_dir), "--listen", listen]
        self.args += ["--polling-listen", polling_listen]
        if database:
            self.args += ["--database", database]
        self.args += list(extra_args)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
        self.env.update(env or {})
        if os.geteuid() == 0 and "OCTO_WORKER_DIR" not in self.env:
            self.env["OCTO_WORKER_DIR"] = str(reachable_worker_dir(self.data_dir))
        #: the built-in worker's dir (its journal, cache and work dirs)
        self.worker_dir = Path(
            self.env.get("OCTO_WORKER_DIR") or f"{self.data_dir.absolute()}-worker"
        )
        #: the data dir's key file (None when ``env`` gives the key or its file)
        self.key_file: Path | None = None
        if not {"OCTO_MASTER_KEY", "OCTO_MASTER_KEY_FILE"} & set(self.env):
            self.key_file = keep_key_beside(self.data_dir)
        self.banner = Banner()
        self.process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._stdout: StdoutPump | None = None
        #: what the process wrote on stderr, as of the last :meth:`output` (or exit)
        self.stderr = ""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> ServeProcess:
        # closed in __exit__: it must outlive this method
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            text=True,
            start_new_session=self.new_session,
        )
        self._stdout = StdoutPump(self.process)
        try:
            self._stdout.until(lambda line: line.startswith(READY_PREFIX), timeout, self.banner.add)
        except ChildFailed as exc:
            self.__exit__()  # nobody gets a server to close: close its log file here
            raise ServeFailed(f"serve: {exc}\n{self.output()}") from None
        if not (self.banner.port and self.banner.thumbprint and self.banner.cert_file):
            raise ServeFailed(f"the banner lacks url, thumbprint or certificate\n{self.output()}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout``)."""
        return stop_process(self.process, sig, timeout)

    def output(self) -> str:
        """Everything printed so far: the banner lines and stderr (for failure messages)."""
        if self._stderr is not None:
            self.stderr = read_log(self._stderr)
        return "stdout:\n" + "\n".join(self.banner.lines) + "\nstderr:\n" + self.stderr

    def create_api_key(self, user: str = "admin") -> str:
        """A new API key of ``user``, made by the same program's ``api-key create`` on this
        server's data dir (and database) while it runs."""
        argv = [*self.command, "api-key", "create", "--data-dir", str(self.data_dir)]
        if self.database:
            argv += ["--database", self.database]
        created = subprocess.run(
            [*argv, "--user", user],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
            check=False,
        )
        if created.returncode != 0:
            raise ServeFailed(f"api-key create failed: {created.stderr}")
        return created.stdout.strip().splitlines()[-1].strip()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._stdout is not None:
            self._stdout.join()
        if self._stderr is not None:
            self.output()  # keep stderr readable after the file is gone
            self._stderr.close()
            self._stderr = None

    # -- clients -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.banner.host

    @property
    def port(self) -> int:
        return self.banner.port

    @property
    def url(self) -> str:
        return self.banner.url

    @property
    def cert_file(self) -> Path:
        assert self.banner.cert_file is not None
        return self.banner.cert_file

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts exactly the appliance's certificate (and checks the host name/IP)."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    def http2_client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.url.rstrip("/"),
            http2=True,
            verify=self.ssl_context(),
            **kwargs,  # type: ignore[arg-type]
        )

    def async_http2_client(self, key: str, timeout: float = 60) -> httpx.AsyncClient:
        """An HTTP/2 client for many calls at once, signed in with the API key ``key``."""
        return httpx.AsyncClient(
            base_url=self.url.rstrip("/"),
            http2=True,
            verify=self.ssl_context(),
            headers={"X-Api-Key": key},
            timeout=timeout,
        )
