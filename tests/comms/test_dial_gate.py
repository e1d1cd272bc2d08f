"""An agent process dials a few appliance connections at a time, whatever the number of
identities it serves: after an appliance restart 250 identities of one process dialled
together, and on a busy machine every one of their handshakes outlasted the timeout."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from octo_appliance.comms import Backoff, CommsSettings, ReconnectingClient
from octo_appliance.comms.client import DIALS_AT_ONCE

from .conftest import AGENT_HELLO, Identities


async def test_a_process_has_at_most_a_few_dials_in_flight(
    ids: Identities, settings: CommsSettings
) -> None:
    open_now, most, accepted = 0, 0, 0

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accepts TCP and never answers the TLS handshake, until the client gives up."""
        nonlocal open_now, most, accepted
        open_now, accepted = open_now + 1, accepted + 1
        most = max(most, open_now)
        try:
            await reader.read()
        finally:
            open_now -= 1
            writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    quick = replace(settings, handshake_timeout=0.3)
    clients = [
        ReconnectingClient(
            "127.0.0.1",
            port,
            ids.agent,
            ids.appliance.thumbprint,
            hello=AGENT_HELLO,
            settings=quick,
            backoff=Backoff(base=0.01, cap=0.02),
        )
        for _ in range(3 * DIALS_AT_ONCE)
    ]
    try:
        for client in clients:
            client.start()
        async with asyncio.timeout(20):
            while accepted < 3 * DIALS_AT_ONCE:  # every client had its turn
                await asyncio.sleep(0.02)
    finally:
        for client in clients:
            await client.stop()
        server.close()
        await server.wait_closed()
    assert most <= DIALS_AT_ONCE
