"""The portal's static files, fingerprinted: a content hash in every URL, cached for a year.

The files ship inside the package (and so inside the executable) and are read once, at start:
each gets the URL ``/static/<name>.<hash>.<ext>``, so a new release changes the URL of every
file it changed and a browser never asks again for a URL it has (``immutable``). A gzip copy is
kept beside each file that compresses well and sent to clients that accept it.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from octo_appliance.exceptions import NotFound

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    "": "text/plain; charset=utf-8",
}
#: a gzip copy is kept only when it saves at least this share of the bytes
MIN_GZIP_SAVING = 0.1


@dataclass(frozen=True)
class Asset:
    url: str
    body: bytes
    gzipped: bytes | None
    media_type: str


def fingerprinted(name: str, body: bytes) -> str:
    """``htmx/htmx.min.js`` -> ``/static/htmx/htmx.min.<first 16 hex of SHA-256>.js``."""
    digest = hashlib.sha256(body).hexdigest()[:16]
    path = PurePosixPath(name)
    return f"{STATIC_PREFIX}{path.parent / path.stem}.{digest}{path.suffix}".replace("/./", "/")


def _asset(name: str, body: bytes) -> Asset:
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    saves = len(packed) <= len(body) * (1 - MIN_GZIP_SAVING)
    media_type = MEDIA_TYPES.get(PurePosixPath(name).suffix, "application/octet-stream")
    return Asset(fingerprinted(name, body), body, packed if saves else None, media_type)


class Assets:
    """Every static file by its name (for templates) and by its fingerprinted URL (to serve)."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._by_name: dict[str, Asset] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            self._by_name[name] = _asset(name, path.read_bytes())
        self._by_url = {asset.url: asset for asset in self._by_name.values()}

    def url(self, name: str) -> str:
        """The URL of ``name`` (a path under ``static/``); a missing file fails the render."""
        try:
            return self._by_name[name].url
        except KeyError:
            raise LookupError(f"no static file {name!r} in the portal package") from None

    async def serve(self, request: Request) -> Response:
        asset = self._by_url.get(request.url.path)
        if asset is None:
            raise NotFound(f"no such file: {request.url.path}")
        headers = {"cache-control": IMMUTABLE, "vary": "accept-encoding"}
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body, headers["content-encoding"] = asset.gzipped, "gzip"
        return Response(body, media_type=asset.media_type, headers=headers)

    def route(self) -> Route:
        return Route(STATIC_PREFIX + "{path:path}", self.serve, methods=["GET", "HEAD"])
