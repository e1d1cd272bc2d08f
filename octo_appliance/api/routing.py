"""Declarative endpoints: one decorator carries the method, path, permission and models.

The same declarations build the Starlette routes and the OpenAPI document, so the document
cannot drift from the code. A handler is a plain (synchronous) function: the wrapper reads the
body on the event loop, then authenticates, validates and runs the handler in one worker-thread
hop, because peewee is synchronous and must stay off the loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from octo_appliance.api.context import RequestContext
from octo_appliance.db.connection import write_transaction
from octo_appliance.exceptions import BadRequest, PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

Handler = Callable[..., Any]

JSON_MEDIA_TYPE = "application/json"


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: bool = True
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status_code: int = 200
    errors: tuple[int, ...] = ()
    #: True for handlers that return a Starlette Response themselves (cookies, files)
    raw_response: bool = False
    #: False for handlers that touch neither the database nor the disk: they run on the event
    #: loop, skipping the worker-thread hop (health, the OpenAPI document)
    blocking: bool = True
    description: str = ""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class Router:
    """Collects endpoints of one resource module."""

    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: bool = True,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status_code: int = 200,
        errors: tuple[int, ...] = (),
        raw_response: bool = False,
        blocking: bool = True,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    tag=self.tag,
                    auth=auth,
                    body=body,
                    query=query,
                    response=response,
                    status_code=status_code,
                    errors=errors,
                    raw_response=raw_response,
                    blocking=blocking,
                    description=(handler.__doc__ or "").strip(),
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"field": "a.b", "message": ...}]`` without echoing input."""
    details = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"])
        details.append({"field": location or None, "message": error["msg"]})
    return details


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body on the event loop, refusing more than ``limit`` bytes as they arrive."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes, model: type[BaseModel]) -> BaseModel:
    if not raw.strip():
        raise BadRequest(
            "the request needs a JSON body", hint="send Content-Type: application/json"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    try:
        # JSON escapes can smuggle in lone surrogates (\ud800), which no database, log or
        # certificate parser accepts: refuse them here rather than fail deep inside.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            "the request body holds invalid Unicode (an unpaired surrogate escape)",
            hint="send text as valid UTF-8",
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "the request body does not match the schema", details=validation_details(exc)
        ) from None


def _parse_query(request: Request, model: type[BaseModel]) -> BaseModel:
    params: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        field_info = model.model_fields.get(key)
        is_list = field_info is not None and "list" in str(field_info.annotation)
        params[key] = values if is_list else values[-1]
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise BadRequest(
            "the query parameters are not valid", details=validation_details(exc)
        ) from None


def json_response(payload: Any, status_code: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status_code, media_type=JSON_MEDIA_TYPE)


def build_route(endpoint: Endpoint, appliance: Appliance, prefix: str) -> Route:
    """Wrap one endpoint into a Starlette route."""
    from octo_appliance.api.auth import authenticate

    limit = appliance.config.max_body_bytes

    async def in_worker(fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=appliance.worker_limiter())

    async def asgi_endpoint(request: Request) -> Response:
        raw_body = await _read_body(request, limit) if endpoint.body else b""
        path_params = {k: str(v) for k, v in request.path_params.items()}

        def run() -> Any:
            # Who is asking comes first: an anonymous caller learns nothing from validation.
            principal = authenticate(appliance, request) if endpoint.auth else None
            ctx = RequestContext(appliance, principal, path_params)
            kwargs: dict[str, Any] = dict(path_params)
            if endpoint.body is not None:
                kwargs["body"] = _parse_json(raw_body, endpoint.body)
            if endpoint.query is not None:
                kwargs["query"] = _parse_query(request, endpoint.query)
            if endpoint.raw_response:
                kwargs["request"] = request
            if endpoint.method == "GET":
                return endpoint.handler(ctx, **kwargs)
            with write_transaction(appliance.db):  # the change and its audit land together
                result = endpoint.handler(ctx, **kwargs)
            ctx.run_after_commit()
            return result

        result = await in_worker(run) if endpoint.blocking else run()
        if isinstance(result, Response):
            return result
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        return json_response(result, endpoint.status_code)

    asgi_endpoint.__name__ = endpoint.operation_id
    return Route(prefix + endpoint.path, asgi_endpoint, methods=[endpoint.method])
