"""The portal's Jinja2 environment: HTML escaped by default, a missing variable is an error.

Templates are files of the package (and so of the executable), loaded by path rather than by
package metadata, which a frozen executable does not carry. Pages render to a ``no-store``
response: they show one person's view of live data.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from octo_appliance import __version__
from octo_appliance.portal.assets import Assets

TEMPLATE_DIR = Path(__file__).parent / "templates"
NO_STORE = "no-store"


def when(iso: str | None) -> str:
    """``2026-12-07T00:24:04`` -> ``2026-12-07 00:24 UTC`` (what a person reads)."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso.removesuffix("Z")).strftime("%Y-%m-%d %H:%M UTC")


def field_id(name: str) -> str:
    """A form field's name as an element id (``prop.body`` -> ``f-prop-body``)."""
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def duration(ms: int | None) -> str:
    """``93500`` -> ``1 min 33 s`` (empty for a task that has not started)."""
    if ms is None:
        return ""
    seconds = ms // 1000
    if seconds < 60:
        return f"{ms / 1000:.1f} s" if ms < 10_000 else f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Templates:
    def __init__(self, assets: Assets) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(asset=assets.url, version=__version__)
        self.env.filters["when"] = when
        self.env.filters["fid"] = field_id
        self.env.filters["duration"] = duration

    def render(self, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        html = self.env.get_template(name).render(context)
        return HTMLResponse(html, status_code, headers={"cache-control": NO_STORE})
