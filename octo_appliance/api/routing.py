"""Declarative endpoints: one decorator carries the method, path, permission and models.

The same declarations build the Starlette routes and the OpenAPI document, so the document
cannot drift from the code. A handler is a plain (synchronous) function: the wrapper reads the
body on the event loop, then authenticates, validates and runs the handler in one worker-thread
hop, because peewee is synchronous and must stay off the loop.

A ``streaming`` endpoint (an upload of any size) is the exception: the wrapper authenticates
and parses the query in a worker thread without touching the body, then awaits the handler, an
``async`` function given the ``request``, on the event loop. It reads the body as it arrives and
moves disk, crypto and database work to threads itself (:func:`in_worker`,
:func:`write_in_worker`), so nothing is buffered whole and an unauthorised caller is refused
before a byte of the body is read.
"""

from __future__ import annotations

import json
import re
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
from octo_appliance.api.schemas import ListQuery, Page
from octo_appliance.db.connection import write_transaction
from octo_appliance.exceptions import BadRequest, PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:
    from octo_appliance.api.response_cache import ResponseCache
    from octo_appliance.appliance import Appliance
    from octo_appliance.security.permissions import Principal

Handler = Callable[..., Any]

JSON_MEDIA_TYPE = "application/json"
#: deeper bodies are refused (400) before the schema: no model is that deep, and a parser or
#: serialiser further on must never run out of stack
MAX_JSON_DEPTH = 32
MAX_REPORTED_PROBLEMS = 50
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")

BODY_MISMATCH = "the request body does not match the schema"
QUERY_MISMATCH = "the query parameters are not valid"
PATH_MISMATCH = "the path parameters are not valid"
#: the messages of the API's own schema checks: a request the OpenAPI document calls valid
#: must never get one (``tests/api/test_schemathesis.py`` holds the API to that)
SCHEMA_REJECTIONS = frozenset({BODY_MISMATCH, QUERY_MISMATCH, PATH_MISMATCH})


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
    #: True for ``async`` handlers that read the request body themselves (see the module doc)
    streaming: bool = False
    #: keep answers per caller until the next API write (``response_cache``): only for reads
    #: of data that nothing but API writes changes
    cache: bool = False
    #: OpenAPI ``content`` of a body the handler reads itself, and of a non-JSON response
    request_content: dict[str, Any] | None = None
    response_content: dict[str, Any] | None = None
    description: str = ""
    #: True where a registration token is taken besides an API key (registering a target)
    registration_token: bool = False

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
        streaming: bool = False,
        cache: bool = False,
        request_content: dict[str, Any] | None = None,
        response_content: dict[str, Any] | None = None,
        registration_token: bool = False,
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
                    streaming=streaming,
                    cache=cache and method == "GET",
                    request_content=request_content,
                    response_content=response_content,
                    description=(handler.__doc__ or "").strip(),
                    registration_token=registration_token,
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def listing(
        self, path: str, summary: str, item: Any, *, query: type[BaseModel] = ListQuery, **kw: Any
    ) -> Callable[[Handler], Handler]:
        """A collection, a page at a time: GET ``path`` with ``query`` (paging and a name
        filter unless a collection says otherwise), answering a ``Page`` of ``item``."""
        return self.route("GET", path, summary=summary, query=query, response=Page[item], **kw)

    def create(
        self, path: str, summary: str, body: type[BaseModel], response: Any, **kw: Any
    ) -> Callable[[Handler], Handler]:
        """A resource created in the collection ``path`` (POST): 201 with the new resource,
        409 when its name is taken."""
        return self.route(
            "POST",
            path,
            summary=summary,
            body=body,
            response=response,
            status_code=201,
            errors=(409,),
            **kw,
        )

    def update(
        self, path: str, summary: str, body: type[BaseModel], response: Any, **kw: Any
    ) -> Callable[[Handler], Handler]:
        """A resource changed in place (PUT ``path``): the changed resource, 409 when a new
        name is taken."""
        return self.route(
            "PUT", path, summary=summary, body=body, response=response, errors=(409,), **kw
        )

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


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body on the event loop, refusing more than ``limit`` bytes as they arrive."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _text_problem(text: str) -> str | None:
    """Why a string of a request cannot be taken whatever the field (None: it can)."""
    if "\x00" in text:
        return "must not contain the NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "holds an unpaired surrogate escape (invalid Unicode)"
    return None


