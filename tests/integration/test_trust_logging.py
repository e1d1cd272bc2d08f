"""Trust-boundary logging with real processes (docs/security.md, "Trust-boundary logging").

A refused handshake on the polling listener or on a listening agent is logged with the peer's
address, the certificate it presented and why, once per peer in a burst; a polling session is
named by the target its certificate is registered to, whatever HELLO says; a listening
target's certificate cannot open a polling session.

Each test dials from its own loopback source address (127.0.0.0/8 all reaches this host), so
one test's refusals are not folded into another's line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from octo_appliance.comms import (
    Identity,
    LocalHello,
    PeerRejected,
)
from tests.comms.rawpeer import refused_burst
from tests.dialing import dial, pinned_thumbprint, stranger_identity
from tests.fleet import Fleet, running_fleet, wait_until


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("trustlog")) as fleet:
        fleet.register_many(
            [("listen-a", "listening"), ("poll-a", "polling"), ("poll-b", "polling")]
        )
        fleet.start_agents([fleet.agents["listen-a"]])
        yield fleet


@pytest.fixture(scope="module")
def stranger() -> Identity:
    return stranger_identity()


def lines_with(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def test_refused_handshakes_are_logged_once_per_peer_in_a_burst(
    fleet: Fleet, stranger: Identity
) -> None:
    server, agent = fleet.server, fleet.agents["listen-a"]
    assert agent.listen_port is not None
    asyncio.run(refused_burst(server.banner.polling_port, "127.0.0.21", stranger, 20))
    asyncio.run(refused_burst(agent.listen_port, "127.0.0.22", stranger, 20))

    needle = "refused a TLS handshake from 127.0.0.21"
    wait_until(lambda: lines_with(server.output(), needle), 10, "the appliance's line")
    (line,) = lines_with(server.output(), needle)
    assert "polling listener" in line and "WARNING" in line
    assert f"presenting certificate {stranger.thumbprint}" in line
    assert "its certificate is not trusted here" in line

    needle = "refused a TLS handshake from 127.0.0.22"
    wait_until(lambda: lines_with(agent.log_file.read_text(), needle), 10, "the agent's line")
    (line,) = lines_with(agent.log_file.read_text(), needle)
    assert "agent listener" in line and f"presenting certificate {stranger.thumbprint}" in line


def test_a_listening_targets_certificate_cannot_open_a_polling_session(fleet: Fleet) -> None:
    listening = fleet.agents["listen-a"]
    hello = LocalHello(role="agent", id=listening.target_id)

    with pytest.raises(PeerRejected, match="a listening target cannot open a polling session"):
        dial(
            fleet.server.banner.polling_port,
            listening.home.load_identity(),
            pinned_thumbprint(listening),
            hello,
        )

    needle = "registered to listening target 'listen-a'"
    wait_until(lambda: lines_with(fleet.server.output(), needle), 10, "the refusal's line")
    (line,) = lines_with(fleet.server.output(), needle)
    assert listening.home.load_identity().thumbprint in line
    assert not lines_with(fleet.server.output(), "connection from", listening.target_id)


def test_a_polling_session_is_named_by_its_certificates_target(fleet: Fleet) -> None:
    """poll-a's certificate, saying in HELLO that it is poll-b: it is poll-a."""
    poll_a, poll_b = fleet.agents["poll-a"], fleet.agents["poll-b"]
    hello = LocalHello(role="agent", id=poll_b.target_id, extra={"name": "poll-b"})
    before = len(fleet.server.output())

    dial(
        fleet.server.banner.polling_port,
        poll_a.home.load_identity(),
        pinned_thumbprint(poll_a),
        hello,
    )

    def since() -> str:
        return fleet.server.output()[before:]

    wait_until(lambda: lines_with(since(), "connection from target 'poll-a'"), 10, "the session")
    (warning,) = lines_with(since(), "says in HELLO that it is", poll_b.target_id)
    assert warning.split("says in HELLO")[0].rstrip().endswith(")")
    assert "target 'poll-a'" in warning and poll_a.target_id in warning
    assert not lines_with(since(), "poll-b'")
    assert not lines_with(since(), "connection from agent")
