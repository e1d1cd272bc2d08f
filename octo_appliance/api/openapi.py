"""Build the OpenAPI 3.1 document from the endpoint declarations and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from octo_appliance import __version__
from octo_appliance.api.routing import Endpoint
from octo_appliance.api.schemas import (
    JSON_VALUE_MARK,
    JSON_VALUE_SCHEMA,
    LINE_PATTERN,
    ErrorResponse,
)

_ERROR_TEXT = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    422: "Schema or rule violation",
    429: "Too many attempts: wait the Retry-After seconds",
}
_PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _link_json_values(schema: Any) -> Any:
    """Replace each ``FreeJson`` mark with a reference to the ``JsonValue`` component."""
    if isinstance(schema, dict):
        if schema.get(JSON_VALUE_MARK):
            return {"$ref": "#/components/schemas/JsonValue"}
        return {key: _link_json_values(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_link_json_values(item) for item in schema]
    return schema


def _schema_ref(schema_source: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(schema_source).json_schema(ref_template="#/components/schemas/{model}")
    schema = dict(_link_json_values(schema))
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    if isinstance(schema_source, type) and issubclass(schema_source, BaseModel):
        components[schema_source.__name__] = schema
        return {"$ref": f"#/components/schemas/{schema_source.__name__}"}
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    params = []
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k not in {"title", "description"}},
        }
        if "description" in prop:
            param["description"] = prop["description"]
        if prop.get("type") == "array" or "array" in str(prop.get("anyOf", "")):
            param["explode"] = True
        params.append(param)
    return params


def build_openapi(endpoints: list[Endpoint], prefix: str) -> dict[str, Any]:
    components: dict[str, Any] = {}
    _schema_ref(ErrorResponse, components)
    components["JsonValue"] = JSON_VALUE_SCHEMA
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        path = _PATH_PARAM.sub(r"{\1}", prefix + endpoint.path)
        operation: dict[str, Any] = {
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "responses": {},
        }
        if endpoint.description:
            operation["description"] = endpoint.description
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                # checked in routing (_check_path) for every path parameter
                "schema": {"type": "string", "pattern": LINE_PATTERN},
            }
            for name in _PATH_PARAM.findall(endpoint.path)
        ]
        if endpoint.query is not None:
            parameters.extend(_query_parameters(endpoint.query))
        if parameters:
            operation["parameters"] = parameters
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(endpoint.body, components)}},
            }
        if endpoint.request_content is not None:
            operation["requestBody"] = {"required": True, "content": endpoint.request_content}
        success: dict[str, Any] = {"description": "Success"}
        if endpoint.response is not None:
            success["content"] = {
                "application/json": {"schema": _schema_ref(endpoint.response, components)}
            }
        if endpoint.response_content is not None:
            success["content"] = endpoint.response_content
        operation["responses"][str(endpoint.status_code)] = success
        codes = set(endpoint.errors)
        if endpoint.auth:
            codes |= {401, 403}
        if endpoint.body is not None or endpoint.request_content is not None:
            codes |= {400, 413, 422}
        if endpoint.query is not None or endpoint.path != _PATH_PARAM.sub("", endpoint.path):
            codes |= {400, 404}
        for code in sorted(codes):
            operation["responses"][str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                },
            }
            if code == 429:
                operation["responses"]["429"]["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before trying again.",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
        if endpoint.auth:
            operation["security"] = [{"apiKey": []}, {"session": []}]
        paths.setdefault(path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Octo Appliance API",
            "version": __version__,
            "description": "REST API of the Octo Appliance. Generated from the code.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "session": {"type": "apiKey", "in": "cookie", "name": "octo_session"},
            },
        },
    }
