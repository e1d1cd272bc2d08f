"""``/api/v1/packages`` on SQLite and PostgreSQL: upload (streamed, sealed, checked), list,
get, download, replace, delete and its guard, permissions, and every refused upload leaving
nothing behind (no row, no file)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets

import pytest
from _pytest.mark import ParameterSet

from octo_appliance.db import AuditEvent, Project, Release
from octo_appliance.db.packages import Package, ReleasePackage
from tests.api.helpers import make_user
from tests.integration.test_canary import data_dir_bytes, leaks, pg_dump
from tests.packages_support import (
    archive_for,
    stored_files,
    tar_bytes,
    tar_gz_bomb,
    upload,
    zip_bomb,
    zip_bytes,
)

FIELDS = {
    "id",
    "package_id",
    "version",
    "format",
    "sha256",
    "size",
    "file_name",
    "uploaded_at",
    "uploaded_by",
}


@pytest.mark.parametrize(
    ("file_name", "fmt", "shown_as"),
    [
        ("MyApp.1.4.0.zip", "zip", "MyApp.1.4.0.zip"),
        ("MyApp.1.4.0.tar", "tar", "MyApp.1.4.0.tar"),
        ("MyApp.1.4.0.tar.gz", "tar.gz", "MyApp.1.4.0.tar.gz"),
        ("MyApp.1.4.0.tgz", "tar.gz", "MyApp.1.4.0.tar.gz"),
    ],
)
def test_upload_get_and_download_round_trip(octo, api, file_name, fmt, shown_as):
    data = archive_for(file_name, {"app/run.sh": b"echo hi\n", "app/data.bin": os.urandom(70_000)})
    created = upload(api, file_name, data)
    assert created.status_code == 201, created.text
    package = created.json()
    assert set(package) == FIELDS
    assert package["id"].startswith("pkg_")
    assert (package["package_id"], package["version"]) == ("MyApp", "1.4.0")
    assert package["format"] == fmt
    assert package["file_name"] == shown_as
    assert package["size"] == len(data)
    assert package["sha256"] == hashlib.sha256(data).hexdigest()
    assert package["uploaded_by"] == "admin"

    assert api.get("/packages/MyApp/1.4.0").json() == package

    download = api.get("/packages/MyApp/1.4.0/download")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-length"] == str(len(data))
    assert download.headers["x-package-sha256"] == package["sha256"]
    assert f'filename="{shown_as}"' in download.headers["content-disposition"]
    head = api.request("HEAD", "/packages/MyApp/1.4.0/download")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-package-sha256"] == package["sha256"]

    # one sealed file, under a random name, that is not the plaintext
    files = stored_files(octo.appliance.data_dir)
    assert len(files) == 1 and files[0].startswith("packages/") and "MyApp" not in files[0]
    event = AuditEvent.get(AuditEvent.resource_id == package["id"])
    assert (event.action, event.resource_type, event.username) == ("create", "package", "admin")
    assert event.details["sha256"] == package["sha256"]


def test_id_with_dots_and_a_prerelease_version(api):
    data = tar_bytes({"index.html": b"<html/>"}, gz=True)
    created = upload(api, "Acme.Web.1.4.0-beta.2.tar.gz", data)
    assert created.status_code == 201, created.text
    assert (created.json()["package_id"], created.json()["version"]) == ("Acme.Web", "1.4.0-beta.2")
    assert api.get("/packages/Acme.Web/1.4.0-beta.2").status_code == 200
    assert api.get("/packages/Acme.Web/1.4.0-beta.2/download").content == data
    assert api.get("/packages/Acme/Web.1.4.0-beta.2").status_code == 404


def test_list_orders_by_id_then_highest_version_and_pages(api):
    for name in [
        "Acme.Web.1.2.0.zip",
        "Acme.Web.1.10.0.zip",
        "Acme.Web.2.0.0-beta.1.zip",
        "Acme.Web.2.0.0.zip",
        "Acme.Web.1.0.0.zip",
        "Billing.0.1.0.tar",
    ]:
        assert upload(api, name, archive_for(name, {"f": name.encode()})).status_code == 201

    listed = api.get("/packages").json()
    assert listed["total"] == 6
    assert [(p["package_id"], p["version"]) for p in listed["items"]] == [
        ("Acme.Web", "2.0.0"),
        ("Acme.Web", "2.0.0-beta.1"),
        ("Acme.Web", "1.10.0"),
        ("Acme.Web", "1.2.0"),
        ("Acme.Web", "1.0.0"),
        ("Billing", "0.1.0"),
    ]
    one_id = api.get("/packages", params={"id": "Billing"}).json()
    assert [p["version"] for p in one_id["items"]] == ["0.1.0"] and one_id["total"] == 1
    assert api.get("/packages", params={"id": "Acme"}).json() == {"items": [], "total": 0}
    by_name = api.get("/packages", params={"name": "web"}).json()
    assert by_name["total"] == 5
    page = api.get("/packages", params={"id": "Acme.Web", "take": 2, "skip": 1}).json()
    assert [p["version"] for p in page["items"]] == ["2.0.0-beta.1", "1.10.0"]
    assert page["total"] == 5
    assert api.get("/packages", params={"take": 0}).status_code == 400


def test_existing_version_needs_replace(octo, api):
    first = zip_bytes({"v": b"first"})
    second = zip_bytes({"v": b"second"})
    original = upload(api, "MyApp.1.0.0.zip", first).json()
    old_files = stored_files(octo.appliance.data_dir)

    again = upload(api, "MyApp.1.0.0.zip", second)
    assert again.status_code == 409
    assert "replace=true" in again.json()["error"]["hint"]
    assert stored_files(octo.appliance.data_dir) == old_files
    assert api.get("/packages/MyApp/1.0.0/download").content == first

    replaced = upload(api, "MyApp.1.0.0.zip", second, replace="true")
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert body["id"] == original["id"]
    assert body["sha256"] == hashlib.sha256(second).hexdigest() != original["sha256"]
    assert api.get("/packages/MyApp/1.0.0/download").content == second
    new_files = stored_files(octo.appliance.data_dir)
    assert len(new_files) == 1 and new_files != old_files  # the old sealed file is gone
    assert Package.select().count() == 1
    event = AuditEvent.get(AuditEvent.resource_id == body["id"], AuditEvent.action == "update")
    assert event.details["replaced_sha256"] == original["sha256"]

    # replace=true on a version that does not exist yet simply creates it
    assert upload(api, "MyApp.1.0.1.zip", first, replace="true").status_code == 201


GOOD_ZIP = zip_bytes({"a.txt": b"hello"})


def bad_file(
    name: str | None, data: bytes, fragment: str, case: str, status: int = 422
) -> ParameterSet:
    """A refused upload of one ``file`` field: the error's status and a part of its message."""
    return pytest.param({"files": {"file": (name, data)}}, status, fragment, id=case)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "fragment"),
    [
        pytest.param({"json": {"file": "x"}}, 400, "multipart/form-data", id="not-multipart"),
        pytest.param(
            {"files": {"package": ("MyApp.1.0.0.zip", GOOD_ZIP)}},
            422,
            "no form field 'file'",
            id="no-file-field",
        ),
        bad_file(None, b"MyApp.1.0.0.zip", "not a file", "not-a-file"),
        bad_file("MyApp.zip", GOOD_ZIP, "version", "no-version"),
        bad_file("MyApp.1.0.zip", GOOD_ZIP, "semantic version", "non-semver"),
        bad_file("MyApp.01.0.0.zip", GOOD_ZIP, "semantic version", "leading-zero"),
        bad_file("1.0.0.zip", GOOD_ZIP, "no package id", "no-id"),
        bad_file("My App.1.0.0.zip", GOOD_ZIP, "not a valid package id", "space-in-id"),
        bad_file("MyApp.1.0.0.rar", GOOD_ZIP, "supported extension", "extension"),
        bad_file("MyApp.1.0.0.zip", GOOD_ZIP[:-30], "not a readable zip", "corrupt-zip"),
        bad_file(
            "MyApp.1.0.0.tar.gz",
            os.urandom(5000),
            "not a readable gzip-compressed tar",
            "random-bytes-tar-gz",
        ),
        bad_file("MyApp.1.0.0.tar", os.urandom(5000), "not a readable tar", "random-bytes-tar"),
        bad_file("MyApp.1.0.0.zip", zip_bytes({}), "holds no files", "empty-zip"),
        bad_file("MyApp.1.0.0.zip", b"", "empty", "empty-file"),
        bad_file("MyApp.1.0.0.tar.gz", GOOD_ZIP, "gzip", "zip-named-tar-gz"),
        pytest.param(
            {
                "files": [
                    ("file", ("MyApp.1.0.0.zip", GOOD_ZIP)),
                    ("file", ("MyApp.1.0.1.zip", GOOD_ZIP)),
                ]
            },
            422,
            "more than one",
            id="two-files",
        ),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(octo, api, request_kwargs, status, fragment):
    response = api.post("/packages", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"], error
    assert error["hint"]
    assert Package.select().count() == 0
    assert stored_files(octo.appliance.data_dir) == []
    assert not AuditEvent.select().where(AuditEvent.resource_type == "package").exists()


@pytest.mark.parametrize(
    ("file_name", "make", "fragment"),
    [
        ("Bomb.1.0.0.zip", lambda: zip_bomb(1024), "expands to 1.0 GiB"),
        ("Bomb.1.0.0.tar.gz", lambda: tar_gz_bomb(2048), "expands to more than"),
    ],
    ids=["1mb-zip-of-1gib", "2mb-tar-gz-of-2gib"],
)
def test_archive_bombs_are_refused_at_upload_naming_the_limit(octo, api, file_name, make, fragment):
    response = upload(api, file_name, make())
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert fragment in error["message"]
    assert "max_expansion_ratio" in error["message"]
    assert "max_expansion_ratio" in error["hint"]
    assert Package.select().count() == 0
    assert stored_files(octo.appliance.data_dir) == []


def test_a_zip_holding_a_path_twice_is_refused_at_upload(octo, api):
    twice = zip_bytes({"app/run.sh": b"echo one\n", "./app/run.sh": b"echo two\n"})
    response = upload(api, "Twice.1.0.0.zip", twice)
    assert response.status_code == 422, response.text
    assert "'app/run.sh' more than once" in response.json()["error"]["message"]
    assert stored_files(octo.appliance.data_dir) == []


def test_a_cut_multipart_body_is_refused(octo, api):
    boundary = "cut-" + secrets.token_hex(4)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="MyApp.1.0.0.zip"\r\nContent-Type: application/zip\r\n\r\n'
    ).encode()
    response = api.post(
        "/packages",
        content=head + GOOD_ZIP,  # no closing boundary
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert "cut short" in response.json()["error"]["message"]
    assert Package.select().count() == 0
    assert stored_files(octo.appliance.data_dir) == []


def test_packages_over_max_package_mb_are_refused(octo, api):
    appliance = octo.appliance
    appliance.config = dataclasses.replace(appliance.config, max_package_mb=1)
    limit = 1024 * 1024
    fits = tar_bytes({"blob": os.urandom(limit - 10 * 1024)})
    assert len(fits) <= limit
    assert upload(api, "Big.1.0.0.tar", fits).status_code == 201

    too_big = tar_bytes({"blob": os.urandom(limit)})
    assert len(too_big) > limit
    refused = upload(api, "Big.1.0.1.tar", too_big)
    assert refused.status_code == 413
    assert "max_package_mb" in refused.json()["error"]["message"]
    # a declared Content-Length far over the limit is refused before the body is read
    declared = api.post(
        "/packages",
        content=b"x",
        headers={
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(50 * limit),
        },
    )
    assert declared.status_code == 413
    assert [p.version for p in Package.select()] == ["1.0.0"]
    assert len(stored_files(appliance.data_dir)) == 1


def test_missing_packages_are_404(api):
    for path in ("/packages/Nope/1.0.0", "/packages/Nope/1.0.0/download"):
        response = api.get(path)
        assert response.status_code == 404
        assert "Nope" in response.json()["error"]["message"]
    assert api.delete("/packages/Nope/1.0.0").status_code == 404


def test_delete_and_the_guard_of_releases_that_use_a_version(octo, api):
    package = upload(api, "MyApp.1.0.0.zip", GOOD_ZIP).json()
    upload(api, "MyApp.1.0.1.zip", GOOD_ZIP)
    shop = Project.create_new(name="Shop")
    release = Release.create_new(project=shop.id, version="1.0.3")
    ReleasePackage.create_new(
        release=release.id,
        step="Deploy web",
        package_id="MyApp",
        version="1.0.0",
        sha256=package["sha256"],
    )
    assert len(stored_files(octo.appliance.data_dir)) == 2

    refused = api.delete("/packages/MyApp/1.0.0")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert "Shop 1.0.3" in error["message"]
    assert "force=true" in error["hint"]
    assert error["details"][0]["release_id"] == release.id
    assert api.get("/packages/MyApp/1.0.0").status_code == 200

    forced = api.delete("/packages/MyApp/1.0.0", params={"force": "true"})
    assert forced.status_code == 204
    assert forced.content == b""
    assert api.get("/packages/MyApp/1.0.0").status_code == 404
    assert len(stored_files(octo.appliance.data_dir)) == 1
    event = AuditEvent.get(AuditEvent.resource_id == package["id"], AuditEvent.action == "delete")
    assert event.details["forced"] is True and event.details["releases"] == ["Shop 1.0.3"]

    # an unused version goes without force
    assert api.delete("/packages/MyApp/1.0.1").status_code == 204
    assert stored_files(octo.appliance.data_dir) == []
    assert Package.select().count() == 0


def test_who_may_read_push_and_delete(octo, api):
    upload(api, "MyApp.1.0.0.zip", GOOD_ZIP)
    project = Project.create_new(name="Shop")
    callers = {
        "viewer": make_user(octo, "vera", "viewer"),
        "deployer": make_user(octo, "dora", "project-deployer"),
        "scoped-admin": make_user(octo, "sam", "administrator", projects=[project.id]),
        "no-team": make_user(octo, "nina"),
    }
    for who, key in callers.items():
        client = api.as_key(key)
        can_read = who != "no-team"
        assert client.get("/packages").status_code == (200 if can_read else 403), who
        download = client.get("/packages/MyApp/1.0.0/download")
        assert download.status_code == (200 if can_read else 403), who
        pushed = upload(client, "MyApp.2.0.0.zip", GOOD_ZIP)
        assert pushed.status_code == 403, who
        assert "package.push" in pushed.json()["error"]["message"]
        assert client.delete("/packages/MyApp/1.0.0").status_code == 403, who
    anonymous = api.as_key(None)
    assert anonymous.get("/packages").status_code == 401
    assert upload(anonymous, "MyApp.2.0.0.zip", GOOD_ZIP).status_code == 401
    assert [p.version for p in Package.select()] == ["1.0.0"]
    assert len(stored_files(octo.appliance.data_dir)) == 1


def test_package_plaintext_never_reaches_the_data_dir(octo, api, database_url):
    """The canary (file content and a file name inside the archive) is nowhere on disk."""
    canary = "pkg-canary-" + secrets.token_hex(16)
    package_id = "Canary" + secrets.token_hex(4)
    inner = {f"{canary}.txt": f"the content is {canary}\n".encode() * 50}
    stored = zip_bytes(inner, stored=True)  # uncompressed: the canary is in the archive bytes
    tarred = tar_bytes(inner)
    assert canary.encode() in stored and canary.encode() in tarred
    assert upload(api, f"{package_id}.1.0.0.zip", stored).status_code == 201
    assert upload(api, f"{package_id}.1.0.1.tar", tarred).status_code == 201
    assert api.get(f"/packages/{package_id}/1.0.0/download").content == stored

    files = data_dir_bytes(octo.appliance.data_dir)
    for name, blob in files.items():
        assert not leaks(blob, canary), f"package plaintext is readable in {name}"
        assert stored[:4096] not in blob and tarred[:4096] not in blob
    if database_url is None:
        # the search sees the database: the (plain) package id is in it
        assert any(package_id.encode() in blob for blob in files.values())
    else:
        dump = pg_dump(database_url)
        assert package_id.encode() in dump
        assert not leaks(dump, canary)
