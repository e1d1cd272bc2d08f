"""From a TLS stream to a :class:`Connection`: pin check first, then the HELLO exchange.

Order matters: the peer's certificate thumbprint is compared (with the pin on a client, with
the current allowed set on a server) before a single frame is written or read, so an untrusted
peer never sees a HELLO and never gets a byte parsed. Both sides then send HELLO at once and
read the other's; the connection speaks the highest version both accept.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from octo_appliance.comms.call_types import Handler
from octo_appliance.comms.connection import Connection
from octo_appliance.comms.errors import (
    HandshakeError,
    PeerNotTrusted,
    PeerRejected,
    ProtocolError,
    VersionMismatch,
)
from octo_appliance.comms.framing import (
    CONTROL_STREAM,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    Frame,
    FrameType,
    encode_frame,
    json_frame,
    read_frame,
)
from octo_appliance.comms.identity import thumbprint_of_der
from octo_appliance.comms.settings import CommsSettings

#: Post-handshake check of the peer's thumbprint: raise PeerNotTrusted to refuse; returns the
#: name this side knows the peer by ("" for none).
PeerCheck = Callable[[str], Awaitable[str]]


@dataclass(frozen=True)
class PeerVerdict:
    """A listener's decision on a certificate (``allowed`` may return this or a bool).

    ``name`` is what this side calls the peer, e.g. the target its certificate is registered
    to: logs and the connection's label use it, never the name the peer gives in HELLO.
    ``reason`` says why a refused peer is refused.
    """

    allowed: bool
    name: str = ""
    reason: str = ""


#: a listener's post-handshake decision on a thumbprint
Allowed = Callable[[str], bool | PeerVerdict | Awaitable[bool | PeerVerdict]]
_CORE_KEYS = frozenset({"protocol", "version", "min_version", "role", "id"})


@dataclass(frozen=True)
class LocalHello:
    """What this side says about itself in HELLO (``extra``: e.g. software version, OS)."""

    role: str
    id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    version: int = PROTOCOL_VERSION
    min_version: int = MIN_PROTOCOL_VERSION

    def body(self) -> dict[str, Any]:
        core = {
            "protocol": PROTOCOL_NAME,
            "version": self.version,
            "min_version": self.min_version,
            "role": self.role,
            "id": self.id,
        }
        return {**{k: v for k, v in self.extra.items() if k not in _CORE_KEYS}, **core}


async def establish(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    initiator: bool,
    hello: LocalHello,
    check_peer: PeerCheck,
    handler: Handler | None,
    settings: CommsSettings,
    address: str,
) -> Connection:
    """Verify the peer, exchange HELLO; on any failure the transport is closed."""
    try:
        thumbprint = _peer_thumbprint(writer, address)
        peer_name = await check_peer(thumbprint)
        writer.write(encode_frame(json_frame(FrameType.HELLO, CONTROL_STREAM, hello.body())))
        peer_hello = await _read_hello(reader, address, thumbprint, hello.version)
        version = _negotiate(writer, hello, peer_hello, address)
    except BaseException as exc:
        # A refusal this side explained (ERROR frame) closes gracefully so the frame gets out;
        # anything else (pin mismatch, timeout, broken peer) drops the connection at once.
        explained = isinstance(exc, VersionMismatch) or (
            not initiator and isinstance(exc, PeerNotTrusted)
        )
        if explained:
            writer.close()
        else:
            writer.transport.abort()
        raise
    return Connection(
        reader,
        writer,
        initiator=initiator,
        peer_thumbprint=thumbprint,
        peer_hello=peer_hello,
        protocol_version=version,
        handler=handler,
        settings=settings,
        peer_address=address,
        peer_name=peer_name,
    )


def pinned_check(expected: str, address: str) -> PeerCheck:
    """The client's check: the server must present exactly the pinned certificate."""

    async def check(thumbprint: str) -> str:
        if thumbprint != expected:
            raise PeerNotTrusted(
                f"{address} presented certificate {thumbprint}, but {expected} is pinned; "
                "nothing was sent",
                hint="if the peer's certificate was replaced on purpose, update the pinned "
                "thumbprint; otherwise something else answers at that address",
            )
        return ""

    return check


