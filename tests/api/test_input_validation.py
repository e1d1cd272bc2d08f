"""Hostile input gets a 4xx naming what is wrong, never a 500, on both backends.

Control characters in single-line text, NUL anywhere (PostgreSQL refuses it outright, so before
this it was a 500 even before authentication), unpaired surrogates, absurd nesting, booleans
posing as integers, and a 405 that says which methods the path takes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.requests import Request

from octo_appliance.api import API_PREFIX, all_endpoints
from octo_appliance.api.openapi import build_openapi
from octo_appliance.api.routing import read_body
from octo_appliance.api.task_stream import resume_point
from octo_appliance.exceptions import BadRequest
from tests.api.helpers import login, session_client

CONTROL = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9b"]


def _field_errors(response: Any) -> dict[str, str]:
    return {d["field"]: d["message"] for d in response.json()["error"]["details"]}


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
def test_control_characters_in_names_are_a_422_naming_the_field(api, char):
    response = api.post("/environments", json={"name": f"Dev{char}Ops"})
    assert response.status_code == 422, response.text
    assert "name" in _field_errors(response)
    created = api.post("/environments", json={"name": "Dev"}).json()
    renamed = api.put(f"/environments/{created['id']}", json={"name": f"a{char}b"})
    assert renamed.status_code == 422
    role = api.post(
        "/targets", json={"name": "web", "environments": ["Dev"], "roles": [f"web{char}x"]}
    )
    assert role.status_code == 422
    assert "roles.0" in _field_errors(role)
    assert api.get("/environments").json()["total"] == 1


def test_unpaired_surrogate_is_a_422_naming_the_field(api):
    body = b'{"name": "Dev", "description": "bad \\udc00 text"}'
    response = api.post("/environments", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "description" in _field_errors(response)


def test_multi_line_fields_take_newlines_and_tabs_but_never_nul(api):
    ok = api.post("/environments", json={"name": "Dev", "description": "line 1\n\tline 2"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["description"] == "line 1\n\tline 2"
    nul = api.post("/environments", json={"name": "Test", "description": "a\x00b"})
    assert nul.status_code == 422
    assert "description" in _field_errors(nul)

    api.post("/projects", json={"name": "Web"})
    variables = {"variables": [{"name": "Greeting", "value": "hello\nworld\t!"}]}
    assert api.put("/projects/Web/variables", json=variables).status_code == 200
    variables["variables"][0]["value"] = "hello\x00world"
    refused = api.put("/projects/Web/variables", json=variables)
    assert refused.status_code == 422
    assert "variables.0.value" in _field_errors(refused)

    script = {"syntax": "bash", "body": "echo one\x00two", "targets": ["nowhere"]}
    refused = api.post("/scripts", json=script)
    assert refused.status_code == 422
    assert "body" in _field_errors(refused)

    # free-form step properties: NUL in a nested value or key is refused too
    step = {"name": "Run", "type": "run-script", "properties": {"script": {"x\x00": "y"}}}
    refused = api.put("/projects/Web/process", json={"steps": [step]})
    assert refused.status_code == 422
    assert "steps.0.properties.script" in _field_errors(refused)


def test_nul_is_never_a_500_even_before_authentication(octo):
    anonymous = session_client(octo)
    bad_login = login(anonymous, "ad\x00min", "whatever-password")
    assert bad_login.status_code == 422
    assert "username" in _field_errors(bad_login)
    assert login(anonymous, "admin", "pass\x00word").status_code == 422
    assert anonymous.get("/api/v1/environments?name=%00").status_code == 401
    assert anonymous.get("/api/v1/environments/%00").status_code == 401

    api = octo.api
    query = api.get("/environments?name=%00")
    assert query.status_code == 400
    assert "name" in _field_errors(query)
    assert api.get("/audit?user=a%00b").status_code == 400
    for path in ("/environments/%00", "/projects/a%00b/variables", "/users/%1b", "/tasks/%00"):
        response = api.get(path)
        assert response.status_code == 400, (path, response.text)
    assert api.delete("/environments/%00").status_code == 400


def test_json_nested_100000_deep_is_a_400(api):
    deep = b"[" * 100_000 + b"]" * 100_000
    response = api.post("/environments", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "nested" in response.json()["error"]["message"]
    objects = b'{"name": "Dev", "description": "x", "extra": ' + b'{"a": ' * 40 + b"1" + b"}" * 41
    response = api.post(
        "/environments", content=objects, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("value", [True, False, "5", 5.5, None, [1]])
def test_booleans_strings_and_fractions_are_not_integers(api, value):
    response = api.post("/environments", json={"name": "Dev", "sort_order": value})
    assert response.status_code == 422, response.text
    assert "sort_order" in _field_errors(response)
    assert api.get("/environments").json()["total"] == 0


def test_proper_numbers_still_work(api):
    assert api.post("/environments", json={"name": "A", "sort_order": 3}).status_code == 201
    # JSON (and JSON Schema) count 4.0 as an integer
    created = api.post("/environments", json={"name": "B", "sort_order": 4.0})
    assert created.status_code == 201
    assert created.json()["sort_order"] == 4
    # query strings stay text that reads as a number
    assert api.get("/environments?take=1&skip=0").json()["total"] == 2
    flag = api.post("/environments", json={"name": "C", "sort_order": "1"})
    assert flag.status_code == 422


def test_405_names_the_allowed_methods_on_every_path(api):
    spec = build_openapi(all_endpoints(), API_PREFIX)
    templates = {
        re.compile("^" + re.sub(r"{[^}]+}", "[^/]+", path) + "$"): ops
        for path, ops in spec["paths"].items()
    }
    for path in spec["paths"]:
        concrete = re.sub(r"{[^}]+}", "x", path)
        # /users/me is also /users/{ref}: every route the path reaches counts
        declared = {m.upper() for t, ops in templates.items() if t.match(concrete) for m in ops}
        if "GET" in declared:
            declared.add("HEAD")
        response = api.request("PATCH", concrete.removeprefix(API_PREFIX))
        assert response.status_code == 405, (path, response.status_code)
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed == declared, path
        assert response.json()["error"]["code"] == "method_not_allowed"


def _request_strings(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every string schema a request can carry (path, query, body), with where it is."""
    components = spec["components"]["schemas"]
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(schema: dict[str, Any], where: str, seen: frozenset[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            if name not in seen:
                walk(components[name], f"{where}<{name}>", seen | {name})
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, where, seen)
        if schema.get("type") == "string" and not {"enum", "const", "format"} & set(schema):
            found.append((where, schema))
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}", seen)
        for key in ("items", "additionalProperties", "propertyNames"):
            if isinstance(schema.get(key), dict):
                walk(schema[key], f"{where}[{key}]", seen)
        assert "patternProperties" not in schema, f"{where}: key patterns must be propertyNames"

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                walk(parameter["schema"], f"{label} {parameter['name']}", frozenset())
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                walk(body["schema"], f"{label} body", frozenset())
    return found


