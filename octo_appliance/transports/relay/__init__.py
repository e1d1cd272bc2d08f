"""Calls across nodes: several appliance nodes on one PostgreSQL reach every polling agent.

A polling agent keeps one connection, to one node. A task that node A runs for an agent
connected to node B hands each call to B through PostgreSQL: a row for the call, ``NOTIFY`` to
wake B, rows for its streamed events and file chunks, ``NOTIFY`` to wake A (docs/ha.md, "Calls
across nodes"). On SQLite (one node) none of this starts.
"""

from __future__ import annotations

from octo_appliance.transports.relay.hub import RelayingHub
from octo_appliance.transports.relay.node import CallRelay

__all__ = ["CallRelay", "RelayingHub"]
