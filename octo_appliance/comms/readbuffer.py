"""One read buffer per thread for every TLS connection a listener accepted.

asyncio's TLS protocol (``asyncio.sslproto.SSLProtocol``) keeps a 256 KiB ``bytearray`` per
connection for ``recv_into``, yet uses it only between ``get_buffer`` and ``buffer_updated``,
which the selector transport calls back to back with no other callback in between
(``_read_ready__get_buffer`` in ``asyncio/selector_events.py``): the received bytes are
copied into the connection's TLS input at once. So every connection of one event loop can
receive into the same buffer, and 5,000 idle polling agents cost no 1.2 GB of read buffers
(docs/performance.md, "5,000 polling agents"). The buffer is per thread because the
appliance runs more than one event loop (the web server's and the engine's).
"""

from __future__ import annotations

import threading

#: as large as asyncio's own per-connection buffer, so large transfers read as before
SIZE = 256 * 1024

_local = threading.local()


def shared_read_buffer() -> memoryview:
    """This thread's receive buffer (allocated on first use, then reused by every call)."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(SIZE))
    return view
