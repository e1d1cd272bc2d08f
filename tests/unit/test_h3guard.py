"""The HTTP/3 guards hook into Hypercorn and aioquic internals: these checks fail loudly when a
new version moves them (the pins in pyproject.toml say to run this before moving), instead of
a guard silently not running. The guards' behaviour is shown over real QUIC in
tests/integration/test_h3_hostile.py.
"""

from __future__ import annotations

import hypercorn.protocol.h3 as hypercorn_h3
import hypercorn.protocol.quic as hypercorn_quic
import pytest
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from octo_appliance.web import h3guard


@pytest.mark.parametrize(
    "owner, name",
    [
        (H3Connection, "_init_connection"),
        (H3Connection, "_get_local_settings"),
        (H3Connection, "_check_request_or_push_frame_type"),
        (H3Connection, "_receive_request_or_push_data"),
        (H3Connection, "_decode_headers"),
        (hypercorn_quic.QuicProtocol, "_handle_events"),
        (hypercorn_quic.QuicProtocol, "_handle_timer"),
        (hypercorn_quic.QuicProtocol, "send_all"),
        (hypercorn_h3.H3Protocol, "_create_stream"),
        (hypercorn_h3.H3Protocol, "stream_send"),
    ],
)
def test_the_hooks_the_guards_override_exist(owner: type, name: str) -> None:
    assert callable(getattr(owner, name, None))


def test_the_handshake_state_the_cap_reads_exists() -> None:
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    assert quic._handshake_complete is False


def test_install_puts_the_guards_where_hypercorn_looks_them_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module, name in _LOOKED_UP:  # restored after the test
        monkeypatch.setattr(module, name, getattr(module, name))
    h3guard.install()
    h3guard.install()  # twice is harmless
    assert [getattr(module, name) for module, name in _LOOKED_UP] == [
        h3guard.LimitedH3Connection,
        h3guard.GuardedH3Protocol,
        h3guard.GuardedQuicProtocol,
    ]


_LOOKED_UP = [
    (hypercorn_h3, "H3Connection"),
    (hypercorn_quic, "H3Protocol"),
    (hypercorn_quic, "QuicProtocol"),
]


@pytest.mark.parametrize(
    "host, key",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8::1:2:3:4", "2001:db8::/64"),
        ("2001:db8::ffff", "2001:db8::/64"),
    ],
)
def test_the_per_address_cap_counts_an_ipv6_client_by_its_64(host: str, key: str) -> None:
    assert h3guard._address_key(host) == key