def _check_json(data: Any) -> None:
    """Refuse NUL and unpaired surrogates anywhere in a parsed body, keys of free-form objects
    included, and nesting deeper than :data:`MAX_JSON_DEPTH`, naming the field; turn numbers
    without a fraction (``5.0``) into integers, as JSON Schema counts them.

    No database, log or certificate parser takes such text (PostgreSQL refuses NUL outright),
    so it is refused here, before any field's own schema runs. Iterative on purpose: a deeply
    nested body must not exhaust the interpreter's stack.
    """
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack and len(problems) < MAX_REPORTED_PROBLEMS:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise BadRequest(
                f"the request body is nested more than {MAX_JSON_DEPTH} levels deep",
                hint="flatten the data: no field of the API needs that depth",
            )
        if isinstance(value, str):
            if (problem := _text_problem(value)) is not None:
                problems.append({"field": ".".join(map(str, path)) or None, "message": problem})
        elif isinstance(value, dict):
            for key, item in value.items():
                if (problem := _text_problem(key)) is not None:
                    location = ".".join(map(str, path)) or None
                    problems.append({"field": location, "message": f"a key {problem}"})
                if isinstance(item, float) and item.is_integer():
                    value[key] = int(item)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, float) and item.is_integer():
                    value[index] = int(item)
                stack.append((item, (*path, index)))
    if problems:
        raise ValidationFailed(BODY_MISMATCH, details=problems)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(raw: bytes, model: type[BaseModel]) -> BaseModel:
    if not raw.strip():
        raise BadRequest(
            "the request needs a JSON body", hint="send Content-Type: application/json"
        )
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(
            "the request body is nested too deeply to read",
            hint=f"no field of the API needs more than {MAX_JSON_DEPTH} levels",
        ) from None
    _check_json(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(BODY_MISMATCH, details=validation_details(exc)) from None


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
        raise BadRequest(QUERY_MISMATCH, details=validation_details(exc)) from None


def _check_path(path_params: dict[str, str]) -> None:
    """Path parameters are single-line text (the document says so with ``LINE_PATTERN``)."""
    problems = [
        {"field": name, "message": "must not contain control characters"}
        for name, value in path_params.items()
        if CONTROL_CHARACTER.search(value)
    ]
    if problems:
        raise BadRequest(PATH_MISMATCH, details=problems)


def json_response(payload: Any, status_code: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status_code, media_type=JSON_MEDIA_TYPE)


def build_route(
    endpoint: Endpoint, appliance: Appliance, prefix: str, responses: ResponseCache
) -> Route:
    """Wrap one endpoint into a Starlette route; ``responses`` keeps its ``cache=True`` answers."""
    from octo_appliance.api.auth import authenticate, cached_principal, credential_key

    limit = appliance.config.max_body_bytes

    def login(request: Request) -> Principal:
        return authenticate(appliance, request, registration_token=endpoint.registration_token)

    async def in_worker(fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=appliance.worker_limiter())

    async def streaming_endpoint(request: Request) -> Response:
        path_params = {k: str(v) for k, v in request.path_params.items()}

        def prepare() -> tuple[RequestContext, dict[str, Any]]:
            principal = login(request) if endpoint.auth else None
            _check_path(path_params)
            kwargs: dict[str, Any] = dict(path_params)
            if endpoint.query is not None:
                kwargs["query"] = _parse_query(request, endpoint.query)
            return RequestContext(appliance, principal, path_params), kwargs

        ctx, kwargs = await in_worker(prepare)
        response: Response = await endpoint.handler(ctx, request=request, **kwargs)
        return response

    async def asgi_endpoint(request: Request) -> Response:
        cache_key = None
        if endpoint.cache and (credential := credential_key(request)) is not None:
            cache_key = (credential, request.url.path, request.url.query)
            # a credential still in the principal cache is still valid: answer on the loop
            if cached_principal(appliance, credential) is not None:
                body = responses.get(cache_key)
                if body is not None:
                    return Response(body, endpoint.status_code, media_type=JSON_MEDIA_TYPE)
        version = responses.version
        raw_body = await read_body(request, limit) if endpoint.body else b""
        path_params = {k: str(v) for k, v in request.path_params.items()}

        def run() -> Any:
            # Who is asking comes first: an anonymous caller learns nothing from validation.
            principal = login(request) if endpoint.auth else None
            _check_path(path_params)
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
            appliance.data_changed()
            ctx.run_after_commit()
            return result

        result = await in_worker(run) if endpoint.blocking else run()
        if isinstance(result, Response):
            return result
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        response = json_response(result, endpoint.status_code)
        if cache_key is not None:
            responses.put(cache_key, version, bytes(response.body))
        return response

    handler = streaming_endpoint if endpoint.streaming else asgi_endpoint
    handler.__name__ = endpoint.operation_id
    return Route(prefix + endpoint.path, handler, methods=[endpoint.method])


async def in_worker(appliance: Appliance, fn: Callable[[], Any]) -> Any:
    """Run database work for a streaming handler in a worker thread (the shared cap)."""
    return await anyio.to_thread.run_sync(fn, limiter=appliance.worker_limiter())


async def write_in_worker(ctx: RequestContext, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in one write transaction in a worker thread, as a non-streaming write is:
    the change and its audit land together; after-commit callbacks run once it committed."""

    def run() -> Any:
        with write_transaction(ctx.appliance.db):
            result = fn()
        ctx.appliance.data_changed()
        ctx.run_after_commit()
        return result

    return await in_worker(ctx.appliance, run)
