"""The TLS listener: the agent's in listening mode, the appliance's polling listener.

Mutual TLS with a run-time trust list (:class:`~octo_appliance.comms.pinning.ServerTLS`), then the
post-handshake allowed check, then HELLO; only a connection that passed all three reaches
``on_connection``. Connections are accepted through :mod:`~octo_appliance.comms.admission`
(caps on pending handshakes, small buffers until TLS is done). Refused handshakes are logged
with the peer's address, the certificate it presented and why, at most one line per address
per minute plus a count (:class:`~octo_appliance.comms.ratelog.RateLimitedLog`), so a scan
cannot flood the log; they never reach the caller.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from octo_appliance.comms.admission import AdmissionServer, start_tls_server
from octo_appliance.comms.call_types import Handler
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.errors import CommsError
from octo_appliance.comms.handshake import Allowed, LocalHello, allowed_check, establish
from octo_appliance.comms.identity import Identity, thumbprint_of_der
from octo_appliance.comms.pinning import ServerTLS, TrustSource, set_tcp_keepalive
from octo_appliance.comms.ratelog import RateLimitedLog
from octo_appliance.comms.settings import CommsSettings

log = logging.getLogger("octo_appliance.comms")

OnConnection = Callable[[Connection], Awaitable[None] | None]


class CommsServer:
    """A running listener: ``port`` (the bound one), ``connections``, ``close()``."""

    def __init__(
        self,
        tls: ServerTLS,
        *,
        hello: LocalHello,
        allowed: Allowed | None,
        on_connection: OnConnection | None,
        handler: Handler | None,
        settings: CommsSettings,
        name: str = "comms listener",
    ) -> None:
        self.tls = tls
        self.name = name
        self.connections: set[Connection] = set()
        self._hello, self._handler, self._settings = hello, handler, settings
        self._allowed: Allowed = allowed or tls.trusts
        self._on_connection = on_connection
        self._server: AdmissionServer | None = None
        self._accepting: set[asyncio.Task[Any]] = set()
        self.refusals = RateLimitedLog(log, "refused connections")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def admission(self) -> AdmissionServer:
        assert self._server is not None
        return self._server

    async def start(self, host: str, port: int) -> None:
        self._server = await start_tls_server(
            self._accept,
            host,
            port,
            self.tls.base,
            self._settings.handshake_limits,
            name=self.name,
            on_refused=self._tls_refused,
        )

    async def close(self, reason: str = "the listener is shutting down", grace: float = 0) -> None:
        """Stop accepting, say GOAWAY, give calls ``grace`` seconds, then close everything."""
        if self._server is not None:
            self._server.close()
        for task in list(self._accepting):
            task.cancel()
        connections = list(self.connections)
        await asyncio.gather(*(c.shutdown(reason, grace) for c in connections))
        await asyncio.gather(*(c.wait_closed() for c in connections))
        await asyncio.gather(*self._accepting, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.refusals.flush()

    async def __aenter__(self) -> CommsServer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._accepting.add(task)
        try:
            await self._establish(reader, writer)
        finally:
            self._accepting.discard(task)

    async def _establish(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        set_tcp_keepalive(writer.get_extra_info("socket"), *self._settings.tcp_keepalive)
        self.tls.settle(writer.get_extra_info("ssl_object"))
        try:
            async with asyncio.timeout(self._settings.handshake_timeout):
                conn = await establish(
                    reader,
                    writer,
                    initiator=False,
                    hello=self._hello,
                    check_peer=allowed_check(self._allowed, writer, address),
                    handler=self._handler,
                    settings=self._settings,
                    address=address,
                )
        except CommsError as exc:
            self._refused(address, _thumbprint(writer), f"refused a connection: {exc.message}")
            return
        except TimeoutError:
            timeout = self._settings.handshake_timeout
            message = f"{address} did not finish the handshake within {timeout:g} s"
            self._refused(address, _thumbprint(writer), message, logging.INFO)
            return
        except (ConnectionError, OSError) as exc:
            message = f"handshake with {address} failed: {exc}"
            self._refused(address, _thumbprint(writer), message, logging.INFO)
            writer.transport.abort()
            return
        self.connections.add(conn)
        conn.add_close_callback(self.connections.discard)
        log.info("connection from %s", conn.label)
        if self._on_connection is not None:
            try:
                outcome = self._on_connection(conn)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("on_connection failed for %s; closing it", conn.label)
                conn.close("internal error on the listening side")

    def _tls_refused(
        self, address: str, exc: BaseException, ssl_object: ssl.SSLObject | None
    ) -> None:
        thumbprint = self.tls.presented_thumbprint(ssl_object)
        reason, level = tls_failure(exc, self._settings.handshake_timeout)
        presented = f" presenting certificate {thumbprint}" if thumbprint else ""
        message = f"refused a TLS handshake from {address}{presented}: {reason}"
        self._refused(address, thumbprint, message, level)

    def _refused(
        self, address: str, thumbprint: str | None, message: str, level: int = logging.WARNING
    ) -> None:
        """Logged once per peer address and certificate per interval: a burst from one
        source is one line and a count, while another certificate still gets its own line."""
        host = address.rsplit(":", 1)[0].strip("[]")
        key = f"{self.name}: {host}" + (f" (certificate {thumbprint[:16]}…)" if thumbprint else "")
        self.refusals.note(key, f"{self.name}: {message}", level=level)


def _thumbprint(writer: asyncio.StreamWriter) -> str | None:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return thumbprint_of_der(der) if der else None


#: OpenSSL reasons (alerts from the peer) meaning it refused this side's certificate
_DISTRUSTED = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED",
}


def tls_failure(exc: BaseException, timeout: float) -> tuple[str, int]:
    """Why a TLS handshake failed, in words, and how loud to log it (a refusal is a
    warning; a peer that went away or never spoke TLS is routine, e.g. a port scan)."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "it presented no certificate", logging.WARNING
        if reason == "CERTIFICATE_VERIFY_FAILED":
            # every comms certificate is self-signed: only other details say something
            detail = getattr(exc, "verify_message", "") or ""
            extra = f" ({detail})" if detail and "self-signed" not in detail else ""
            return f"its certificate is not trusted here{extra}", logging.WARNING
        if reason in _DISTRUSTED:
            return f"it does not trust this side's certificate ({reason})", logging.WARNING
        return f"the TLS handshake failed ({reason or exc})", logging.INFO
    if isinstance(exc, ConnectionAbortedError | TimeoutError):
        return f"it did not finish the TLS handshake within {timeout:g} s", logging.INFO
    if isinstance(exc, ConnectionError | asyncio.CancelledError):
        return "it closed the connection during the TLS handshake", logging.INFO
    return f"the TLS handshake failed ({exc!r})", logging.INFO


async def serve(
    host: str,
    port: int,
    identity: Identity,
    trust: TrustSource,
    *,
    hello: LocalHello,
    allowed: Allowed | None = None,
    on_connection: OnConnection | None = None,
    handler: Handler | None = None,
    settings: CommsSettings | None = None,
    name: str = "comms listener",
) -> CommsServer:
    """Listen on ``host:port`` (0: ephemeral) for peers whose certificates ``trust`` holds.

    ``allowed(thumbprint)`` is asked after every handshake (default: the thumbprint is in the
    current trust snapshot); it should read memory, not a database, as it runs on the loop.
    It may return a :class:`~octo_appliance.comms.handshake.PeerVerdict` to name the peer or
    say why it is refused. ``name`` is how log lines call this listener.
    """
    server = CommsServer(
        ServerTLS(identity, trust),
        hello=hello,
        allowed=allowed,
        on_connection=on_connection,
        handler=handler,
        settings=settings or CommsSettings(),
        name=name,
    )
    await server.start(host, port)
    return server
