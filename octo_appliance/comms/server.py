"""The TLS listener: the agent's in listening mode, the appliance's polling listener.

Mutual TLS with a run-time trust list (:class:`~octo_appliance.comms.tls.ServerTLS`), then the
post-handshake allowed check, then HELLO; only a connection that passed all three reaches
``on_connection``. Failed handshakes are logged and dropped; they never reach the caller.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from octo_appliance.comms.calls import Handler
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.errors import CommsError
from octo_appliance.comms.handshake import LocalHello, allowed_check, establish
from octo_appliance.comms.identity import Identity
from octo_appliance.comms.settings import CommsSettings
from octo_appliance.comms.tls import ServerTLS, TrustSource, set_tcp_keepalive

log = logging.getLogger("octo_appliance.comms")

OnConnection = Callable[[Connection], Awaitable[None] | None]


class CommsServer:
    """A running listener: ``port`` (the bound one), ``connections``, ``close()``."""

    def __init__(
        self,
        tls: ServerTLS,
        *,
        hello: LocalHello,
        allowed: Callable[[str], bool | Awaitable[bool]] | None,
        on_connection: OnConnection | None,
        handler: Handler | None,
        settings: CommsSettings,
    ) -> None:
        self.tls = tls
        self.connections: set[Connection] = set()
        self._hello, self._handler, self._settings = hello, handler, settings
        self._allowed = allowed or tls.trusts
        self._on_connection = on_connection
        self._server: asyncio.Server | None = None
        self._accepting: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            host,
            port,
            ssl=self.tls.base,
            ssl_handshake_timeout=self._settings.handshake_timeout,
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
            log.warning("refused a connection: %s", exc.message)
            return
        except TimeoutError:
            log.warning(
                "%s did not finish the handshake within %g s",
                address,
                self._settings.handshake_timeout,
            )
            return
        except (ConnectionError, OSError) as exc:
            log.info("handshake with %s failed: %s", address, exc)
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


async def serve(
    host: str,
    port: int,
    identity: Identity,
    trust: TrustSource,
    *,
    hello: LocalHello,
    allowed: Callable[[str], bool | Awaitable[bool]] | None = None,
    on_connection: OnConnection | None = None,
    handler: Handler | None = None,
    settings: CommsSettings | None = None,
) -> CommsServer:
    """Listen on ``host:port`` (0: ephemeral) for peers whose certificates ``trust`` holds.

    ``allowed(thumbprint)`` is asked after every handshake (default: the thumbprint is in the
    current trust snapshot); it should read memory, not a database, as it runs on the loop.
    """
    server = CommsServer(
        ServerTLS(identity, trust),
        hello=hello,
        allowed=allowed,
        on_connection=on_connection,
        handler=handler,
        settings=settings or CommsSettings(),
    )
    await server.start(host, port)
    return server
