"""An answer given before the request body is read (413, 401) reaches an HTTP/2 client that
is still sending, on a real appliance process. httpx sends the whole body before reading the
response; Hypercorn closed the stream at the answer and then dropped the connection at the
client's next DATA frame, so the client saw "server disconnected" instead of the answer."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from tests.h2client import RawH2
from tests.serve_process import ServeProcess

PIECE = 1024 * 1024
BOUNDARY = "octo-early-" + secrets.token_hex(8)


def package_body(mib: int) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="Big.1.0.0.tar"\r\n\r\n'
    ).encode()
    for _ in range(mib):
        yield os.urandom(PIECE)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def json_body(mib: int) -> Iterator[bytes]:
    yield b'{"name": "'
    for _ in range(mib):
        yield b"a" * PIECE
    yield b'"}'


def test_early_answers_reach_an_http2_client_still_sending(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServeProcess(data, env={"OCTO_MAX_PACKAGE_MB": "1"}) as server:
        key = server.create_api_key()
        multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        with server.http2_client(headers={"X-Api-Key": key}, timeout=60) as client:
            too_big = client.post("/api/v1/packages", content=package_body(8), headers=multipart)
            assert too_big.http_version == "HTTP/2"
            assert too_big.status_code == 413, too_big.text
            assert "max_package_mb" in too_big.json()["error"]["message"]

            too_long = client.post(
                "/api/v1/projects",
                content=json_body(4),
                headers={"Content-Type": "application/json"},
            )
            assert too_long.status_code == 413, too_long.text

            # the connection is still good for the next request
            assert client.get("/api/v1/health").status_code == 200

        with server.http2_client(timeout=60) as anonymous:
            refused = anonymous.post("/api/v1/packages", content=package_body(8), headers=multipart)
            assert refused.status_code == 401, refused.text


def test_request_data_after_the_answer_keeps_the_connection(tmp_path: Path) -> None:
    """The ``test_agents_e2e.py`` flake: a bodyless POST (httpx sends ``content-length: 0``,
    then an empty DATA frame with END_STREAM, as a separate write) answered before that frame
    arrived; Hypercorn had forgotten the stream, failed on the frame and dropped the connection,
    so the client's next call saw "server disconnected". The same for the rest of a body too
    large to drain: the client is asked to stop sending (RST_STREAM NO_ERROR), nothing more."""
    with (
        ServeProcess(tmp_path / "data") as server,
        RawH2(server.host, server.port, server.ssl_context()) as h2c,
    ):
        # headers and body in one write: the body belongs to a stream Hypercorn has just opened
        whole = h2c.start(
            "POST", "/api/v1/projects", {"content-type": "application/json"}, body=b'{"name": "x"}'
        )
        unauthenticated = h2c.read(whole)
        bodyless = h2c.start(
            "POST", "/api/v1/targets/tgt_x/health-check", {"content-length": "0"}, end=False
        )
        answer = h2c.read(bodyless, until="body")  # the answer, before our END_STREAM
        h2c.send(bodyless, b"", end=True)
        h2c.read(bodyless)
        huge = h2c.start(
            "POST",
            "/api/v1/projects",
            {"content-type": "application/json", "content-length": str(2 * 1024**3)},
            end=False,
        )
        refused = h2c.read(huge)
        h2c.send(huge, b"a" * 16384)  # arrives after the 413 has ended the stream
        health = h2c.read(h2c.start("GET", "/api/v1/health"))

    assert unauthenticated.status == 401 and unauthenticated.reset_code is None
    assert answer.status == 401
    assert refused.status == 413 and refused.ended
    assert not h2c.disconnected
    assert health.status == 200
