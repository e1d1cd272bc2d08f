"""Accepting TLS connections ourselves, so a flood of half-open ones cannot starve a listener.

asyncio's own TLS server gives every accepted socket a 256 KiB read buffer before the first
byte of the handshake, sets no cap on how many handshakes may be pending, and logs every
failed ``accept()`` (issue 17: 2,000 idle connections cost ~430 MB, and with the descriptor
limit reached it logged "socket.accept() out of system resource" 860,000 times in 70 s).
:class:`AdmissionServer` replaces its accept loop (the listening socket is ours, read with
``add_reader``) and keeps the rest of asyncio's TLS machinery:

- at most ``max_pending`` connections per listener and ``max_pending_per_address`` per peer
  address may be in the TLS handshake. Over the per-address cap a newcomer pushes out one
  of its address that has received nothing for a quarter of the timeout (a flood's), else
  it waits for a slot (:mod:`~octo_appliance.comms.waiting`); over the per-listener cap it
  pushes out the *oldest* pending one, so a legitimate client is served during a flood;
- a handshake that is not done within ``timeout`` seconds is dropped;
- no connection has a read buffer of its own: asyncio's TLS protocol would keep 256 KiB per
  connection, here all of a thread's connections receive into one
  (:mod:`~octo_appliance.comms.readbuffer`);
- an ``accept()`` error (out of descriptors) pauses accepting briefly and is logged once per
  interval with a count (:class:`~octo_appliance.comms.ratelog.RateLimitedLog`).

The comms listeners (polling listener, listening agent) use it directly; the HTTPS listener
gets it through the appliance's event loop (``octo_appliance.web.server``), where Hypercorn's
``asyncio.start_server`` call lands. See docs/operations.md, "Floods of half-open connections".
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from octo_appliance.comms.descriptors import descriptor_limit
from octo_appliance.comms.ratelog import RateLimitedLog
from octo_appliance.comms.readbuffer import shared_read_buffer
from octo_appliance.comms.tlswrites import SlicedWrites
from octo_appliance.comms.waiting import WaitingRoom

log = logging.getLogger("octo_appliance.comms.admission")

#: the read buffer asyncio allocates when a connection is set up, dropped at once for the
#: shared one (kept small so accepting does not allocate and clear 256 KiB each time)
HANDSHAKE_BUFFER = 4096
#: seconds accepting pauses after the process ran out of descriptors
ACCEPT_RETRY = 0.5
#: connections accepted per readiness event before other work gets the loop again
ACCEPT_BATCH = 128
#: queued connections the kernel keeps before accept() (it caps this at net.core.somaxconn):
#: 5,000 polling agents reconnecting after a restart arrive within a second or two
BACKLOG = 4096
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

#: ``on_refused(address, exception, ssl_object)``: a handshake that did not complete
OnRefused = Callable[[str, BaseException, ssl.SSLObject | None], None]


@dataclass(frozen=True)
class HandshakeLimits:
    """How much a listener lets connections that have not finished TLS hold."""

    #: seconds a connection may take to finish the TLS handshake
    timeout: float = 10.0
    #: connections in the TLS handshake at once, per listener
    max_pending: int = 256
    #: of which from one peer address
    max_pending_per_address: int = 32

    def within_descriptors(self) -> HandshakeLimits:
        """No more than a quarter of the descriptor limit, so pending handshakes alone
        cannot exhaust the descriptors every other connection and file needs."""
        soft = descriptor_limit()
        budget = self.max_pending if soft is None else max(8, soft // 4)
        pending = max(1, min(self.max_pending, budget))
        return replace(
            self,
            max_pending=pending,
            max_pending_per_address=max(1, min(self.max_pending_per_address, pending)),
        )


def format_address(peer: Any) -> tuple[str, str]:
    """``(host, "host:port")`` of a socket address (IPv6 in brackets)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        shown = f"[{host}]" if ":" in host else host
        return host, f"{shown}:{peer[1]}"
    return str(peer), str(peer)


