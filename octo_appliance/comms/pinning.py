"""TLS contexts that pin self-signed certificates, with trust that changes at run time.

Python's :mod:`ssl` has no verify callback, so a listener trusts exactly the certificates in
its context's trust store (a self-signed leaf loaded as a trust anchor is accepted; an unknown
certificate fails the handshake). Targets come and go while the listener runs, so the store is
versioned: every handshake passes through an ``sni_callback`` (OpenSSL calls it for every
ClientHello, with or without SNI) which swaps in the context built for the current version.
After the handshake the caller still compares the thumbprint with the *current* allowed set,
which closes the window between a revocation and the context rebuild.

A refused handshake should name the certificate it refused, but OpenSSL drops a certificate
that fails verification before :mod:`ssl` can show it. The server contexts therefore watch the
handshake messages (``SSLContext._msg_callback``, CPython's hook for debugging, the only way to
see them) and keep the thumbprint of the client's Certificate message per connection
(:meth:`ServerTLS.presented_thumbprint`). Where the hook is missing the thumbprint is unknown.
The hook runs for every TLS record, application data too (~130,000 Python calls per GB a
listener receives or sends; ``bench/receive.py``), so once the handshake is over the listener
moves the connection to a *quiet* context (:meth:`ServerTLS.settle`): the same identity, no
hook, and no trusted certificate, so a renegotiation attempted later fails closed.
"""

from __future__ import annotations

import logging
import socket
import ssl
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from octo_appliance.comms.errors import IdentityError
from octo_appliance.comms.identity import (
    Identity,
    check_usage,
    normalize_thumbprint,
    thumbprint_of_der,
    thumbprint_of_pem,
)

log = logging.getLogger("octo_appliance.comms")

#: TLS content type of handshake records and message type of a Certificate message
_HANDSHAKE, _CERTIFICATE = 22, 11


@dataclass(frozen=True)
class TrustSnapshot:
    version: int
    cert_pems: tuple[bytes, ...]


class TrustStore:
    """The certificates a listener trusts, keyed by thumbprint; every change bumps ``version``.

    Kept in memory so the handshake never waits on a database: the appliance fills it at
    start and updates it when a target is registered or deleted.
    """

    def __init__(self, cert_pems: Iterable[str | bytes] = ()) -> None:
        self._certs: dict[str, bytes] = {}
        self.version = 0
        self.replace(cert_pems)

    def add(self, cert_pem: str | bytes) -> str:
        """Trust a certificate; returns its thumbprint."""
        pem = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        thumbprint = thumbprint_of_pem(pem)
        if thumbprint not in self._certs:
            self._certs[thumbprint] = pem
            self.version += 1
        return thumbprint

    def remove(self, thumbprint: str) -> bool:
        """Stop trusting a thumbprint; True when it was trusted."""
        removed = self._certs.pop(normalize_thumbprint(thumbprint), None) is not None
        if removed:
            self.version += 1
        return removed

    def replace(self, cert_pems: Iterable[str | bytes]) -> None:
        """Trust exactly these. Only certificates not trusted already are parsed: a reload
        after each of 5,000 registrations parsed every certificate again (O(N) each)."""
        known = {pem: thumbprint for thumbprint, pem in self._certs.items()}
        new: dict[str, bytes] = {}
        for cert_pem in cert_pems:
            pem = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
            new[known.get(pem) or thumbprint_of_pem(pem)] = pem
        if new != self._certs:
            self._certs = new
            self.version += 1

    def contains(self, thumbprint: str) -> bool:
        return thumbprint.lower() in self._certs

    def snapshot(self) -> TrustSnapshot:
        return TrustSnapshot(self.version, tuple(self._certs.values()))


#: What a listener trusts: a TrustStore, or a callable returning ``(version, [cert PEMs])``.
TrustSource: TypeAlias = TrustStore | Callable[[], tuple[int, Sequence[str | bytes]]]


