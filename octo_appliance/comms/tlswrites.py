"""TLS writes in slices, so a connection keeps no buffer the size of its largest message.

asyncio's TLS protocol hands everything waiting to be sent to OpenSSL at once, which encrypts
it into the connection's outgoing memory BIO, and only then reads the BIO out to the socket.
OpenSSL's memory BIO keeps its largest size for as long as the connection lives: after one
runner build (265 KB) or one 1 MiB DATA frame went out, every idle polling connection held
~350 KB to 1.4 MB of C heap. Issue 14 measured ~330 KB per connection after the 5,000 first
health checks (each sends the runner build): most of the appliance's RSS beyond the idle
connections. Here the protocol writes :data:`SLICE` bytes of plaintext at a time and reads the
BIO out after each, so it never grows past one TLS record; the ciphertext of one write goes to
the socket in one ``writelines``. While the socket is paused (its buffer full) asyncio's
own path runs unchanged, so back-pressure works as before.
"""

from __future__ import annotations

from asyncio import sslproto
from typing import Any

#: plaintext bytes encrypted at a time: one TLS record
SLICE = 16 * 1024


class SlicedWrites(sslproto.SSLProtocol):
    """:class:`asyncio.sslproto.SSLProtocol` whose outgoing BIO holds at most one slice."""

    _write_backlog: Any
    _write_buffer_size: int
    _ssl_writing_paused: bool
    _sslobj: Any
    _outgoing: Any
    _transport: Any

    def _do_write(self) -> None:
        if self._ssl_writing_paused:  # the socket is full: asyncio's way keeps it in the BIO
            super()._do_write()  # type: ignore[misc]
            return
        out: list[bytes] = []
        try:
            while self._write_backlog:
                view = memoryview(self._write_backlog[0]).cast("B")
                done = 0
                try:
                    while done < len(view):
                        done += self._sslobj.write(view[done : done + SLICE])
                        if chunk := self._outgoing.read():
                            out.append(chunk)
                finally:
                    self._write_buffer_size -= done
                    if done < len(view):
                        self._write_backlog[0] = view[done:]
                    else:
                        del self._write_backlog[0]
        except sslproto.SSLAgainErrors:
            pass
        if chunk := self._outgoing.read():
            out.append(chunk)
        if len(out) == 1:
            self._transport.write(out[0])
        elif out:
            self._transport.writelines(out)
        self._control_app_writing()  # type: ignore[attr-defined]
