"""A real appliance on a 30 MB tmpfs the test mounts itself (skipped where mounting is not
permitted): a 50 MB package sent over HTTP/2 gets a 507 naming the data dir and its free space
(not a 500, not a dropped connection), leaves no partial file, other writes on the full disk
are 507s too, and once space is freed the same appliance works again."""

from __future__ import annotations

import os
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.packages_support import stored_files, tar_bytes
from tests.serve_process import ServeProcess
from tests.tmpfs import fill, mounted_tmpfs

pytestmark = pytest.mark.slow

PACKAGE_BYTES = 50 * 1024 * 1024
PIECE = 1024 * 1024
BOUNDARY = "octo-full-" + secrets.token_hex(8)
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def big_tar_body(file_name: str) -> Iterator[bytes]:
    """A multipart body holding a 50 MB tar of random bytes, generated as it is sent."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{file_name}"\r\nContent-Type: application/x-tar\r\n\r\n'
    ).encode()
    info = tarfile.TarInfo("payload.bin")
    info.size = PACKAGE_BYTES
    yield info.tobuf()
    for _ in range(PACKAGE_BYTES // PIECE):
        yield os.urandom(PIECE)
    yield b"\0" * 1024
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def assert_disk_full(response: httpx.Response, data: Path) -> None:
    assert response.http_version == "HTTP/2"
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_storage"
    assert f"data dir {data}" in error["message"]
    assert " free)" in error["message"]
    assert error["hint"]


def test_a_full_disk_is_a_507_and_the_appliance_recovers(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "30m") as disk:
        data = disk / "data"
        with ServeProcess(data) as server:
            key = server.create_api_key()
            with server.http2_client(headers={"X-Api-Key": key}, timeout=60) as client:
                streamed = client.post(
                    "/api/v1/packages",
                    content=big_tar_body("Big.1.0.0.tar"),
                    headers={"Content-Type": CONTENT_TYPE},
                )
                assert_disk_full(streamed, data)
                assert "storing the package" in streamed.json()["error"]["message"]
                assert stored_files(data) == []  # nothing partial left behind

                # a declared length over the free space is refused before the body is read
                length = sum(len(piece) for piece in big_tar_body("Big.1.0.0.tar"))
                declared = client.post(
                    "/api/v1/packages",
                    content=big_tar_body("Big.1.0.0.tar"),
                    headers={"Content-Type": CONTENT_TYPE, "Content-Length": str(length)},
                )
                assert_disk_full(declared, data)
                assert "upload" in declared.json()["error"]["message"]

                # the disk full: database writes are 507s too (SQLite: "database or disk is
                # full"; it may fit a few more rows in pages it already holds)
                filler = fill(disk)
                description = "x" * 10_000
                for attempt in range(2_000):
                    created = client.post(
                        "/api/v1/projects",
                        json={"name": f"Full {attempt}", "description": description},
                    )
                    if created.status_code != 201:
                        break
                assert_disk_full(created, data)
                assert "POST /api/v1/projects" in created.json()["error"]["message"]
                assert client.get("/api/v1/health").status_code == 200

                filler.unlink()  # space freed: the same process works again
                again = client.post(
                    "/api/v1/projects", json={"name": "After", "description": description}
                )
                assert again.status_code == 201, again.text
                small = tar_bytes({"app.txt": b"fits\n"})
                pushed = client.post("/api/v1/packages", files={"file": ("Small.1.0.0.tar", small)})
                assert pushed.status_code == 201, pushed.text
        assert "Traceback" not in server.stderr
