"""Pinning and trust: who may connect, what an untrusted peer gets to see, and versions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from octo_appliance.comms import (
    CommsSettings,
    Connection,
    HandshakeError,
    IncomingRequest,
    LocalHello,
    PeerNotTrusted,
    PeerRejected,
    TrustStore,
    VersionMismatch,
    serve,
)
from octo_appliance.comms.framing import PROTOCOL_VERSION, FrameType
from octo_appliance.comms.pinning import ServerTLS

from .conftest import (
    AGENT_HELLO,
    APPLIANCE_HELLO,
    Identities,
    StartAgent,
    dial_agent,
    dial_pinned,
)
from .rawpeer import RawPeer, raw_connect, raw_server


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, request: IncomingRequest) -> Any:
        self.calls.append(request.method)
        return "ok"


async def _wait_for_no_connections(listening: Any) -> None:
    async with asyncio.timeout(5):
        while listening.server.connections:
            await asyncio.sleep(0.01)


async def test_untrusted_client_is_dropped_before_any_request(
    start_agent: StartAgent, ids: Identities
) -> None:
    handler = Recorder()
    agent = await start_agent(handler)

    with pytest.raises(PeerRejected, match="does not trust this side"):
        await agent.dial(ids.stranger)

    assert handler.calls == []
    assert agent.server.connections == set()


async def test_untrusted_raw_client_cannot_get_a_frame_read(
    start_agent: StartAgent, ids: Identities
) -> None:
    """A stranger that ignores the handshake and fires a REQUEST at once is never heard."""
    handler = Recorder()
    agent = await start_agent(handler)
    try:
        peer = await raw_connect(agent.server.port, ids.stranger)
        peer.send_hello(role="appliance")
        peer.send(FrameType.REQUEST, 1, {"method": "steal", "params": {}})
        await asyncio.wait_for(peer.read_until_eof(), 5)
    except (ConnectionError, OSError):
        pass  # the TLS layer may report the refusal as an error instead of EOF

    assert handler.calls == []


async def test_client_refuses_a_server_with_another_certificate(
    ids: Identities, settings: CommsSettings
) -> None:
    """Pinned by thumbprint only: the handshake completes, then the client sends nothing."""
    received: list[bytes] = []

    async def impostor(peer: RawPeer) -> None:
        received.append(await peer.read_until_eof())

    server = await raw_server(ids.stranger, impostor)
    try:
        with pytest.raises(PeerNotTrusted, match="is pinned; nothing was sent") as refused:
            await dial_agent(server.port, ids, settings)
        async with asyncio.timeout(5):
            while not received:
                await asyncio.sleep(0.01)
    finally:
        await server.close()

    assert ids.stranger.thumbprint in refused.value.message
    assert received == [b""]


async def test_client_with_pinned_certificate_refuses_in_the_tls_handshake(
    ids: Identities, settings: CommsSettings
) -> None:
    async def impostor(peer: RawPeer) -> None:
        await peer.read_until_eof()

    server = await raw_server(ids.stranger, impostor)
    try:
        with pytest.raises(PeerNotTrusted, match="other than the pinned one"):
            await dial_pinned(
                server.port, ids.appliance, ids.agent, APPLIANCE_HELLO, settings=settings
            )
    finally:
        await server.close()


async def test_revoked_thumbprint_cannot_connect_again(
    start_agent: StartAgent, ids: Identities
) -> None:
    handler = Recorder()
    agent = await start_agent(handler)
    conn = await agent.dial()
    assert (await conn.call("before")).result == "ok"

    assert agent.trust.remove(ids.appliance.thumbprint)

    with pytest.raises(PeerRejected):
        await agent.dial()
    assert handler.calls == ["before"]

    agent.trust.add(ids.appliance.cert_pem)  # trust restored at run time, no restart
    assert (await (await agent.dial()).call("after")).result == "ok"


async def test_an_established_connection_no_longer_runs_the_handshake_watcher(
    start_agent: StartAgent, ids: Identities
) -> None:
    """The listener watches TLS messages only to name a refused certificate; once the
    handshake is over the connection moves to the quiet context (the hook would otherwise run
    for every record of every package), and a revoked peer is still refused afterwards."""
    agent = await start_agent(Recorder())
    conn = await agent.dial()
    assert (await conn.call("hello")).result == "ok"
    (server_side,) = agent.server.connections
    context = server_side._writer.get_extra_info("ssl_object").context
    assert getattr(context, "_msg_callback", None) is None
    assert agent.server.tls.base._msg_callback is not None  # new handshakes are still watched

    agent.trust.remove(ids.appliance.thumbprint)
    with pytest.raises(PeerRejected):
        await agent.dial()


async def test_allowed_check_covers_a_revocation_the_tls_context_has_not_seen(
    start_agent: StartAgent, ids: Identities
) -> None:
    """The certificate is still in the TLS trust store, but no longer allowed: refused after
    the handshake, with a clear ERROR, before any frame is read."""
    handler = Recorder()
    revoked: set[str] = set()
    agent = await start_agent(handler, allowed=lambda thumbprint: thumbprint not in revoked)
    revoked.add(ids.appliance.thumbprint)

    with pytest.raises(PeerRejected, match="is not trusted here"):
        await agent.dial()

    assert handler.calls == []
    await _wait_for_no_connections(agent)


async def test_trust_from_a_callable_is_rebuilt_when_its_version_changes(
    ids: Identities, settings: CommsSettings
) -> None:
    trusted: list[bytes] = [ids.stranger.cert_pem]
    version = [1]
    server = await serve(
        "127.0.0.1",
        0,
        ids.agent,
        lambda: (version[0], trusted),
        hello=AGENT_HELLO,
        handler=Recorder(),
        settings=settings,
    )

    async def dial() -> Connection:
        return await dial_agent(server.port, ids, settings)

    try:
        with pytest.raises(PeerRejected):
            await dial()
        trusted.append(ids.appliance.cert_pem)
        version[0] = 2
        conn = await dial()
        assert (await conn.call("x")).result == "ok"
        conn.close()
        await conn.wait_closed()
    finally:
        await server.close()


async def test_version_mismatch_is_refused_with_both_versions_named(
    start_agent: StartAgent,
) -> None:
    agent = await start_agent(Recorder())
    newest = PROTOCOL_VERSION
    future = LocalHello(role="appliance", version=newest + 2, min_version=newest + 1)

    with pytest.raises(VersionMismatch) as refused:
        await agent.dial(hello=future)

    assert f"version {newest + 1}-{newest + 2}" in refused.value.message
    assert f"version 1-{newest}" in refused.value.message
    assert (refused.value.local_version, refused.value.peer_version) == (newest + 2, newest)


async def test_the_older_side_reports_the_mismatch_too(
    start_agent: StartAgent, ids: Identities
) -> None:
    agent = await start_agent(Recorder())
    peer = await raw_connect(agent.server.port, ids.appliance)
    newer = PROTOCOL_VERSION + 1
    peer.send_hello(role="appliance", version=newer, min_version=newer)

    hello = await peer.read()
    error = await peer.read()

    assert hello.type is FrameType.HELLO
    assert error.type is FrameType.ERROR
    assert error.json()["code"] == "version_mismatch"
    assert f"version {PROTOCOL_VERSION + 1}" in error.json()["message"]
    assert f"version 1-{PROTOCOL_VERSION}" in error.json()["message"]
    assert await asyncio.wait_for(peer.read_until_eof(), 5) == b""


async def test_a_newer_peer_gets_the_highest_version_both_speak(
    start_agent: StartAgent,
) -> None:
    agent = await start_agent(Recorder())

    newer = LocalHello(role="appliance", version=PROTOCOL_VERSION + 1, min_version=1)
    conn = await agent.dial(hello=newer)

    assert conn.protocol_version == PROTOCOL_VERSION
    assert (await conn.call("x")).result == "ok"


async def test_something_else_on_the_port_is_a_clear_handshake_error(
    ids: Identities, settings: CommsSettings
) -> None:
    async def not_octo(peer: RawPeer) -> None:
        peer.writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await peer.read_until_eof()

    server = await raw_server(ids.agent, not_octo)
    try:
        with pytest.raises(HandshakeError, match="does not speak octo-comms"):
            await dial_agent(server.port, ids, settings)
    finally:
        await server.close()


def test_a_newly_trusted_certificate_joins_the_context_in_use(ids: Identities) -> None:
    """Adding certificates to OpenSSL's verify store costs a sort of the whole store each, so a
    new registration adds its certificate to the context in use instead of building a context
    of every certificate again on the event loop; a removal builds one without it."""
    trust = TrustStore([ids.stranger.cert_pem])
    tls = ServerTLS(ids.agent, trust)
    first = tls.current_context()
    trust.add(ids.appliance.cert_pem)
    assert tls.current_context() is first
    assert first.cert_store_stats()["x509"] == 2
    assert tls.trusts(ids.appliance.thumbprint)

    trust.remove(ids.stranger.thumbprint)
    rebuilt = tls.current_context()
    assert rebuilt is not first
    assert rebuilt.cert_store_stats()["x509"] == 1
    assert not tls.trusts(ids.stranger.thumbprint)


def test_a_reload_parses_only_the_certificates_it_did_not_trust_yet(
    ids: Identities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appliance reloads the whole trust list after registrations: parsing every
    certificate again each time made 5,000 registrations O(N²)."""
    from octo_appliance.comms import pinning

    trust = TrustStore([ids.stranger.cert_pem, ids.agent.cert_pem])
    parsed: list[bytes] = []
    real = pinning.thumbprint_of_pem

    def counting(pem: str | bytes) -> str:
        parsed.append(pem if isinstance(pem, bytes) else pem.encode())
        return real(pem)

    monkeypatch.setattr(pinning, "thumbprint_of_pem", counting)
    version = trust.version
    trust.replace([ids.stranger.cert_pem, ids.agent.cert_pem, ids.appliance.cert_pem])
    assert parsed == [ids.appliance.cert_pem]
    assert trust.version == version + 1
    assert trust.contains(ids.appliance.thumbprint) and trust.contains(ids.agent.thumbprint)

    trust.replace([ids.appliance.cert_pem])  # a removal: nothing new to parse
    assert len(parsed) == 1
    assert not trust.contains(ids.stranger.thumbprint)
