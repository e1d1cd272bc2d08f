"""Dialling the appliance's or an agent's comms port as an intruder would (the trust and
security tests): a stranger's identity, the appliance certificate an agent pinned, and one
connection opened and closed again."""

from __future__ import annotations

import asyncio
from typing import Any

from octo_appliance.comms import CommsSettings, Identity, LocalHello, connect, generate_identity
from tests.fleet import FleetAgent

SETTINGS = CommsSettings(handshake_timeout=10.0)


def stranger_identity() -> Identity:
    """An identity nobody registered or trusts."""
    return generate_identity("stranger", ["127.0.0.1"])


def pinned_thumbprint(agent: FleetAgent) -> str:
    """The appliance certificate the agent pinned at registration."""
    return agent.home.require_registered().comms_thumbprint


def dial(port: int, identity: Identity, pinned: str, hello: LocalHello) -> dict[str, Any]:
    """Connect and close again: what the peer was (``{"peer": thumbprint}``); raises
    CommsError when the peer drops us."""

    async def go() -> dict[str, Any]:
        conn = await connect("127.0.0.1", port, identity, pinned, hello=hello, settings=SETTINGS)
        try:
            return {"peer": conn.peer_thumbprint}
        finally:
            conn.close("done")
            await conn.wait_closed()

    return asyncio.run(go())