def allowed_check(allowed: Allowed, writer: asyncio.StreamWriter, address: str) -> PeerCheck:
    """The server's check: the thumbprint must be allowed *now* (a revocation may be newer
    than the TLS context that accepted the certificate)."""

    async def check(thumbprint: str) -> str:
        verdict = allowed(thumbprint)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not isinstance(verdict, PeerVerdict):
            verdict = PeerVerdict(bool(verdict))
        if not verdict.allowed:
            reason = verdict.reason or "it is not trusted here"
            message = f"certificate {thumbprint} is refused: {reason}"
            body = {"code": "untrusted", "message": message}
            writer.write(encode_frame(json_frame(FrameType.ERROR, CONTROL_STREAM, body)))
            raise PeerNotTrusted(
                f"{address} presented certificate {thumbprint}, refused: {reason}",
                hint="register the peer's thumbprint if it should be allowed",
            )
        return verdict.name

    return check


def _peer_thumbprint(writer: asyncio.StreamWriter, address: str) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise PeerNotTrusted(
            f"{address} presented no certificate",
            hint="the peer must present its comms certificate",
        )
    return thumbprint_of_der(der)


async def _read_hello(
    reader: asyncio.StreamReader, address: str, thumbprint: str, local_version: int
) -> dict[str, Any]:
    try:
        frame = await read_frame(reader)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
        detail = f" ({exc.reason})" if isinstance(exc, ssl.SSLError) and exc.reason else ""
        raise PeerRejected(
            f"{address} closed the connection during the handshake{detail}: it most likely "
            f"does not trust this side's certificate (the peer's own is {thumbprint[:16]}…)",
            hint="make the peer trust this side's thumbprint (register it), or see its log",
        ) from None
    except ProtocolError as exc:
        raise HandshakeError(
            f"{address} does not speak {PROTOCOL_NAME}: {exc.message}",
            hint="check the host and port: is an Octo agent or appliance listening there?",
        ) from None
    if frame.type is FrameType.ERROR:
        raise _error_from_peer(frame, address, local_version)
    if frame.type is not FrameType.HELLO:
        raise HandshakeError(
            f"{address} sent {frame.type.name} before HELLO",
            hint="the peer runs an incompatible version; upgrade it",
        )
    body = frame.json()
    if body.get("protocol") != PROTOCOL_NAME:
        raise HandshakeError(
            f"{address} does not speak {PROTOCOL_NAME}",
            hint="check the host and port: is an Octo agent or appliance listening there?",
        )
    for key in ("version", "min_version"):
        if not isinstance(body.get(key, 1), int):
            raise HandshakeError(f"{address} sent a HELLO with a malformed {key}")
    return body


def _negotiate(
    writer: asyncio.StreamWriter, hello: LocalHello, peer: dict[str, Any], address: str
) -> int:
    peer_version = int(peer.get("version", 1))
    peer_min = int(peer.get("min_version", peer_version))
    version = min(hello.version, peer_version)
    if version >= max(hello.min_version, peer_min):
        return version
    message = (
        f"{address} speaks {PROTOCOL_NAME} version {_span(peer_min, peer_version)}, this side "
        f"speaks version {_span(hello.min_version, hello.version)}: no version in common"
    )
    body = {
        "code": "version_mismatch",
        "message": message,
        "version": hello.version,
        "min_version": hello.min_version,
    }
    writer.write(encode_frame(json_frame(FrameType.ERROR, CONTROL_STREAM, body)))
    raise VersionMismatch(
        message,
        local_version=hello.version,
        peer_version=peer_version,
        hint="upgrade the older side (agents update from the appliance)",
    )


def _error_from_peer(frame: Frame, address: str, local_version: int) -> HandshakeError:
    body = frame.json()
    message = str(body.get("message", "no message"))
    code = body.get("code")
    if code == "untrusted":
        return PeerRejected(
            f"{address} refused this side: {message}",
            hint="register this side's thumbprint on the peer",
        )
    if code == "version_mismatch":
        return VersionMismatch(
            f"{address} refused the connection: {message}",
            local_version=local_version,
            peer_version=int(body.get("version", 0)),
            hint="upgrade the older side (agents update from the appliance)",
        )
    return HandshakeError(f"{address} refused the connection: {message}")


def _span(low: int, high: int) -> str:
    return str(high) if low == high else f"{low}-{high}"
