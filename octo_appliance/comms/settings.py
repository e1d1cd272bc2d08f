"""Tunables of a comms connection, with the defaults docs/protocol.md promises.

Defaults detect a dead peer within 30 s (no frame for ``dead_after`` = 20 s, checked at most
0.25 s late by the loop's keepalive timer) where Halibut took minutes; tests shrink every
interval.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from octo_appliance.comms.admission import HandshakeLimits
from octo_appliance.comms.errors import CommsError
from octo_appliance.comms.framing import MAX_PAYLOAD


@dataclass(frozen=True)
class CommsSettings:
    #: send a PING when nothing was sent or nothing received for this long (the side that
    #: accepted the connection waits one ``keepalive_tick`` more: the dialer PINGs first)
    ping_interval: float = 5.0
    #: close the connection (calls fail with PeerLost) after this long without a frame
    dead_after: float = 20.0
    #: TLS handshake plus HELLO exchange must finish within this
    handshake_timeout: float = 10.0
    #: a listener's connections still in the TLS handshake, at most, in all and per peer
    #: address (a newcomer over the per-address cap waits: see comms/admission.py)
    max_pending_handshakes: int = HandshakeLimits.max_pending
    max_pending_handshakes_per_address: int = HandshakeLimits.max_pending_per_address
    #: DATA frame size when streaming a file: the largest payload, since each frame costs
    #: the receiver a worker-thread hop and event-loop work whatever its size (1 MiB frames
    #: cut an agent's CPU for receiving a package by about a fifth against 256 KiB)
    chunk_size: int = MAX_PAYLOAD
    #: largest payload accepted; bigger frames are a protocol error
    max_payload: int = MAX_PAYLOAD
    #: where received files are spooled unless a call names its own download_dir
    spool_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    #: TCP keepalive (kernel level, backs up the PING/PONG keepalive): idle, interval, count
    tcp_keepalive: tuple[int, int, int] = (10, 5, 3)

    def __post_init__(self) -> None:
        if not 0 < self.ping_interval < self.dead_after:
            raise CommsError(
                f"ping_interval ({self.ping_interval} s) must be positive and below "
                f"dead_after ({self.dead_after} s)",
                hint="ping several times within the dead interval, e.g. 5 s and 20 s",
            )
        if not 0 < self.chunk_size <= self.max_payload:
            raise CommsError(
                f"chunk_size {self.chunk_size} must be between 1 and max_payload "
                f"{self.max_payload}",
                hint="use the default (1 MiB, the largest payload)",
            )

    @property
    def handshake_limits(self) -> HandshakeLimits:
        return HandshakeLimits(
            timeout=self.handshake_timeout,
            max_pending=self.max_pending_handshakes,
            max_pending_per_address=self.max_pending_handshakes_per_address,
        )

    @property
    def keepalive_tick(self) -> float:
        """How late a keepalive check may be: a quarter of it gathers the checks of the
        loop's connections into one timer run (comms/keepalive.py), and the side that
        accepted a connection PINGs this much later than the dialer."""
        return min(1.0, self.ping_interval / 2)
