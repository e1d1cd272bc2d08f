"""A body over the limit (413) and a client that leaves before its request was read are one
log line each on a real server, never an "unexpected error" traceback (docs/security.md,
"Trust-boundary logging"); over HTTP/2 the client reads its 413 and the connection lives on
(octo_appliance/web/h2guard.py).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fleet import wait_until
from tests.serve_process import ServeProcess

LIMIT = 1000
CLI = [sys.executable, "-m", "octo_appliance"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("requests") / "data"
    with ServeProcess(data, env={"OCTO_MAX_BODY_BYTES": str(LIMIT)}) as process:
        yield process


@pytest.fixture(scope="module")
def api_key(server: ServeProcess) -> str:
    return server.create_api_key()


def log_since(server: ServeProcess, offset: int) -> str:
    server.output()
    return server.stderr[offset:]


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "unexpected error" not in text, text
    assert "Error in ASGI Framework" not in text, text


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_413_is_one_line(server: ServeProcess, api_key: str, http2: bool) -> None:
    offset = len(log_since(server, 0))
    with httpx.Client(
        base_url=server.url, verify=server.ssl_context(), http2=http2, timeout=30
    ) as client:
        try:
            response = client.post(
                "/api/v1/projects",
                content=b"x" * (2 * 1024 * 1024),  # still sending when the 413 comes
                headers={"X-Api-Key": api_key, "Content-Type": "application/json"},
            )
            assert response.status_code == 413
        except httpx.TransportError:  # HTTP/1.1: the server closes once it answered
            assert not http2
        if http2:  # the client read its 413, and the connection outlived the request
            assert response.status_code == 413
            assert client.get("/api/v1/health").status_code == 200

    needle = "413 for POST /api/v1/projects"
    wait_until(lambda: needle in log_since(server, offset), 10, "the 413's line")
    with httpx.Client(base_url=server.url, verify=server.ssl_context()) as client:
        assert client.get("/api/v1/health").status_code == 200  # the log has caught up
    text = log_since(server, offset)
    assert text.count(needle) == 1, text
    assert_no_traceback(text)


@pytest.mark.parametrize("path", ["/api/v1/projects", "/api/v1/packages"])
def test_a_client_that_leaves_early_is_one_line(
    server: ServeProcess, api_key: str, path: str
) -> None:
    offset = len(log_since(server, 0))
    content_type = (
        "application/json" if path.endswith("projects") else "multipart/form-data; boundary=b"
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\nX-Api-Key: {api_key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: 900\r\n\r\n"
    )
    with (
        socket.create_connection((server.host, server.port), timeout=10) as raw,
        server.ssl_context().wrap_socket(raw, server_hostname=server.host) as tls,
    ):
        tls.sendall(head.encode() + b"{" * 100)
        time.sleep(0.5)  # let the server start on the request (the test holds either way)

    needle = f"POST {path}: the client disconnected before its request was read"
    wait_until(lambda: needle in log_since(server, offset), 10, "the disconnect's line")
    text = log_since(server, offset)
    assert text.count(needle) == 1, text
    assert_no_traceback(text)
