"""Dialing a pinned peer: :func:`connect` once, or :class:`ReconnectingClient` for ever.

The appliance dials listening agents; polling agents dial the appliance and keep the
connection open with a ReconnectingClient. Its backoff is exponential with *full jitter*
(a uniformly random delay below the exponential ceiling), so when a restarted appliance drops
1,000 agents at once their retries spread out instead of arriving together; the backoff starts
over after a connection that lived ``stable_after`` seconds.

A polling agent of several appliance nodes (docs/ha.md, "Calls across nodes") gives the
client several addresses: it dials them in turn, moving on to the next one at once when a
dial fails or a connection is lost (a node that died is not waited for), and backs off only
when a whole round failed. Every node presents the same pinned certificate.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import random
import ssl
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from octo_appliance.comms.call_types import Handler
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.errors import (
    CommsError,
    ConnectFailed,
    HandshakeError,
    IdentityError,
    PeerNotTrusted,
)
from octo_appliance.comms.handshake import LocalHello, establish, pinned_check
from octo_appliance.comms.identity import Identity, normalize_thumbprint, thumbprint_of_pem
from octo_appliance.comms.pinning import client_context, set_tcp_keepalive
from octo_appliance.comms.settings import CommsSettings

log = logging.getLogger("octo_appliance.comms")

#: dials a process has in flight at once (every ReconnectingClient of its event loop): an
#: agent process serving 250 identities dialled for all of them together after an appliance
#: restart, and on a busy 2-core machine 250 TLS handshakes at once each took longer than the
#: handshake timeout, so all of them started over, again and again (bench/dispatch.py, 5,000
#: agents); a few at a time each finish in milliseconds
DIALS_AT_ONCE = 8
_DIAL_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def dial_gate() -> asyncio.Semaphore:
    """The running event loop's limit on dials in flight (:data:`DIALS_AT_ONCE`)."""
    loop = asyncio.get_running_loop()
    return _DIAL_GATES.setdefault(loop, asyncio.Semaphore(DIALS_AT_ONCE))


