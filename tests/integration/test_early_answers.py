"""An answer given before the request body is read (413, 401) reaches an HTTP/2 client that
is still sending, on a real appliance process. httpx sends the whole body before reading the
response; Hypercorn closed the stream at the answer and then dropped the connection at the
client's next DATA frame, so the client saw "server disconnected" instead of the answer."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from tests.integration.test_package_memory import api_key
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
        key = api_key(data)
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
