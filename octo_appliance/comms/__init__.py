"""Agent comms: one asyncio protocol, used in both directions (see docs/protocol.md).

Pure transport: mutual TLS pinned by SHA-256 thumbprint, multiplexed JSON requests with
streamed events, verified file streams, keepalives, cancellation, reconnect with jittered
backoff, and the per-agent request queue for polling agents. It knows nothing of deployments,
storage or HTTP and imports none of ``db``, ``engine`` or ``api``.

Listening agent: the agent ``serve()``s, the appliance ``connect()``s and calls.
Polling agent: the appliance ``serve()``s with ``on_connection=hub.attach``, the agent runs a
``ReconnectingClient`` with its handler, and the appliance calls ``hub.call(agent_id, ...)``.
"""

from __future__ import annotations

from octo_appliance.comms.call_types import EventCallback, Handler, IncomingRequest, Response
from octo_appliance.comms.client import Backoff, ReconnectingClient, connect
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.errors import (
    CallFailed,
    CallTimeout,
    CommsError,
    ConnectFailed,
    ConnectionClosed,
    HandshakeError,
    IdentityError,
    MessageTooLarge,
    PeerLost,
    PeerNotTrusted,
    PeerRejected,
    PickupTimeout,
    ProtocolError,
    TransferError,
    VersionMismatch,
)
from octo_appliance.comms.framing import PROTOCOL_VERSION
from octo_appliance.comms.handshake import LocalHello, PeerVerdict
from octo_appliance.comms.identity import (
    Identity,
    generate_identity,
    load_identity,
    normalize_thumbprint,
    thumbprint_of_der,
    thumbprint_of_pem,
)
from octo_appliance.comms.pinning import TrustStore
from octo_appliance.comms.queue import (
    InMemoryRequestQueue,
    PollingHub,
    QueuedRequest,
    RequestQueue,
)
from octo_appliance.comms.server import CommsServer, serve
from octo_appliance.comms.settings import CommsSettings
from octo_appliance.comms.transfer import KnownContent, KnownStream, UploadSource

__all__ = [
    "PROTOCOL_VERSION",
    "Backoff",
    "CallFailed",
    "CallTimeout",
    "CommsError",
    "CommsServer",
    "CommsSettings",
    "ConnectFailed",
    "Connection",
    "ConnectionClosed",
    "EventCallback",
    "Handler",
    "HandshakeError",
    "Identity",
    "IdentityError",
    "InMemoryRequestQueue",
    "IncomingRequest",
    "KnownContent",
    "KnownStream",
    "LocalHello",
    "MessageTooLarge",
    "PeerLost",
    "PeerNotTrusted",
    "PeerRejected",
    "PeerVerdict",
    "PickupTimeout",
    "PollingHub",
    "ProtocolError",
    "QueuedRequest",
    "ReconnectingClient",
    "RequestQueue",
    "Response",
    "TransferError",
    "TrustStore",
    "UploadSource",
    "VersionMismatch",
    "connect",
    "generate_identity",
    "load_identity",
    "normalize_thumbprint",
    "serve",
    "thumbprint_of_der",
    "thumbprint_of_pem",
]
