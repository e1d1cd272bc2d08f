"""The packages page in process: the list grouped by package, the plain-form upload (no
JavaScript: the CSRF field first, the file streamed to the API's upload), its errors next to
the file field, delete (409 while a release uses it, then anyway), CSRF and permissions."""

from __future__ import annotations

import re

import pytest

from octo_appliance.db.packages import Package
from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.packages_support import upload, zip_bytes
from tests.portal.support import inline_scripts, sign_in
from tests.portal.task_support import csrf_of


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory()


def _post(octo: OctoTestAppliance, token: str, name: str, data: bytes, **fields: str) -> object:
    form = {"csrf_token": token, **fields}
    return octo.client.post(
        "/packages", data=form, files={"file": (name, data)}, follow_redirects=False
    )


def test_the_list_and_an_upload_by_the_plain_form(octo: OctoTestAppliance) -> None:
    for version in ("1.0.0", "1.10.0", "1.2.0"):
        assert upload(octo.api, f"Shop.{version}.zip", zip_bytes({"a": b"1"})).status_code == 201
    sign_in(octo.client, "admin", octo.admin_password)
    page = octo.client.get("/packages").text
    assert inline_scripts(page) == []
    assert re.search(r'<script src="/static/package-upload\.[0-9a-f]{16}\.js" defer>', page)
    versions = re.findall(r"/api/v1/packages/Shop/([\d.]+)/download", page)
    assert versions == ["1.10.0", "1.2.0", "1.0.0"]
    assert 'Shop <span class="muted">(3 versions)</span>' in page
    done = _post(octo, csrf_of(page), "Blog.2.0.0.zip", zip_bytes({"index.html": b"<p>"}))
    assert done.status_code == 303  # type: ignore[attr-defined]
    assert done.headers["location"] == "/packages?uploaded=Blog%202.0.0"  # type: ignore[attr-defined]
    assert Package.get(Package.package_id == "Blog").uploaded_by == "admin"
    after = octo.client.get(done.headers["location"]).text  # type: ignore[attr-defined]
    assert "Uploaded Blog 2.0.0." in after


def test_upload_errors_stand_by_the_file_field(octo: OctoTestAppliance) -> None:
    sign_in(octo.client, "admin", octo.admin_password)
    token = csrf_of(octo.client.get("/packages").text)
    bad_name = _post(octo, token, "not-a-package.zip", zip_bytes({"a": b"1"}))
    assert bad_name.status_code == 422  # type: ignore[attr-defined]
    assert re.search(
        r'id="file"[^>]*aria-invalid="true" aria-describedby="file-error"', bad_name.text
    )  # type: ignore[attr-defined]
    assert re.search(r'<p class="field-error" id="file-error">[^<]+</p>', bad_name.text)  # type: ignore[attr-defined]
    damaged = _post(octo, token, "Shop.1.0.0.zip", b"not a zip at all")
    assert damaged.status_code == 422  # type: ignore[attr-defined]
    assert _post(octo, token, "Shop.1.0.0.zip", zip_bytes({"a": b"1"})).status_code == 303  # type: ignore[attr-defined]
    again = _post(octo, token, "Shop.1.0.0.zip", zip_bytes({"a": b"2"}))
    assert again.status_code == 409  # type: ignore[attr-defined]
    replaced = _post(octo, token, "Shop.1.0.0.zip", zip_bytes({"a": b"2"}), replace="on")
    assert replaced.status_code == 303  # type: ignore[attr-defined]
    assert Package.select().count() == 1


def test_csrf_and_permissions_are_the_apis(octo: OctoTestAppliance) -> None:
    sign_in(octo.client, "admin", octo.admin_password)
    refused = _post(octo, "forged", "Shop.1.0.0.zip", zip_bytes({"a": b"1"}))
    assert refused.status_code == 403  # type: ignore[attr-defined]
    no_field = octo.client.post("/packages", files={"file": ("Shop.1.0.0.zip", b"x")})
    assert no_field.status_code == 403
    cross = octo.client.post(
        "/packages",
        files={"file": ("Shop.1.0.0.zip", b"x")},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert Package.select().count() == 0
    assert upload(octo.api, "Shop.1.0.0.zip", zip_bytes({"a": b"1"})).status_code == 201
    make_user(octo, "vera", "viewer", password="vera-password-1")
    octo.client.cookies.clear()
    sign_in(octo.client, "vera", "vera-password-1")
    page = octo.client.get("/packages").text
    assert 'id="upload-form"' not in page and "/delete" not in page
    assert "package-upload." not in page
    forged = _post(octo, csrf_of(page), "Shop.2.0.0.zip", zip_bytes({"a": b"1"}))
    assert forged.status_code == 403  # type: ignore[attr-defined]
    delete = octo.client.post("/packages/Shop/1.0.0/delete", data={"csrf_token": csrf_of(page)})
    assert delete.status_code == 403 and "package.delete" in delete.text
    assert Package.select().count() == 1


def test_delete_says_which_releases_use_it_then_deletes_anyway(octo: OctoTestAppliance) -> None:
    assert upload(octo.api, "Shop.1.0.0.zip", zip_bytes({"a": b"1"})).status_code == 201
    assert upload(octo.api, "Shop.2.0.0.zip", zip_bytes({"a": b"1"})).status_code == 201
    api = octo.api
    api.post("/projects", json={"name": "Web"})
    step = {
        "name": "Get",
        "type": "deploy-package",
        "roles": ["web"],
        "properties": {"package": "Shop"},
    }
    assert api.put("/projects/Web/process", json={"steps": [step]}).status_code == 200, "process"
    release = api.post(
        "/projects/Web/releases",
        json={"version": "7.0.0", "packages": [{"package": "Shop", "version": "1.0.0"}]},
    )
    assert release.status_code == 201, release.text
    sign_in(octo.client, "admin", octo.admin_password)
    token = csrf_of(octo.client.get("/packages").text)
    gone = octo.client.post(
        "/packages/Shop/2.0.0/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.headers["location"] == "/packages?deleted=Shop%202.0.0"
    used = octo.client.post("/packages/Shop/1.0.0/delete", data={"csrf_token": token})
    assert used.status_code == 409
    assert "7.0.0" in used.text and 'name="force" value="on"' in used.text
    forced = octo.client.post(
        "/packages/Shop/1.0.0/delete", data={"csrf_token": token, "force": "on"}
    )
    assert forced.status_code == 200 and Package.select().count() == 0
