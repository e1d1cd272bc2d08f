"""The comms exception subtree, rooted at :class:`OctoError` like everything else.

::

    OctoError
    └── CommsError                  anything the agent/appliance wire raises on purpose
        ├── IdentityError           a certificate or key is unreadable, mismatched or unfit
        ├── ConnectFailed           the TCP connection could not be opened (refused, no route)
        ├── HandshakeError          TLS or HELLO did not complete
        │   ├── PeerNotTrusted      the peer's certificate is not the pinned / an allowed one
        │   ├── PeerRejected        the peer refused this side (its certificate is not trusted)
        │   └── VersionMismatch     no protocol version both sides speak
        ├── ProtocolError           a malformed or unexpected frame: the connection is closed
        │   └── MessageTooLarge     a JSON message over the frame limit (nothing was sent)
        ├── PeerLost                the connection died while a call was in flight
        │   └── ConnectionClosed    the connection was already closed: the request was NOT sent
        ├── CallFailed              the handler failed the call: ``code``, ``message``, ``hint``
        ├── CallTimeout             the call did not finish in time (CANCEL was sent)
        ├── TransferError           a file did not arrive whole (cut off, wrong length or hash)
        └── PickupTimeout           a queued request for a polling agent was not picked up

Messages name the peer and say what happened; hints say what to do next. None of them carries
request parameters, results or file content, so a secret never leaks through an error.
"""

from __future__ import annotations

from octo_appliance.exceptions import OctoError


class CommsError(OctoError):
    """Root of the comms subtree."""


class IdentityError(CommsError):
    """A certificate or private key cannot be used (unreadable, mismatched, wrong usage)."""


class ConnectFailed(CommsError):
    """The TCP connection could not be opened."""


class HandshakeError(CommsError):
    """TLS or the HELLO exchange did not complete."""


class PeerNotTrusted(HandshakeError):
    """The peer presented a certificate this side does not trust; nothing was exchanged."""


class PeerRejected(HandshakeError):
    """The peer closed the connection during the handshake: it does not trust this side."""


class VersionMismatch(HandshakeError):
    """The two sides share no protocol version."""

    def __init__(
        self, message: str, *, local_version: int, peer_version: int, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.local_version = local_version
        self.peer_version = peer_version


class ProtocolError(CommsError):
    """The peer broke the wire format; the connection is closed."""


class MessageTooLarge(ProtocolError):
    """A JSON message does not fit in one frame; it was not sent."""


class PeerLost(CommsError):
    """The connection died (closed, reset, keepalive timeout) with the call in flight.

    Whether the handler ran is unknown: retry only operations that are safe to repeat.
    """


class ConnectionClosed(PeerLost):
    """The connection was closed before the request was written: it is safe to retry."""


class CallFailed(CommsError):
    """The handler failed the call; raise it in a handler to fail with a code of your own."""

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class CallTimeout(CommsError):
    """The call did not finish within its timeout; the handler was asked to cancel."""


class TransferError(CommsError):
    """A file transfer was cut off or did not verify; the partial file was deleted."""


class PickupTimeout(CommsError):
    """A request for a polling agent waited in its queue longer than the pickup timeout."""
