"""Helpers for the agent tests: a real ``octo-agent run`` process, an appliance stand-in built
from the comms module only, and a small HTTPS server playing the registration API.

The stand-in runs its own event loop in a thread, so tests stay synchronous while the agent
process and the stand-in talk over real sockets.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar

from octo_appliance.agent.home import AgentConfig, Home
from octo_appliance.comms import (
    CallFailed,
    CommsServer,
    CommsSettings,
    Connection,
    Identity,
    IncomingRequest,
    LocalHello,
    PollingHub,
    TrustStore,
    connect,
    serve,
)
from tests.child_process import ChildFailed, StdoutPump, read_log, stop_process

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE_HELLO = LocalHello(role="appliance", id="stand-in")
T = TypeVar("T")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def make_home(
    root: Path,
    *,
    name: str,
    mode: str,
    appliance: Identity,
    listen: str = "127.0.0.1:0",
    polling_address: str = "",
    target_id: str = "",
    environments: Sequence[str] = ("Test",),
    roles: Sequence[str] = ("web",),
) -> Home:
    """A registered home, written through the agent's own code (no appliance needed); its
    target id is ``tgt_<name>`` unless given."""
    home = Home(root)
    if not home.has_identity():
        home.create_identity()
    home.save_config(
        AgentConfig(
            name=name,
            mode=mode,  # type: ignore[arg-type]
            listen=listen if mode == "listening" else "",
            polling_address=polling_address,
            server_url="https://127.0.0.1:1",
            api_thumbprint=appliance.thumbprint,
            api_certificate=appliance.cert_pem.decode(),
            comms_thumbprint=appliance.thumbprint,
            comms_certificate=appliance.cert_pem.decode(),
            target_id=target_id or f"tgt_{name}",
            environments=list(environments),
            roles=list(roles),
        )
    )
    return home


class AgentProcess:
    """``python -m octo_appliance.agent.cli run --home ...`` and its banner."""

    def __init__(
        self,
        homes: list[Home],
        *,
        log_level: str = "DEBUG",
        command: Sequence[str] = (),
        new_session: bool = False,
    ) -> None:
        self.homes = homes
        #: a session of its own (a bench's target: its own share of a busy machine under
        #: the kernel's scheduler autogroups, as on a machine of its own)
        self.new_session = new_session
        #: the development install unless ``command`` names another octo-agent (the frozen one)
        self.args = [*(command or (sys.executable, "-m", "octo_appliance.agent.cli")), "run"]
        for home in homes:
            self.args += ["--home", str(home.root)]
        self.args += ["--log-level", log_level]
        self.process: subprocess.Popen[str] | None = None
        self.banner: list[str] = []
        self._stderr: IO[str] | None = None
        self._stdout: StdoutPump | None = None

    def start(self, timeout: float = 30.0) -> AgentProcess:
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            start_new_session=self.new_session,
        )
        self._stdout = StdoutPump(self.process)
        try:
            self._stdout.until(lambda line: line == "ready", timeout, self.banner.append)
        except ChildFailed as exc:
            raise AssertionError(f"the agent: {exc}\n{self.stderr()}") from None
        return self

    @property
    def stdout_lines(self) -> queue.Queue[str | None]:
        """What the agent prints after ``ready``, line by line (None once it ended)."""
        assert self._stdout is not None, "start() it first"
        return self._stdout.lines

    def listen_port(self, name: str) -> int:
        for line in self.banner:
            kind, _, rest = line.partition(": ")
            agent, _, address = rest.partition(" ")
            if kind == "listening" and agent == name:
                return int(address.rsplit(":", 1)[1])
        raise AssertionError(f"no listening line for {name}: {self.banner}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        return stop_process(self.process, sig, timeout)

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        return read_log(self._stderr)

    def close(self) -> None:
        self.stop()
        if self._stdout is not None:
            self._stdout.join()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class StandIn:
    """The appliance's side of the wire, built from comms only, on a loop in a thread.

    It serves ``runner.fetch`` from ``builds`` (version -> pyz path) and ``plugin.fetch`` from
    ``bundles`` (sha256 -> zip path), and counts the fetches.
    Listening agents are dialed (one cached connection per port); polling agents connect to
    :meth:`start_polling_listener` and are called through a PollingHub.
    """

    def __init__(self, identity: Identity, builds: dict[str, Path], spool: Path) -> None:
        self.identity = identity
        self.builds = builds
        #: plugin command bundles served by ``plugin.fetch``: announced SHA-256 -> file
        self.bundles: dict[str, Path] = {}
        self.fetches: collections.Counter[str] = collections.Counter()
        spool.mkdir(parents=True, exist_ok=True)
        self.settings = CommsSettings(
            ping_interval=1.0, dead_after=10.0, handshake_timeout=10.0, spool_dir=spool
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.hub: PollingHub | None = None
        self.server: CommsServer | None = None
        self._conns: dict[int, Connection] = {}

    # -- running coroutines on the stand-in's loop -------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        async def shutdown() -> None:
            for conn in self._conns.values():
                conn.close()
            if self.hub is not None:
                await self.hub.close()
            if self.server is not None:
                await self.server.close()

        try:
            self.run(shutdown(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    # -- the appliance's handler -------------------------------------------------------

    async def handle(self, request: IncomingRequest) -> Any:
        if request.method == "plugin.fetch":
            return self._plugin_fetch(request)
        if request.method != "runner.fetch":
            raise CallFailed("unknown_method", f"the stand-in does not handle {request.method}")
        version = str(request.params.get("version"))
        self.fetches[version] += 1
        build = self.builds.get(version)
        if build is None:
            raise CallFailed("not_found", f"no runner {version} here")
        request.respond_with_file(build)
        return {"version": version}

    def _plugin_fetch(self, request: IncomingRequest) -> Any:
        """``plugin.fetch``: the bundle served for an announced SHA-256 (``bundles``)."""
        sha256 = str(request.params.get("sha256"))
        self.fetches[f"plugin:{sha256}"] += 1
        bundle = self.bundles.get(sha256)
        if bundle is None:
            raise CallFailed("unknown_bundle", f"no plugin bundle {sha256} here")
        request.respond_with_file(bundle)
        return {"sha256": sha256}

    # -- polling -----------------------------------------------------------------------

    def start_polling_listener(self, trusted: list[Identity]) -> int:
        async def start() -> int:
            self.hub = PollingHub()
            self.server = await serve(
                "127.0.0.1",
                0,
                self.identity,
                TrustStore([i.cert_pem for i in trusted]),
                hello=APPLIANCE_HELLO,
                on_connection=self.hub.attach,
                handler=self.handle,
                settings=self.settings,
            )
            return self.server.port

        return self.run(start())

    # -- calling an agent --------------------------------------------------------------

    async def dial(self, port: int, agent_thumbprint: str) -> Connection:
        conn = self._conns.get(port)
        if conn is None or not conn.accepts_calls:
            conn = await connect(
                "127.0.0.1",
                port,
                self.identity,
                agent_thumbprint,
                hello=APPLIANCE_HELLO,
                handler=self.handle,
                settings=self.settings,
            )
            self._conns[port] = conn
        return conn


class Target:
    """One agent identity as the tests call it, whichever way it is connected."""

    def __init__(
        self, standin: StandIn, home: Home, *, port: int | None, thumbprint: str, mode: str
    ) -> None:
        self.standin = standin
        self.home = home
        self.port = port
        self.thumbprint = thumbprint
        self.mode = mode

    async def call_async(
        self,
        method: str,
        params: dict[str, Any],
        *,
        events: list[dict[str, Any]] | None = None,
        upload: Path | None = None,
        download_dir: Path | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        def record(event: dict[str, Any]) -> None:
            if events is not None:
                events.append(event)
            if on_event is not None:
                on_event(event)

        if self.port is not None:
            conn = await self.standin.dial(self.port, self.thumbprint)
            return await conn.call(
                method, params, on_event=record, upload=upload, download_dir=download_dir
            )
        assert self.standin.hub is not None
        return await self.standin.hub.call(
            self.thumbprint,
            method,
            params,
            pickup_timeout=30,
            on_event=record,
            upload=upload,
            download_dir=download_dir,
        )

    def call(self, method: str, params: dict[str, Any], **kwargs: Any) -> Any:
        return self.standin.run(self.call_async(method, params, **kwargs))

    def submit(self, method: str, params: dict[str, Any], **kwargs: Any) -> Any:
        return self.standin.submit(self.call_async(method, params, **kwargs))


class FakeApi:
    """An HTTPS server answering the registration endpoints with scripted responses."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.requests: list[dict[str, Any]] = []
        #: (method, path) -> (status, JSON body)
        self.responses: dict[tuple[str, str], tuple[int, Any]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                api.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "api_key": self.headers.get("X-Api-Key"),
                        "body": json.loads(raw) if raw else None,
                    }
                )
                status, body = api.responses.get((self.command, self.path), (404, {}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_DELETE = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        identity.load_into(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


def incoming(
    method: str, params: dict[str, Any], events: list[dict[str, Any]] | None = None
) -> IncomingRequest:
    """A request from the appliance as the handlers get it; the events it sends back go to
    ``events`` (or nowhere)."""

    async def send(event: dict[str, Any]) -> None:
        if events is not None:
            events.append(event)

    return IncomingRequest(
        method=method,
        params=params,
        stream_id=2,
        peer_thumbprint="ab" * 32,
        peer_hello={"role": "appliance"},
        send_event=send,
    )
