"""The streaming multipart receiver: any split of the body gives the same package; a bad name
is refused as soon as the headers are in; the size limit as soon as it is crossed; and a
refused or aborted upload leaves no file."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import pytest

from octo_appliance.exceptions import BadRequest, PayloadTooLarge, ValidationFailed
from octo_appliance.feed.sealed_files import incoming_dir, sweep_incoming
from octo_appliance.feed.upload import MultipartUpload
from octo_appliance.vault import KeyRing, MasterKey, Vault
from tests.packages_support import stored_files, tar_bytes, zip_bytes

VAULT = Vault(KeyRing(MasterKey.generate()))
BOUNDARY = "----octo" + secrets.token_hex(8)
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, data: bytes, file_name: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if file_name is not None:
        disposition += f'; filename="{file_name}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    head += "Content-Type: application/octet-stream\r\n\r\n"
    return head.encode() + data + b"\r\n"


def body(*parts: bytes, epilogue: bytes = b"") -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode() + epilogue


def receive(data_dir: Path, raw: bytes, piece: int, limit: int | None = None):  # type: ignore[no-untyped-def]
    upload = MultipartUpload(VAULT, data_dir, CONTENT_TYPE, limit)
    try:
        for start in range(0, len(raw), piece):
            upload.feed(raw[start : start + piece])
        return upload.finish()
    except BaseException:
        upload.abort()
        raise


@pytest.mark.parametrize("piece", [1, 7, 4096, 10**9])
def test_any_split_of_the_body_gives_the_same_package(tmp_path, piece):
    # stored (not deflated), so a near-boundary sits in the body the parser sees
    near_boundary = b"\r\n--" + BOUNDARY[:-1].encode()
    package = zip_bytes({"a": os.urandom(20_000), "b": near_boundary}, stored=True)
    assert near_boundary in package
    raw = body(
        part("note", b"ignored"),
        part("file", package, "Acme.Web.1.4.0-beta.2.zip"),
        epilogue=b"trailing epilogue",
    )
    received = receive(tmp_path, raw, piece)
    assert (received.name.package_id, received.name.version) == ("Acme.Web", "1.4.0-beta.2")
    assert received.size == len(package)
    assert received.sha256 == hashlib.sha256(package).hexdigest()
    assert received.entries == 2
    assert stored_files(tmp_path) == [f"packages/.incoming/{received.token}.sealed"]
    assert package not in (incoming_dir(tmp_path) / f"{received.token}.sealed").read_bytes()


def test_a_bad_name_is_refused_before_any_file_byte(tmp_path):
    upload = MultipartUpload(VAULT, tmp_path, CONTENT_TYPE, None)
    head = part("file", b"", "MyApp.1.0.zip")[:-2]  # headers only: no data yet
    with pytest.raises(ValidationFailed, match="semantic version"):
        upload.feed(head)
    assert upload.name is None
    assert stored_files(tmp_path) == []


def test_the_name_is_known_once_the_headers_are_in(tmp_path):
    upload = MultipartUpload(VAULT, tmp_path, CONTENT_TYPE, None)
    upload.feed(part("file", b"", "MyApp.2.0.0.tar")[:-2])
    assert upload.name is not None and upload.name.version == "2.0.0"
    upload.abort()
    assert stored_files(tmp_path) == []


def test_the_limit_is_refused_as_soon_as_it_is_crossed(tmp_path):
    limit = 100_000
    raw = body(part("file", tar_bytes({"blob": os.urandom(2 * limit)}), "Big.1.0.0.tar"))
    upload = MultipartUpload(VAULT, tmp_path, CONTENT_TYPE, limit)
    fed = 0
    with pytest.raises(PayloadTooLarge, match="max_package_mb"):
        for start in range(0, len(raw), 1000):
            upload.feed(raw[start : start + 1000])
            fed = start + 1000
    assert fed < limit + 2000  # refused within a piece of the limit, not at the end
    upload.abort()
    assert stored_files(tmp_path) == []


@pytest.mark.parametrize(
    ("raw", "error", "fragment"),
    [
        (body(part("other", b"x")), ValidationFailed, "no form field 'file'"),
        (body(part("file", b"just text")), ValidationFailed, "no filename"),
        (
            body(
                part("file", zip_bytes({"a": b"1"}), "A.1.0.0.zip"),
                part("file", b"", "B.1.0.0.zip"),
            ),
            ValidationFailed,
            "more than one",
        ),
        (body(part("file", b"not a zip", "A.1.0.0.zip")), ValidationFailed, "not a readable zip"),
        (part("file", zip_bytes({"a": b"1"}), "A.1.0.0.zip"), BadRequest, "cut short"),
        (
            body(part("junk", b"x" * 70_000), part("file", b"", "A.1.0.0.zip")),
            BadRequest,
            "besides",
        ),
        (b"this is not multipart at all", BadRequest, "malformed"),
    ],
)
def test_refused_bodies_leave_nothing(tmp_path, raw, error, fragment):
    with pytest.raises(error, match=fragment):
        receive(tmp_path, raw, 333)
    assert stored_files(tmp_path) == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data", "text/plain; boundary=x", ""]
)
def test_only_multipart_form_data_with_a_boundary(tmp_path, content_type):
    with pytest.raises(BadRequest, match="multipart/form-data"):
        MultipartUpload(VAULT, tmp_path, content_type, None)


def test_stale_incoming_files_are_swept(tmp_path):
    directory = incoming_dir(tmp_path)
    directory.mkdir(parents=True)
    stale, fresh = directory / "old.sealed", directory / ".new.sealed.1234.sealing"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (1, 1))
    assert sweep_incoming(tmp_path) == 1
    assert not stale.exists() and fresh.exists()
