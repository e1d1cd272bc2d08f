"""Hypercorn wiring: HTTPS (HTTP/1.1 + HTTP/2 over TLS) on TCP and HTTP/3 on UDP, same port.

We bind the sockets ourselves and hand them to Hypercorn as ``fd://N`` because with port 0 the
kernel would pick different TCP and UDP ports; binding TCP first and then UDP on the port it
got keeps them equal, and Hypercorn's ``alt-svc: h3=":PORT"`` (built from the QUIC socket's
real address) then points at the right place.

Hypercorn's TCP listener is started with ``asyncio.start_server``, which lands in this loop's
``create_server``: there the TLS listener is replaced by an
:class:`~octo_appliance.comms.admission.AdmissionServer` (caps on connections still in the
TLS handshake, small buffers until it completes, accept errors logged once per interval).

Hypercorn's QUIC side loads the key file without ``keyfile_password``, so an encrypted key
cannot be given to it directly. The decrypted key goes into an anonymous in-memory file
(``memfd``) that both the TLS and the QUIC listeners read at start; it never touches the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from starlette.types import ASGIApp

from octo_appliance.certificate import ServerCertificate
from octo_appliance.comms.admission import AdmissionServer, HandshakeLimits
from octo_appliance.exceptions import ConfigError, OctoError
from octo_appliance.web import h2guard, h3guard
from octo_appliance.web.header_limit import HEADER_SECTION_LIMIT, HeaderSectionLimit

log = logging.getLogger(__name__)

#: How often binding UDP on the TCP port may fail (another process owns that UDP port)
#: before port 0 gives up.
BIND_ATTEMPTS = 20
BACKLOG = 1024
KEEP_ALIVE_MAX_REQUESTS = 1_000_000
#: Seconds an idle keep-alive connection stays open. Hypercorn's 5 s equals httpx's pool
#: expiry, so a request sent after a 5 s pause could meet the server closing the connection;
#: nginx keeps 75 s, Kestrel (Octopus Server) 130 s. Stopping closes idle connections at once,
#: whatever this is. (The CI "server disconnected" flake had another cause: see h2guard.py.)
KEEP_ALIVE_TIMEOUT = 75.0
#: How long closing a TLS connection waits for the client's close_notify. asyncio's default
#: of 30 s lets one idle keep-alive client that never answers hold up shutdown that long.
SSL_SHUTDOWN_TIMEOUT = 0.25
#: Past the grace period, how much longer stopping may take before the process exits anyway
#: (a request stuck in a worker thread cannot be cancelled).
HARD_STOP_MARGIN = 0.5

T = TypeVar("T")


@dataclass
class Listener:
    """The bound (not yet served) sockets; ``udp`` is None when HTTP/3 is off."""

    host: str
    port: int
    tcp: socket.socket
    udp: socket.socket | None

    def close(self) -> None:
        self.tcp.close()
        if self.udp is not None:
            self.udp.close()


def _address(
    host: str, port: int
) -> tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on '{host}': {exc.strerror}",
            hint="give an IP address of this machine, 0.0.0.0 (all IPv4) or :: (all IPv6)",
        ) from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr  # type: ignore[return-value]


def _bind_error(host: str, port: int, proto: str, exc: OSError) -> OctoError:
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        return OctoError(
            f"cannot listen on {proto} {where}: the address is already in use",
            hint="stop the other process using it, or choose another port with --listen HOST:PORT",
        )
    if exc.errno == errno.EACCES:
        return OctoError(
            f"cannot listen on {proto} {where}: permission denied",
            hint="ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher port",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"cannot listen on {proto} {where}: no such address on this machine",
            hint="give an IP address of this machine, or 0.0.0.0 for all of them",
        )
    return OctoError(f"cannot listen on {proto} {where}: {exc.strerror}")


def bind_listener(host: str, port: int, *, http3: bool) -> Listener:
    """Bind TCP (listening) and, with ``http3``, UDP on the same port."""
    family, sockaddr = _address(host, port)
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            # REUSEADDR lets a restart bind past the old process's TIME_WAIT connections; two
            # listeners on one TCP port are still refused.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tcp.bind(sockaddr)
            tcp.listen(BACKLOG)
        except OSError as exc:
            tcp.close()
            raise _bind_error(host, port, "tcp", exc) from None
        bound_port = tcp.getsockname()[1]
        if not http3:
            return Listener(host, bound_port, tcp, None)
        # No REUSEADDR on UDP: on Linux it would let us share a port another process uses.
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((sockaddr[0], bound_port, *sockaddr[2:]))
        except OSError as exc:
            udp.close()
            tcp.close()
            if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                log.debug("udp/%d is taken; trying another ephemeral port", bound_port)
                continue
            raise _bind_error(host, bound_port, "udp", exc) from None
        return Listener(host, bound_port, tcp, udp)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def plain_key_file(cert: ServerCertificate) -> Iterator[str]:
    """A path to the decrypted private key that exists only in memory (Linux ``memfd``).

    Elsewhere it falls back to a 0600 file in a private temporary directory, removed on exit.
    """
    pem = cert.private_key_pem()
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fd = memfd_create("octo-tls-key", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="octo-tls-") as tmp:
        path = Path(tmp) / "key.pem"
        path.touch(mode=0o600)
        path.write_bytes(pem)
        yield str(path)


def hypercorn_config(
    listener: Listener, cert_file: Path, key_file: str, grace_seconds: float, log_level: str
) -> HypercornConfig:
    config = HypercornConfig()
    # Hypercorn wraps the fd in its own socket object; detach ours so the fd is closed once.
    config.bind = [f"fd://{listener.tcp.detach()}"]
    if listener.udp is not None:
        config.quic_bind = [f"fd://{listener.udp.detach()}"]
    config.certfile = str(cert_file)
    config.keyfile = key_file
    config.graceful_timeout = grace_seconds
    config.backlog = BACKLOG
    config.include_server_header = False
    # Hypercorn closes a connection after 1,000 requests by default; API scripts and the CLI
    # keep one HTTP/2 connection for many more, and a GOAWAY mid-run fails them.
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    # One header-section limit for HTTP/1.1, HTTP/2 and HTTP/3 (header_limit.py says why).
    config.h11_max_incomplete_size = HEADER_SECTION_LIMIT
    config.h2_max_header_list_size = HEADER_SECTION_LIMIT
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = logging.getLogger("hypercorn.access") if log_level == "debug" else None
    return config


class _ServerEventLoop(asyncio.SelectorEventLoop):
    """The default loop, with a short TLS shutdown wait for every TLS server it creates, and
    Hypercorn's TLS listener accepted through admission (see the module docstring).

    Hypercorn gives ``asyncio.start_server`` no ``ssl_shutdown_timeout``, so it is set here.
    """

    handshake_limits = HandshakeLimits()

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_shutdown_timeout", SSL_SHUTDOWN_TIMEOUT)
            if kwargs.get("sock") is not None and not any(args[1:]):  # a bound socket
                server = AdmissionServer(
                    [kwargs["sock"]],
                    args[0],
                    kwargs["ssl"],
                    self.handshake_limits,
                    name="HTTPS listener",
                    shutdown_timeout=kwargs["ssl_shutdown_timeout"],
                )
                await server.start_serving()
                return server  # type: ignore[return-value]
        return await super().create_server(*args, **kwargs)


def _connection_errors_to_debug(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A client that drops, fails the handshake or never answers close_notify is routine."""
    exc = context.get("exception")
    routine = isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError)
    if routine and ("transport" in context or "protocol" in context):
        log.debug("connection closed uncleanly: %r", exc)
        return
    loop.default_exception_handler(context)


