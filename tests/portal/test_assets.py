"""The portal's static files: named by their content hash, cached for a year, gzip if asked."""

from __future__ import annotations

import hashlib
from pathlib import Path

from octo_appliance.portal.assets import IMMUTABLE, STATIC_DIR, Assets, fingerprinted
from octo_appliance.testing import OctoTestAppliance
from tests.portal.support import asset_urls


def test_urls_carry_the_content_hash() -> None:
    url = fingerprinted("htmx/htmx.min.js", b"abc")
    assert url == f"/static/htmx/htmx.min.{hashlib.sha256(b'abc').hexdigest()[:16]}.js"
    assert fingerprinted("portal.css", b"abc").startswith("/static/portal.")


def test_a_changed_file_changes_its_url(tmp_path: Path) -> None:
    (tmp_path / "a.css").write_text("a {}")
    before = Assets(tmp_path).url("a.css")
    (tmp_path / "a.css").write_text("a { color: red }")
    assert Assets(tmp_path).url("a.css") != before


def test_the_pages_assets_are_served_immutable(octo_appliance_factory) -> None:  # type: ignore[no-untyped-def]
    octo: OctoTestAppliance = octo_appliance_factory()
    urls = asset_urls(octo.client.get("/signin").text)
    assert len(urls) == 3  # the icon, the stylesheet and htmx
    for url in urls:
        plain = octo.client.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert plain.headers["cache-control"] == IMMUTABLE
        digest = hashlib.sha256(plain.content).hexdigest()[:16]
        assert f".{digest}." in url
        packed = octo.client.get(url, headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.content == plain.content  # the client unpacked it
    js = octo.client.get(urls[2])
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "Zero-Clause BSD" in (STATIC_DIR / "htmx" / "LICENSE").read_text()  # its licence


def test_an_unknown_or_stale_fingerprint_is_404(octo_appliance_factory) -> None:  # type: ignore[no-untyped-def]
    octo: OctoTestAppliance = octo_appliance_factory()
    assert octo.client.get("/static/portal.0000000000000000.css").status_code == 404
    assert octo.client.get("/static/portal.css").status_code == 404
