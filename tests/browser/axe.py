"""axe-core for the browser tests, fetched from npm at test time (``npm pack``) into a
gitignored cache, and run in the page through the DevTools protocol (``page.evaluate``), which
the page's CSP does not govern: the portal's own CSP stays on while it is checked.

Only ``serious`` and ``critical`` violations fail a test (the issue's bar); the rest are
returned for the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

AXE_VERSION = "4.14.1"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "axe-core"
FAILING = ("serious", "critical")


def axe_source() -> str:
    """``axe.min.js`` of :data:`AXE_VERSION`, from the cache or ``npm pack`` (once)."""
    script = CACHE / AXE_VERSION / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is missing: the accessibility check fetches axe-core with it")
            pytest.skip("npm is missing: cannot fetch axe-core for the accessibility check")
        CACHE.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", str(CACHE)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        tarball = CACHE / packed.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_bytes(member.read())
        tarball.unlink()
    return script.read_text(encoding="utf-8")


def violations(page: Page, source: str) -> list[dict[str, Any]]:
    """axe's violations of the page as it is now: ``[{"id", "impact", "help", "nodes"}]``."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(source + "\n;undefined")
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document)).violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
        }))"""
    )
    return found


def serious(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in found if item["impact"] in FAILING]