def run_server(main: Coroutine[Any, Any, T], handshake_limits: HandshakeLimits | None = None) -> T:
    """``asyncio.run`` on the server's event loop (its TLS listeners admit handshakes under
    ``handshake_limits``)."""
    with asyncio.Runner(loop_factory=_ServerEventLoop) as runner:
        loop = runner.get_loop()
        loop.set_exception_handler(_connection_errors_to_debug)
        if handshake_limits is not None and isinstance(loop, _ServerEventLoop):
            loop.handshake_limits = handshake_limits
        return runner.run(main)


def install_shutdown_trigger() -> Callable[[], Awaitable[None]]:
    """SIGTERM and SIGINT set an event; Hypercorn stops gracefully when it is set."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def request_stop(signum: int) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)

    async def wait() -> None:
        await stop.wait()

    return wait


async def serve(
    app: ASGIApp,
    listener: Listener,
    cert: ServerCertificate,
    *,
    grace_seconds: float,
    log_level: str,
    shutdown_trigger: Callable[[], Awaitable[None]],
) -> None:
    """Serve ``app`` on the bound listener until ``shutdown_trigger`` returns.

    Stopping takes at most ``grace_seconds`` for open requests plus the TLS shutdown wait;
    should anything still hang :data:`HARD_STOP_MARGIN` later, the process exits anyway.
    """
    quic_address = listener.udp.getsockname() if listener.udp is not None else None
    h2guard.install()  # request data arriving after its answer must not drop the connection
    if quic_address is not None:
        h3guard.install()  # one bad request or a datagram flood must not stop HTTP/3
    app = HeaderSectionLimit(app)
    cleanup: list[asyncio.TimerHandle | asyncio.Task[None]] = []

    async def trigger() -> None:
        await shutdown_trigger()
        loop = asyncio.get_running_loop()
        deadline = grace_seconds + HARD_STOP_MARGIN
        cleanup.append(loop.call_later(deadline, _exit_hard, deadline))
        if quic_address is not None:
            cleanup.append(asyncio.create_task(_wake_quic(quic_address)))

    try:
        with plain_key_file(cert) as key_file:
            config = hypercorn_config(listener, cert.cert_file, key_file, grace_seconds, log_level)
            await hypercorn_serve(app, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
    finally:
        for item in cleanup:
            item.cancel()


def _exit_hard(after_seconds: float) -> None:
    """Last resort when stopping hangs: the database is transactional, so leaving is safe."""
    log.warning("connections still open %.2f s after the stop signal; exiting now", after_seconds)
    exit_process(0)


def exit_process(code: int) -> None:
    """Leave at once, without interpreter finalization, after flushing logs and output.

    Tearing down the loaded modules and native libraries (libpq, OpenSSL, aioquic) takes
    0.3-0.8 s on a small VM, which would eat most of the 2 s stop budget for nothing once the
    database is closed.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _wake_quic(address: tuple[Any, ...]) -> None:
    """Send empty datagrams to our own QUIC socket while stopping, until Hypercorn is done.

    Hypercorn's UDP loop only re-checks "terminated and no connections" after a datagram
    arrives, so without one an idle server waits out the whole grace period. An empty
    datagram is dropped by its QUIC header parser.
    """
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as nudge:
        nudge.setblocking(False)
        while True:
            with contextlib.suppress(OSError):
                nudge.sendto(b"", (host, *address[1:]))
            await asyncio.sleep(0.05)
