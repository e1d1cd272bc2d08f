"""What the portal tests share: reading a page's assets and scripts, signing in by the form."""

from __future__ import annotations

import re
from typing import Any

ASSET_REFERENCE = re.compile(r'<(?:link|script)\b[^>]*?(?:href|src)="(/static/[^"]+)"')
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.DOTALL | re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)


def asset_urls(html: str) -> list[str]:
    return ASSET_REFERENCE.findall(html)


def inline_scripts(html: str) -> list[str]:
    """Script the page carries itself (a ``<script>`` with a body or no ``src``, or an ``on...=``
    attribute): the CSP refuses to run all of it, so the portal must have none."""
    found = [
        body or attributes
        for attributes, body in SCRIPT_TAG.findall(html)
        if body.strip() or "src=" not in attributes
    ]
    return found + INLINE_HANDLER.findall(html)


def sign_in(client: Any, username: str, password: str, next_path: str = "/") -> Any:
    form = {"username": username, "password": password, "next": next_path}
    return client.post("/signin", data=form, follow_redirects=False)
