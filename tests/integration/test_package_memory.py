"""A 1 GB package through a real appliance process, both ways, with its memory watched.

The package (a tar of one 1 GiB file of random bytes, written to a temporary file and removed
afterwards) is uploaded with httpx streaming a multipart body from a generator over HTTP/2 and
TLS, then downloaded with httpx streaming the response; the SHA-256 of what came back must
equal the original's. A thread samples the appliance's resident memory (psutil) throughout;
its peak must stay within 64 MB of the value measured before the upload, after a small upload
and download warmed up every code path. Asserts memory, not time.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.packages_support import tar_bytes
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.slow

PAYLOAD_BYTES = 1024**3
HEADROOM = 64 * 1024 * 1024
PIECE = 1024 * 1024
BOUNDARY = "octo-memory-" + secrets.token_hex(8)


class RandomBytes:
    """A file-like source of ``size`` random bytes, so the tar is never in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return os.urandom(size)


class RssSampler:
    """Samples a process's resident set size until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.samples += 1
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def multipart(path: Path, file_name: str) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{file_name}"\r\nContent-Type: application/x-tar\r\n\r\n'
    ).encode()
    with open(path, "rb") as source:
        while piece := source.read(PIECE):
            yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(client: httpx.Client, path: Path, file_name: str) -> httpx.Response:
    return client.post(
        "/api/v1/packages",
        content=multipart(path, file_name),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def download_sha256(client: httpx.Client, package: str, version: str) -> tuple[str, int, str]:
    digest = hashlib.sha256()
    size = 0
    with client.stream("GET", f"/api/v1/packages/{package}/{version}/download") as response:
        assert response.status_code == 200, response.read()
        for piece in response.iter_bytes(PIECE):
            digest.update(piece)
            size += len(piece)
        header = response.headers["x-package-sha256"]
    return digest.hexdigest(), size, header


@pytest.fixture
def big_tar(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "big.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("payload.bin")
        info.size = PAYLOAD_BYTES
        archive.addfile(info, RandomBytes(PAYLOAD_BYTES))  # type: ignore[arg-type]
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while piece := source.read(PIECE):
            digest.update(piece)
    yield path, digest.hexdigest()
    path.unlink(missing_ok=True)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The appliance's data dir, removed afterwards: it holds a 1 GiB sealed file."""
    path = tmp_path / "data"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_1gb_package_up_and_down_keeps_memory_flat(
    tmp_path: Path, data_dir: Path, big_tar: tuple[Path, str]
) -> None:
    path, sha256 = big_tar
    data = data_dir
    with ServeProcess(data) as server:
        key = server.create_api_key()
        assert server.process is not None
        with server.http2_client(headers={"X-Api-Key": key}, timeout=600) as client:
            # warm up every code path (imports, worker threads) with a small package
            small = tmp_path / "small.tar"
            small.write_bytes(tar_bytes({"f": os.urandom(3 * PIECE)}))
            warm = upload(client, small, "Warm.1.0.0.tar")
            assert warm.status_code == 201, warm.text
            assert download_sha256(client, "Warm", "1.0.0")[0] == warm.json()["sha256"]

            baseline = psutil.Process(server.process.pid).memory_info().rss
            with RssSampler(server.process.pid) as sampler:
                created = upload(client, path, "Big.Package.1.0.0.tar")
                assert created.status_code == 201, created.text
                package = created.json()
                assert package["size"] == path.stat().st_size
                assert package["sha256"] == sha256
                got, size, header = download_sha256(client, "Big.Package", "1.0.0")
            assert (got, size, header) == (sha256, path.stat().st_size, sha256)

        sealed = [p for p in (data / "files" / "packages").glob("*.sealed")]
        assert len(sealed) == 2 and max(p.stat().st_size for p in sealed) > PAYLOAD_BYTES

    growth = sampler.peak - baseline
    assert sampler.samples > 10
    assert growth <= HEADROOM, (
        f"the appliance's RSS grew by {growth / 2**20:.1f} MiB during a 1 GiB upload and "
        f"download (baseline {baseline / 2**20:.1f} MiB, peak {sampler.peak / 2**20:.1f} MiB)"
    )