async def connect(
    host: str,
    port: int,
    identity: Identity,
    pinned_thumbprint: str,
    pinned_cert_pem: str | bytes | None = None,
    *,
    hello: LocalHello,
    handler: Handler | None = None,
    settings: CommsSettings | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Connection:
    """Open a connection to the peer whose certificate has ``pinned_thumbprint``.

    ``ssl_context``: one :func:`client_context` built for the same identity and pin, reused
    by a caller that dials again and again (building one loads the key: milliseconds of CPU).
    """
    settings = settings or CommsSettings()
    expected = normalize_thumbprint(pinned_thumbprint)
    if pinned_cert_pem is not None and thumbprint_of_pem(pinned_cert_pem) != expected:
        raise IdentityError(
            f"the pinned certificate does not have the pinned thumbprint {expected}",
            hint="give the peer's certificate and its own thumbprint",
        )
    context = ssl_context or client_context(identity, pinned_cert_pem)
    address = f"{host}:{port}"
    try:
        async with asyncio.timeout(settings.handshake_timeout):
            reader, writer = await _open(host, port, context, settings, address)
            set_tcp_keepalive(writer.get_extra_info("socket"), *settings.tcp_keepalive)
            return await establish(
                reader,
                writer,
                initiator=True,
                hello=hello,
                check_peer=pinned_check(expected, address),
                handler=handler,
                settings=settings,
                address=address,
            )
    except TimeoutError:
        raise HandshakeError(
            f"{address} did not complete the handshake within {settings.handshake_timeout:g} s",
            hint="check that an Octo agent or appliance listens there and is not overloaded",
        ) from None


async def _open(
    host: str, port: int, context: ssl.SSLContext, settings: CommsSettings, address: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection(
            host, port, ssl=context, ssl_handshake_timeout=settings.handshake_timeout
        )
    except ssl.SSLCertVerificationError as exc:
        raise PeerNotTrusted(
            f"{address} presented a certificate other than the pinned one "
            f"({exc.verify_message}); nothing was sent",
            hint="if the peer's certificate was replaced on purpose, update the pinned "
            "certificate; otherwise something else answers at that address",
        ) from None
    except ssl.SSLError as exc:
        raise HandshakeError(
            f"TLS handshake with {address} failed: {exc.reason or exc}",
            hint="check that an Octo agent or appliance listens there",
        ) from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConnectFailed(
            f"cannot connect to {address}: {reason}",
            hint="check that the peer is running and listening there, and that no firewall "
            "blocks the port",
        ) from None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter; ``delay(n)`` is uniform in [0, min(cap, base·2ⁿ)]."""

    base: float = 0.5
    #: bounds how long an agent may still be asleep once a restarted appliance is back
    #: (bench/dispatch.py: with 30 s, reconnecting took up to twice the downtime)
    cap: float = 10.0
    #: a connection that lived this long resets the attempt counter
    stable_after: float = 60.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 62))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return rand() * self.ceiling(attempt)


OnConnected = Callable[[Connection], Awaitable[None] | None]


class ReconnectingClient:
    """Keep one connection to a pinned peer open: dial, serve until lost, back off, redial."""

    def __init__(
        self,
        host: str,
        port: int,
        identity: Identity,
        pinned_thumbprint: str,
        pinned_cert_pem: str | bytes | None = None,
        *,
        hello: LocalHello,
        handler: Handler | None = None,
        settings: CommsSettings | None = None,
        backoff: Backoff | None = None,
        on_connected: OnConnected | None = None,
        rand: Callable[[], float] = random.random,
        alternates: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.host, self.port = host, port
        #: every address to dial, in turn: ``(host, port)`` first, then ``alternates``
        self.addresses = [(host, port), *[a for a in alternates if a != (host, port)]]
        self._identity, self._pinned_cert_pem = identity, pinned_cert_pem
        self._context: ssl.SSLContext | None = None
        self._connect = functools.partial(
            connect,
            identity=identity,
            pinned_thumbprint=pinned_thumbprint,
            pinned_cert_pem=pinned_cert_pem,
            hello=hello,
            handler=handler,
            settings=settings,
        )
        self.backoff = backoff or Backoff()
        self._on_connected = on_connected
        self._rand = rand
        self.connection: Connection | None = None
        #: consecutive attempts since the last stable connection (drives the backoff)
        self.attempt = 0
        self.connections_made = 0
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Close the connection and stop redialing."""
        task, self._task = self._task, None
        if self.connection is not None:
            self.connection.close("the client is stopping")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.connection is not None:
            await self.connection.wait_closed()
            self.connection = None

    async def wait_connected(self) -> Connection:
        """The current connection, once there is one."""
        while True:
            await self._connected.wait()
            if self.connection is not None and not self.connection.is_closed:
                return self.connection
            self._connected.clear()

    async def _dial(self) -> Connection:
        # one context for every redial: while the peer is down an agent dials every few
        # seconds, and a fleet of them would otherwise spend its CPU loading keys
        if self._context is None:
            self._context = client_context(self._identity, self._pinned_cert_pem)
        async with dial_gate():  # the handshake timeout starts once it is this one's turn
            return await self._connect(host=self.host, port=self.port, ssl_context=self._context)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        count = len(self.addresses)
        turn = failures = 0
        while True:
            self.host, self.port = self.addresses[turn % count]
            where = f"{self.host}:{self.port}"
            turn += 1
            failures += 1
            try:
                conn = await self._dial()
            except CommsError as exc:
                log.warning("%s", exc)
            except Exception:  # an agent must keep trying whatever happened
                log.exception("unexpected error connecting to %s", where)
            else:
                started = loop.time()
                await self._serve(conn)
                lived = loop.time() - started
                if lived >= self.backoff.stable_after:
                    self.attempt = 0
                if lived >= 1.0:  # a real connection, not one refused after the handshake
                    failures = 0
            if count > 1 and failures < count:
                log.info("trying the next appliance address")
                continue  # another node may answer: only a whole failed round backs off
            failures = 0
            delay = self.backoff.delay(self.attempt, self._rand)
            self.attempt += 1
            log.info("reconnecting to %s in %.2f s", where, delay)
            await asyncio.sleep(delay)

    async def _serve(self, conn: Connection) -> None:
        self.connection = conn
        self.connections_made += 1
        self._connected.set()
        try:
            if self._on_connected is not None:
                outcome = self._on_connected(conn)
                if inspect.isawaitable(outcome):
                    await outcome
        except Exception:
            log.exception("on_connected failed for %s; closing it", conn.label)
            conn.close("internal error on the dialing side")
        reason = await conn.wait_closed()
        self._connected.clear()
        self.connection = None
        log.warning("%s", reason.message)
