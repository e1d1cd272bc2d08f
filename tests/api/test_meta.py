"""Health, the generated OpenAPI document, the plugin list and the error shape."""

from __future__ import annotations

from octo_appliance import __version__
from octo_appliance.api import all_endpoints
from octo_appliance.hookspecs import hookimpl
from octo_appliance.steps.base import StepType


def test_health_needs_no_auth(api):
    response = api.as_key(None).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__, "database": "up"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "max-age=" in response.headers["strict-transport-security"]
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_openapi_describes_every_endpoint(api):
    document = api.as_key(None).get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    described = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    for endpoint in all_endpoints():
        path = "/api/v1" + endpoint.path
        assert (endpoint.method, path) in described, (endpoint.method, path)
    assert len(described) == len(all_endpoints())


def test_unknown_route_and_method_use_the_error_shape(api):
    missing = api.get("/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = api.request("PATCH", "/environments")
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()["error"]) >= {"code", "message", "details"}


def test_oversize_body_is_413(api):
    huge = {"name": "x", "description": "y" * 2_000_000}
    response = api.post("/environments", json=huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


class Announce(StepType):
    name = "announce"
    summary = "Say something"


class AnnouncePlugin:
    __name__ = "announce_plugin"
    OCTO_PLUGIN_API = 2

    @hookimpl
    def register_step_types(self, registry):  # type: ignore[no-untyped-def]
        registry.add(Announce)


def test_plugins_endpoint_lists_loaded_plugins(octo_appliance_factory):
    octo = octo_appliance_factory(extra_plugins=(AnnouncePlugin(),))
    listed = octo.api.get("/plugins").json()
    rows = {row["name"]: row for row in listed["items"]}
    assert rows["announce_plugin"]["step_types"] == ["announce"]
    assert listed["total"] == len(listed["items"])


def test_lone_surrogates_are_a_422_naming_the_field_not_a_500(api):
    body = b'{"name": "bad \\ud800 name"}'
    response = api.post("/environments", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "name"
    assert "Unicode" in response.json()["error"]["details"][0]["message"]
    assert api.get("/environments").json()["total"] == 0
