"""Accessibility checks with axe-core, injected into a page by the test (never served by the
portal): any serious or critical violation fails the test, naming the rule and the elements.

axe-core comes from the npm registry at test time (``npm pack axe-core@4``), into
``tests/.cache/axe-core/`` (git ignores it), and is reused while it is there. The script is run
through the DevTools protocol (``page.evaluate``), which the page's CSP does not govern, so the
portal's strict policy stays on in the test: nothing is loosened to let the checker in.

Use: ``assert_accessible(page, "environments")`` after a page has loaded (the ``axe`` fixture
of ``tests/browser/conftest.py`` gives the same function, after fetching axe once per run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "axe-core"
PACKAGE = "axe-core@4"
#: impacts that fail a page; "moderate" and "minor" are reported by axe but not gated
GATED = frozenset({"serious", "critical"})


def axe_source() -> str:
    """axe.min.js, fetched with npm into the cache on first use (its licence beside it)."""
    script = CACHE / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            message = "npm is missing: the accessibility checks fetch axe-core with it"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            packed = subprocess.run(
                [npm, "pack", PACKAGE, "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if packed.returncode != 0:
                pytest.fail(f"npm pack {PACKAGE} failed: {packed.stderr.strip()[-500:]}")
            tarball = Path(tmp) / packed.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as archive:
                for name in ("axe.min.js", "LICENSE"):
                    member = archive.extractfile(f"package/{name}")
                    assert member is not None, f"{name} missing from {tarball.name}"
                    (CACHE / f"{name}.part").write_bytes(member.read())
        (CACHE / "LICENSE.part").replace(CACHE / "LICENSE")
        (CACHE / "axe.min.js.part").replace(script)  # last: its presence means complete
    return script.read_text(encoding="utf-8")


def violations(page: Any, source: str | None = None) -> list[dict[str, Any]]:
    """Every axe violation on the page as it is now (WCAG 2.x A and AA, best practices)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(source or axe_source())
    results = page.evaluate(
        "axe.run(document, {resultTypes: ['violations', 'incomplete'],"
        " runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',"
        " 'best-practice']}})"
    )
    found: list[dict[str, Any]] = results["violations"]
    return found + invisible_text(results["incomplete"])


def invisible_text(incomplete: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text in the very colour of its background (1:1), as one serious violation.

    axe files that under "incomplete" (it might be meant to be hidden), so a red button with
    red text passed the gate; the portal hides text with ``visually-hidden``, which axe skips,
    never by colour, so a 1:1 contrast is always a label nobody can read."""
    nodes = [
        node
        for item in incomplete
        if item["id"] == "color-contrast"
        for node in item["nodes"]
        if any((check.get("data") or {}).get("messageKey") == "equalRatio" for check in node["any"])
    ]
    if not nodes:
        return []
    help_text = "Text in the colour of its own background (contrast 1:1)"
    return [{"id": "color-contrast", "impact": "serious", "help": help_text, "nodes": nodes}]


def describe(found: list[dict[str, Any]]) -> str:
    lines = []
    for violation in found:
        targets = [" ".join(node["target"]) for node in violation["nodes"][:5]]
        lines.append(f"{violation['impact']}: {violation['id']} ({violation['help']}) at {targets}")
    return "\n".join(lines)


def assert_accessible(page: Any, name: str, source: str | None = None) -> None:
    """Fail on any serious or critical violation of the page called ``name``."""
    gated = serious(violations(page, source))
    assert not gated, f"accessibility of {name}:\n{describe(gated)}"


def serious(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The violations that fail a page (serious or critical)."""
    return [item for item in found if item.get("impact") in GATED]