MULTI_LINE = re.compile(
    r"\.(description|notes|body|value|certificate|password|current_password|new_password"
    r"|private_key)$"
    r"|\.variables\[additionalProperties\]$|JsonValue"
)


def test_the_document_says_which_text_may_hold_control_characters():
    """Every request string has a pattern; only named multi-line fields allow line breaks, and
    none allows NUL. A new plain ``str`` field in a request model fails here."""
    strings = _request_strings(build_openapi(all_endpoints(), API_PREFIX))
    assert len(strings) > 100
    for where, schema in strings:
        assert "pattern" in schema, f"{where} takes any text: use Line, Text or name_field"
        pattern = re.compile(schema["pattern"])
        assert not pattern.search("a\x00b"), where
        if not MULTI_LINE.search(where):
            for char in ("\x1b", "\n", "\x7f", "\x9b"):
                assert not pattern.search(f"a{char}b"), (where, char)


async def test_digits_that_are_not_ascii_in_headers_are_not_a_500():
    """``"²".isdigit()`` is true but ``int("²")`` fails: a header read as a number is a 400
    (Last-Event-ID) or ignored (Content-Length, which the server checks as it reads)."""
    with pytest.raises(BadRequest):
        resume_point("\u00b2", None)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"\xb2")]}
    assert await read_body(Request(scope, receive), 100) == b"{}"
