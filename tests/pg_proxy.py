"""A TCP proxy in front of PostgreSQL that a test can take down and bring back.

The tests must not restart the shared PostgreSQL server, so a "restart" is simulated here:
:meth:`PgProxy.stop` closes the listening socket (new connections are refused) and cuts every
open connection, as a server going down does; :meth:`PgProxy.start` listens again on the same
port. The appliance is given :meth:`url` instead of the server's own::

    with PgProxy(pg_url) as proxy:
        ServeProcess(..., database=proxy.url)
        proxy.stop(); ...; proxy.start()
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from urllib.parse import urlparse


class PgProxy:
    def __init__(self, target_url: str) -> None:
        parsed = urlparse(target_url)
        self._target_url = parsed
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 5432)
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        netloc = self._target_url.netloc.rsplit("@", 1)
        user = netloc[0] + "@" if len(netloc) == 2 else ""
        return self._target_url._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    def start(self) -> PgProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            open_sockets, self._sockets = list(self._sockets), set()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.difference_update((a, b))

    def __enter__(self) -> PgProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
