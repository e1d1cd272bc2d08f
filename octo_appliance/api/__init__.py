"""The REST API under ``/api/v1``: one module per resource, each with a ``router``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from octo_appliance.api.response_cache import attach_response_cache
from octo_appliance.api.routing import Endpoint, Router, build_route

if TYPE_CHECKING:
    from octo_appliance.appliance import Appliance

API_PREFIX = "/api/v1"

RESOURCE_MODULES: tuple[str, ...] = (
    "health",
    "session",
    "environments",
    "targets",
    "transports",
    "projects",
    "variables",
    "lifecycles",
    "library_sets",
    "process",
    "step_types",
    "releases",
    "deployments",
    "interruptions",
    "dashboard",
    "users",
    "teams",
    "api_keys",
    "registration_tokens",
    "audit",
    "tasks",
    "agents",
    "agent_updates",
    "builds",
    "bootstrap",
    "scripts",
    "packages",
    "meta",
    "nodes",
)


def routers() -> list[Router]:
    return [importlib.import_module(f"{__name__}.{name}").router for name in RESOURCE_MODULES]


def all_endpoints() -> list[Endpoint]:
    return [endpoint for router in routers() for endpoint in router.endpoints]


def build_routes(appliance: Appliance) -> list[BaseRoute]:
    """The API's routes, and the agent bootstrap script beside them (``/bootstrap/agent.sh``)."""
    from octo_appliance.api.bootstrap import bootstrap_routes

    responses = attach_response_cache(appliance)
    api = [build_route(endpoint, appliance, API_PREFIX, responses) for endpoint in all_endpoints()]
    return [*api, *bootstrap_routes(appliance)]
