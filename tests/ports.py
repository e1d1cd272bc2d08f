"""Ports for test servers and agents that must be told a port before they bind it."""

from __future__ import annotations

import random
import socket

#: where :func:`free_port` looks: below Linux's ephemeral range (32768-60999), so no outgoing
#: connection (curl, an agent dialling) can be holding the port when the agent binds it
FREE_PORT_RANGE = (15000, 32000)


def free_port() -> int:
    """A port nothing uses right now (bound, then closed: the agent takes it next), picked
    outside the ephemeral range: a port the kernel handed out for ``bind(0)`` can be taken by
    any outgoing connection in between, which failed a listening agent's start under load."""
    for _ in range(200):
        port = random.randrange(*FREE_PORT_RANGE)
        try:  # TCP and UDP (an appliance serves HTTP/3 on the same port number)
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind(("0.0.0.0", port))
        except OSError:
            continue
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
