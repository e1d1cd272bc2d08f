"""One read buffer per thread for every TLS connection a listener accepted.

asyncio's TLS protocol (``asyncio.sslproto.SSLProtocol``) keeps a 256 KiB ``bytearray`` per
connection for ``recv_into``, yet uses it only between ``get_buffer`` and ``buffer_updated``,
which the selector transport calls back to back with no other callback in between
(``_read_ready__get_buffer`` in ``asyncio/selector_events.py``): the received bytes are
copied into the connection's TLS input at once. So every connection of one event loop can
receive into the same buffer, and 5,000 idle polling agents cost no 1.2 GB of read buffers
(docs/performance.md, "5,000 polling agents"). The buffer is per thread because the
appliance runs more than one event loop (the web server's and the engine's). The frame
reader (``comms/reader.py``) keeps its scratch buffer the same way, under a name of its own.
"""

from __future__ import annotations

import threading

#: as large as asyncio's own per-connection buffer, so large transfers read as before
SIZE = 256 * 1024

_local = threading.local()


def thread_buffer(name: str, size: int) -> memoryview:
    """This thread's buffer called ``name`` (allocated on first use, then reused by every
    call). Each use has a name of its own: a buffer must never serve two readers whose
    callbacks can interleave (the TLS read buffer and the frame reader's scratch do)."""
    buffers: dict[str, memoryview] | None = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    view = buffers.get(name)
    if view is None:
        view = buffers[name] = memoryview(bytearray(size))
    return view


def shared_read_buffer() -> memoryview:
    """This thread's TLS receive buffer for every connection a listener accepted."""
    return thread_buffer("tls-receive", SIZE)