class _Handshake(SlicedWrites):
    """asyncio's server-side TLS protocol receiving into the thread's shared read buffer
    (it allocates 256 KiB per connection), writing in slices (:mod:`.tlswrites`), and what
    admission tracks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        waiter: asyncio.Future[None],
        *,
        timeout: float,
        shutdown_timeout: float | None,
        host: str,
        address: str,
        sock: socket.socket,
    ) -> None:
        # asyncio sizes the read buffer from max_size and allocates it here: small, as it is
        # replaced below by the shared one; then the class's default again (read chunks)
        self.__dict__["max_size"] = HANDSHAKE_BUFFER
        super().__init__(
            loop,
            app_protocol,
            context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=timeout,  # type: ignore[arg-type]
            ssl_shutdown_timeout=shutdown_timeout,
        )
        self.__dict__.pop("max_size", None)
        self._ssl_buffer_view = shared_read_buffer()
        self._ssl_buffer = bytearray()
        self.host, self.address, self.sock = host, address, sock
        self.started = False
        self.raw_transport: asyncio.BaseTransport | None = None
        self.task: asyncio.Task[Any] | None = None
        #: loop time of the last bytes received: a handshake without progress may be pushed out
        self.progressed = loop.time()

    def buffer_updated(self, nbytes: int) -> None:
        self.progressed = self._loop.time()
        super().buffer_updated(nbytes)

    def get_buffer(self, n: int) -> memoryview:
        # asyncio's buffer_updated() reads what was received from _ssl_buffer_view
        self._ssl_buffer_view = shared_read_buffer()
        return self._ssl_buffer_view

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw_transport = transport
        super().connection_made(transport)  # type: ignore[arg-type]

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return getattr(self, "_sslobj", None)

    def drop(self) -> None:
        """Close at once, wherever the connection is in being set up."""
        if self.raw_transport is not None:
            self.raw_transport.abort()  # type: ignore[attr-defined]
        elif self.task is not None and not self.started:
            self.task.cancel()  # never ran: the socket is still only ours
            self.sock.close()
        elif self.task is not None:
            self.task.cancel()  # asyncio closes the transport it made


class AdmissionServer(asyncio.AbstractServer):
    """A TLS listener on already-bound sockets, with the limits of :class:`HandshakeLimits`.

    ``protocol_factory`` makes the application protocol, which sees the connection once the
    handshake succeeded (as with ``loop.create_server``). ``on_refused`` hears about every
    handshake that failed or timed out (default: a debug line).
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        limits: HandshakeLimits,
        *,
        name: str,
        on_refused: OnRefused | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets = sockets
        self._factory, self._context = protocol_factory, context
        self.limits = limits.within_descriptors()
        self.name = name
        self._on_refused = on_refused
        self._shutdown_timeout = shutdown_timeout
        #: handshakes in progress, oldest first (dicts keep insertion order)
        self._pending: dict[_Handshake, None] = {}
        self._by_host: dict[str, dict[_Handshake, None]] = {}
        #: accepted over the per-address cap, not started (comms/waiting.py)
        self._waiting = WaitingRoom(self.limits.max_pending)
        self._serving = False
        self._closed = False
        self.dropped = 0
        self.accept_errors = 0
        self._notes = RateLimitedLog(log, "such events")

    # -- asyncio.AbstractServer ----------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    @property
    def pending(self) -> int:
        """Connections in the TLS handshake now."""
        return len(self._pending)

    @property
    def waiting(self) -> int:
        """Connections accepted over the per-address cap, waiting to start the handshake."""
        return len(self._waiting)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._serving or self._closed:
            return
        self._serving = True
        for sock in self._sockets:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.Event().wait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed, self._serving = True, False
        for sock in self._sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                sock.close()
        for handshake in list(self._pending):
            self._forget(handshake)
            handshake.drop()
        for sock, _, _ in self._waiting.clear():
            sock.close()
        self._notes.flush()

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)  # let the aborted transports deliver connection_lost

    # -- accepting -----------------------------------------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(sock, exc)
                return
            self._admit(conn, peer)

    def _accept_failed(self, sock: socket.socket, exc: OSError) -> None:
        self.accept_errors += 1
        message = f"{self.name}: cannot accept a connection: {exc.strerror or exc}"
        if exc.errno in _RESOURCE_ERRNOS:
            # the pending connection stays in the kernel's queue; Linux keeps reporting the
            # socket readable, so stop watching it for a moment instead of spinning
            message += (
                f" (descriptor limit {descriptor_limit()}); accepting pauses for {ACCEPT_RETRY:g} s"
            )
            self._loop.remove_reader(sock.fileno())
            self._loop.call_later(ACCEPT_RETRY, self._resume, sock)
        self._notes.note(f"{self.name} accept errors", message, level=logging.ERROR)

    def _resume(self, sock: socket.socket) -> None:
        if self._serving and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _admit(self, conn: socket.socket, peer: Any) -> None:
        conn.setblocking(False)
        host, _ = format_address(peer)
        same = self._by_host.get(host)
        if same is not None and len(same) >= self.limits.max_pending_per_address:
            stall = self.limits.timeout / 4
            since = self._loop.time() - stall
            stalled = next((h for h in same if h.progressed <= since), None)
            if stalled is None:
                overflow = self._waiting.hold(host, (conn, peer, self._loop.time()))
                if overflow is not None:
                    overflow[0].close()
                    limit = f"at most {self._waiting.capacity} may wait for a handshake"
                    self._dropped(format_address(overflow[1])[1], limit)
                return
            limit = f"{self.limits.max_pending_per_address} per address, sending nothing for"
            self._push_out(stalled, f"{limit} {stall:g} s")
        self._start(conn, peer)

    def _start_waiting(self, first: str) -> None:
        """Start what waits, ``first``'s address first, while the caps allow; a connection
        that waited the handshake timeout is closed (its client has given up on it)."""
        limits, now = self.limits, self._loop.time()
        for host in [first, *self._waiting.hosts()]:
            while (
                len(self._by_host.get(host, ())) < limits.max_pending_per_address
                and len(self._pending) < limits.max_pending
                and (entry := self._waiting.take(host)) is not None
            ):
                conn, peer, since = entry
                if now - since < limits.timeout:
                    self._start(conn, peer)
                else:
                    conn.close()
                    self._dropped(format_address(peer)[1], f"waited {limits.timeout:g} s")

    def _start(self, conn: socket.socket, peer: Any) -> None:
        host, address = format_address(peer)
        if len(self._pending) >= self.limits.max_pending:
            self._push_out(next(iter(self._pending)), f"{self.limits.max_pending} per listener")
        waiter: asyncio.Future[None] = self._loop.create_future()
        try:
            handshake = _Handshake(
                self._loop,
                self._factory(),
                self._context,
                waiter,
                timeout=self.limits.timeout,
                shutdown_timeout=self._shutdown_timeout,
                host=host,
                address=address,
                sock=conn,
            )
        except Exception:
            conn.close()
            log.exception("%s: cannot set up TLS for %s", self.name, address)
            return
        self._pending[handshake] = None
        self._by_host.setdefault(host, {})[handshake] = None
        waiter.add_done_callback(lambda done: self._handshake_done(handshake, done))
        handshake.task = self._loop.create_task(self._connect(handshake))

    async def _connect(self, handshake: _Handshake) -> None:
        handshake.started = True
        try:
            await self._loop.connect_accepted_socket(lambda: handshake, handshake.sock)
        except OSError as exc:  # the socket died between accept and here
            if self._forget(handshake):
                handshake.sock.close()
                self._refused(handshake, exc)
                self._start_waiting(handshake.host)

    def _push_out(self, handshake: _Handshake, limit: str) -> None:
        self._forget(handshake)
        handshake.drop()
        self._dropped(handshake.address, f"at most {limit} may be in the handshake")

    def _dropped(self, address: str, why: str) -> None:
        self.dropped += 1
        self._notes.note(
            f"{self.name} connections dropped in the handshake",
            f"{self.name}: dropped the connection of {address}, still in the TLS "
            f"handshake, to admit a new one ({why}; a flood of half-open connections looks "
            "like this)",
        )

    def _forget(self, handshake: _Handshake) -> bool:
        """Stop tracking; False when it was no longer tracked (already dropped or done)."""
        if handshake not in self._pending:
            return False
        del self._pending[handshake]
        same = self._by_host.get(handshake.host)
        if same is not None:
            same.pop(handshake, None)
            if not same:
                del self._by_host[handshake.host]
        return True

    def _handshake_done(self, handshake: _Handshake, waiter: asyncio.Future[None]) -> None:
        if not self._forget(handshake):
            return  # dropped by this side: already accounted for
        exc = asyncio.CancelledError() if waiter.cancelled() else waiter.exception()
        if exc is not None:
            self._refused(handshake, exc)
        if len(self._waiting):
            self._start_waiting(handshake.host)

    def _refused(self, handshake: _Handshake, exc: BaseException) -> None:
        if self._on_refused is not None:
            try:
                self._on_refused(handshake.address, exc, handshake.ssl_object)
            except Exception:
                log.exception("%s: reporting a failed handshake failed", self.name)
        else:
            log.debug("%s: TLS handshake with %s failed: %r", self.name, handshake.address, exc)


def bind_sockets(host: str | None, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening TCP sockets for ``host:port`` as ``loop.create_server`` would bind them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            if port == 0 and sockets:  # every family on the port the first one got
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def start_tls_server(
    client_connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: str,
    port: int,
    context: ssl.SSLContext,
    limits: HandshakeLimits,
    *,
    name: str,
    on_refused: OnRefused | None = None,
) -> AdmissionServer:
    """``asyncio.start_server`` for TLS, through admission: ``client_connected(reader,
    writer)`` runs once a connection finished its handshake."""

    def factory() -> asyncio.BaseProtocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), client_connected)

    server = AdmissionServer(
        bind_sockets(host, port), factory, context, limits, name=name, on_refused=on_refused
    )
    await server.start_serving()
    return server
