"""A tiny stand-in appliance for the CLI client's unit tests: a Starlette app on Hypercorn, over
real TLS on 127.0.0.1 with a fresh self-signed certificate, in a background thread.

It plays the package feed (``POST``/``GET /api/v1/packages``, the contract the real feed
follows), a task log stream that can be told to drop mid-way, and an endpoint answering any
status with any body, and it records what it was sent so tests can check the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from octo_appliance.comms import generate_identity

API_KEY = "OCTO-stub-key-" + "k" * 24


@dataclass
class Recorded:
    uploads: list[dict[str, Any]] = field(default_factory=list)
    stream_resumes: list[str | None] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)


class StubAppliance:
    """``with StubAppliance(tmp_path) as stub:`` then ``stub.url`` and ``stub.thumbprint``."""

    def __init__(self, directory: Path) -> None:
        identity = generate_identity("stub-appliance", ["127.0.0.1"])
        self.cert_file, self.key_file = directory / "stub.crt", directory / "stub.key"
        identity.save(self.cert_file, self.key_file)
        self.thumbprint = identity.thumbprint
        self.packages: list[dict[str, Any]] = []
        #: (package id, version) that releases pinned: replacing their content needs force
        self.pinned: set[tuple[str, str]] = set()
        #: what GET /api/v1/users/me says the key's user may do
        self.permissions = ["package.push", "package.view"]
        self.recorded = Recorded()
        #: how each successive log stream connection behaves: "drop", "close" or "finish"
        self.stream_script: list[str] = ["finish"]
        self.log_lines = [f"line {n}" for n in range(1, 6)]
        #: lines a "drop" or "close" connection sends before it is cut
        self.lines_before_cut = 2
        self.port = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- the app ---------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        key = request.headers.get("x-api-key", "")
        self.recorded.api_keys.append(key)
        return key == API_KEY

    @staticmethod
    def _error(status: int, code: str, message: str, hint: str | None = None) -> Response:
        body: dict[str, Any] = {"code": code, "message": message, "details": []}
        if hint:
            body["hint"] = hint
        return JSONResponse({"error": body}, status)

    async def _me(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._error(401, "unauthenticated", "the API key is not valid")
        return JSONResponse({"username": "admin", "permissions": self.permissions})

    async def _package(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._error(401, "unauthenticated", "the API key is not valid")
        wanted = (request.path_params["package_id"], request.path_params["version"])
        for package in self.packages:
            if (package["package_id"], package["version"]) == wanted:
                return JSONResponse(package)
        return self._error(404, "not_found", "no such package")

    async def _packages(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._error(401, "unauthenticated", "the API key is not valid")
        if request.method == "GET":
            items = [p for p in self.packages if p["package_id"] == request.query_params.get("id")]
            items = items if "id" in request.query_params else list(self.packages)
            take = int(request.query_params.get("take", 50))
            return JSONResponse({"items": items[:take], "total": len(items)})
        return await self._upload(request)

    async def _upload(self, request: Request) -> Response:
        headers = dict(request.headers)
        hasher, size = hashlib.sha256(), 0
        async with request.form() as form:
            upload = form["file"]
            assert not isinstance(upload, str)
            name = upload.filename or ""
            while chunk := await upload.read(256 * 1024):
                hasher.update(chunk)
                size += len(chunk)
        self.recorded.uploads.append(
            {
                "headers": headers,
                "query": dict(request.query_params),
                "file_name": name,
                "size": size,
                "sha256": hasher.hexdigest(),
            }
        )
        stem = name.removesuffix(".zip")
        package_id, _, version = stem.partition(".")
        replace = request.query_params.get("replace") == "true"
        existing = [
            p for p in self.packages if (p["package_id"], p["version"]) == (package_id, version)
        ]
        if existing and not replace:
            return self._error(409, "conflict", f"package {package_id} {version} already exists")
        forced = request.query_params.get("force") == "true"
        changed = any(old["sha256"] != hasher.hexdigest() for old in existing)
        if changed and (package_id, version) in self.pinned and not forced:
            message = f"package {package_id} version {version} is used by releases: Shop 1.0.0"
            return self._error(409, "conflict", message)
        for old in existing:
            self.packages.remove(old)
        package = {
            "id": f"pkg_{len(self.packages) + 1:012x}",
            "package_id": package_id,
            "version": version,
            "format": "zip",
            "sha256": hasher.hexdigest(),
            "size": size,
            "file_name": name,
            "uploaded_at": "2030-01-02T03:04:05.000Z",
            "uploaded_by": "admin",
        }
        self.packages.append(package)
        return JSONResponse(package, 200 if existing else 201)

    async def _status(self, request: Request) -> Response:
        """``/api/v1/status/{code}?body=JSON`` answers ``code`` with that body (or text)."""
        code = int(request.path_params["code"])
        body = request.query_params.get("body")
        if body is None:
            return PlainTextResponse("<html>proxy error</html>", code)
        return JSONResponse(json.loads(body), code)

    async def _stream(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._error(401, "unauthenticated", "the API key is not valid")
        resume = request.headers.get("last-event-id")
        self.recorded.stream_resumes.append(resume)
        mode = self.stream_script.pop(0) if self.stream_script else "finish"
        since = int(resume or 0)

        async def events() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            sent = 0
            for seq, text in enumerate(self.log_lines, start=1):
                if seq <= since:
                    continue
                if mode != "finish" and sent == self.lines_before_cut:
                    if mode == "drop":
                        raise ConnectionResetError("the stub drops the stream")
                    return  # "close": a clean end without the end event
                line = {
                    "seq": seq,
                    "time": "2030-01-02T03:04:05.000Z",
                    "level": "info",
                    "target": None,
                    "message": text,
                }
                yield f"id: {seq}\nevent: log\ndata: {json.dumps(line)}\n\n"
                yield ": keepalive\n\n"
                sent += 1
            end = {"state": "success", "error": None, "finished_at": "2030-01-02T03:04:06.000Z"}
            yield f"event: end\ndata: {json.dumps(end)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/users/me", self._me),
                Route("/api/v1/packages", self._packages, methods=["GET", "POST"]),
                Route("/api/v1/packages/{package_id}/{version}", self._package),
                Route("/api/v1/status/{code:int}", self._status, methods=["GET", "POST"]),
                Route("/api/v1/tasks/{task_id}/log/stream", self._stream),
            ]
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> StubAppliance:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        config = Config()
        # Hypercorn takes ownership of the descriptor it is given (and closes it): hand it a copy
        config.bind = [f"fd://{os.dup(self._sock.fileno())}"]
        config.certfile, config.keyfile = str(self.cert_file), str(self.key_file)
        config.graceful_timeout = 0.5
        config.accesslog = None
        config.errorlog = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.app(), config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        self._started.wait(30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        if self._sock is not None:
            self._sock.close()


class EarlyAnswerServer:
    """Answers the first request that has a body with ``status`` as soon as the body starts,
    then holds the connection open without reading more, as the appliance's feed does when it
    refuses a package part-way (Hypercorn keeps such a connection open while the request's
    handler winds down). Plain TLS sockets in a thread, with the stub's certificate."""

    def __init__(self, stub: StubAppliance, status: int | None, message: str = "") -> None:
        """``status`` None: close the connection without any answer instead."""
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(stub.cert_file, stub.key_file)
        self.thumbprint = stub.thumbprint
        self.status = status
        body = json.dumps({"error": {"code": "conflict", "message": message}}).encode()
        self.response = (
            f"HTTP/1.1 {status} Refused\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.release.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    received = b""
                    while b"\r\n\r\n" not in received:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break  # the pinning handshake: it sends nothing
                        received += chunk
                    if b"\r\n\r\n" in received:
                        if self.status is None:
                            continue  # close at once, the body unread
                        tls.sendall(self.response)
                        self.release.wait(60)  # read nothing more, close nothing
            except (OSError, ssl.SSLError):
                continue

    def __enter__(self) -> EarlyAnswerServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
        self.sock.close()
        self.thread.join(30)