class ServerTLS:
    """The server side: a base context whose sni_callback installs the current trust."""

    def __init__(
        self,
        identity: Identity,
        trust: TrustSource,
    ) -> None:
        check_usage(identity, "server")
        self._identity = identity
        self._trust = trust
        self._version: int | None = None
        self._current: ssl.SSLContext | None = None
        #: the certificates in the current context's verify store
        self._loaded: frozenset[bytes] = frozenset()
        self._thumbprints: frozenset[str] = frozenset()
        self._presented: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()
        self.base = self._new_context(())
        self.base.sni_callback = self._on_client_hello
        self._quiet = self._new_context((), watch=False)
        self.current_context()  # fail at start, not in the first handshake, on a bad trust list

    def snapshot(self) -> TrustSnapshot:
        if isinstance(self._trust, TrustStore):
            return self._trust.snapshot()
        version, pems = self._trust()
        return TrustSnapshot(version, tuple(p.encode() if isinstance(p, str) else p for p in pems))

    def current_context(self) -> ssl.SSLContext:
        snap = self.snapshot()
        if self._current is None or snap.version != self._version:
            wanted = frozenset(snap.cert_pems)
            added = wanted - self._loaded
            if self._current is None or self._loaded - wanted:
                self._current = self._new_context(snap.cert_pems)
            elif added:
                # OpenSSL sorts its whole verify store again for every certificate added
                # (5,000: 2.4 s on the event loop, in a handshake): only the new ones are
                # added to the context in use; a removal builds a new one
                self._load_trusted(self._current, sorted(added))
            self._loaded = wanted
            self._thumbprints = frozenset(thumbprint_of_pem(pem) for pem in snap.cert_pems)
            self._version = snap.version
        return self._current

    def trusts(self, thumbprint: str) -> bool:
        """The default post-handshake check: is the thumbprint in the current trust set."""
        self.current_context()
        return thumbprint in self._thumbprints

    def presented_thumbprint(self, ssl_object: ssl.SSLObject | None) -> str | None:
        """The thumbprint of the certificate the client sent on this connection, if any,
        whether or not it was trusted."""
        return None if ssl_object is None else self._presented.get(ssl_object)

    def settle(self, ssl_object: ssl.SSLObject | None) -> None:
        """The handshake is over: stop watching this connection's TLS messages."""
        if ssl_object is not None:
            ssl_object.context = self._quiet

    def _on_tls_message(
        self,
        conn: object,
        direction: str,
        version: object,
        content_type: object,
        msg_type: object,
        data: bytes,
    ) -> None:
        # an exception here would fail the handshake: never raise
        try:
            if direction != "read" or content_type != _HANDSHAKE or msg_type != _CERTIFICATE:
                return
            der = leaf_certificate(data, tls13=version == ssl.TLSVersion.TLSv1_3)
            if der is not None and isinstance(conn, ssl.SSLObject):
                self._presented[conn] = thumbprint_of_der(der)
        except Exception:  # pragma: no cover - a malformed message: nothing to remember
            return

    def _on_client_hello(
        self, ssl_object: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext
    ) -> int | None:
        try:
            ssl_object.context = self.current_context()
        except Exception:  # an exception here would only show as a vague handshake failure
            log.exception("cannot build the TLS context for the current trust list")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    def _new_context(self, cert_pems: Sequence[bytes], *, watch: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        if watch and hasattr(context, "_msg_callback"):
            context._msg_callback = self._on_tls_message  # type: ignore[attr-defined]
        self._identity.load_into(context)
        self._load_trusted(context, cert_pems)
        return context

    @staticmethod
    def _load_trusted(context: ssl.SSLContext, cert_pems: Sequence[bytes]) -> None:
        if not cert_pems:
            return
        try:
            context.load_verify_locations(cadata=b"\n".join(cert_pems).decode())
        except ssl.SSLError as exc:
            raise IdentityError(
                f"a trusted certificate cannot be loaded: {exc.reason or exc}",
                hint="check the certificates registered for agents",
            ) from None


def leaf_certificate(message: bytes, *, tls13: bool) -> bytes | None:
    """The first certificate's DER in a Certificate handshake message (4-byte header, then
    in TLS 1.3 a request context, then the 3-byte-length list of 3-byte-length entries)."""
    body = message[4:]
    if tls13:
        if not body:
            return None
        body = body[1 + body[0] :]
    if len(body) < 6:
        return None  # an empty list: no certificate presented
    size = int.from_bytes(body[3:6], "big")
    der = body[6 : 6 + size]
    return der if size and len(der) == size else None


def client_context(identity: Identity, pinned_cert_pem: str | bytes | None) -> ssl.SSLContext:
    """A client context presenting ``identity``.

    With the peer's certificate, OpenSSL verifies against it alone (CERT_REQUIRED); with only
    the thumbprint, verification is off and the caller compares the thumbprint before it
    sends or reads anything. Host names are never checked: the pin is the identity.
    """
    check_usage(identity, "client")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if pinned_cert_pem is not None:
        pem = pinned_cert_pem if isinstance(pinned_cert_pem, str) else pinned_cert_pem.decode()
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pem)
    else:
        context.verify_mode = ssl.CERT_NONE
    identity.load_into(context)
    return context


def set_tcp_keepalive(sock: socket.socket | None, idle: int, interval: int, count: int) -> None:
    """Kernel keepalive as a second line behind PING/PONG (where the platform has the knobs)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", idle),
            ("TCP_KEEPINTVL", interval),
            ("TCP_KEEPCNT", count),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError as exc:  # not fatal: PING/PONG still detects a dead peer
        log.debug("cannot set TCP keepalive: %s", exc)
