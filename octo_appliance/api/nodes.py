"""``GET /api/v1/nodes`` and ``POST /api/v1/nodes/{ref}/drain|undrain``: the appliance nodes.

Every node that ever started on this database has a row (octo_appliance/nodes/): alive,
stopped or dead, with its address, version, heartbeat, task cap, tasks running, the master-key
id it seals with, and the plugins another live node has that it lacks. A draining node takes no
new tasks (from its next claim), finishes what it runs and keeps serving the API.
"""

from __future__ import annotations

from typing import Any

from octo_appliance.api.context import RequestContext
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import Out
from octo_appliance.db.base import iso
from octo_appliance.db.nodes import ALIVE, Node
from octo_appliance.exceptions import NotFound
from octo_appliance.nodes import registry
from octo_appliance.security.permissions import Permission

router = Router("system")


class NodeOut(Out):
    name: str
    #: HTTPS host:port, and the polling listener's
    address: str
    polling_address: str
    version: str
    #: alive, stopped (an orderly stop) or dead (declared so by another node)
    state: str
    #: alive but its heartbeat is older than node_dead_after (about to be declared dead)
    stale: bool
    reason: str
    started_at: str | None
    heartbeat_at: str | None
    heartbeat_age_seconds: float
    task_cap: int
    running: int
    draining: bool
    key_id: str
    plugins: list[str]
    missing_plugins: list[str]
    #: the node that answered this request
    this_node: bool


class NodeList(Out):
    items: list[NodeOut]
    total: int


def _state(ctx: RequestContext) -> tuple[list[Node], Any, dict[str, list[str]]]:
    """Every node row, the database's clock, and the plugins each live node lacks."""
    rows = registry.list_nodes()
    now = registry.db_now(ctx.appliance.db)
    dead_after = float(ctx.appliance.config.node_dead_after_seconds)
    return rows, now, registry.missing_plugins(rows, now, dead_after)


def _out(ctx: RequestContext, row: Node, now: Any, missing: dict[str, list[str]]) -> dict[str, Any]:
    dead_after = float(ctx.appliance.config.node_dead_after_seconds)
    age = max((now - row.heartbeat_at).total_seconds(), 0.0)
    here = ctx.appliance.node
    return {
        "name": row.name,
        "address": row.address,
        "polling_address": row.polling_address,
        "version": row.version,
        "state": row.state,
        "stale": row.state == ALIVE and age >= dead_after,
        "reason": row.reason,
        "started_at": iso(row.started_at),
        "heartbeat_at": iso(row.heartbeat_at),
        "heartbeat_age_seconds": round(age, 1),
        "task_cap": row.task_cap,
        "running": row.running,
        "draining": bool(row.draining),
        "key_id": row.key_id,
        "plugins": list(row.plugins),
        "missing_plugins": missing.get(row.name, []),
        "this_node": here is not None and here.name == row.name,
    }


@router.get(
    "/nodes",
    summary="The appliance nodes on this database: alive, stopped or dead, heartbeat, "
    "draining, tasks running, key id, missing plugins",
    response=NodeList,
)
def list_nodes(ctx: RequestContext) -> dict[str, Any]:
    ctx.require(Permission.SYSTEM_VIEW)
    rows, now, missing = _state(ctx)
    items = [_out(ctx, row, now, missing) for row in rows]
    return {"items": items, "total": len(items)}


def _set_draining(ctx: RequestContext, name: str, draining: bool) -> dict[str, Any]:
    ctx.require(Permission.SYSTEM_EDIT)
    row = registry.set_draining(name, draining)
    if row is None:
        known = ", ".join(r.name for r in registry.list_nodes()) or "none"
        raise NotFound(f"no appliance node named '{name}'", hint=f"known nodes: {known}")
    ctx.audit("drain" if draining else "undrain", "node", row.id, row.name)
    _rows, now, missing = _state(ctx)
    return _out(ctx, row, now, missing)


@router.post(
    "/nodes/{ref}/drain",
    summary="Drain a node: it takes no new tasks, finishes what it runs, keeps serving the API",
    response=NodeOut,
    errors=(404,),
)
def drain_node(ctx: RequestContext, ref: str) -> dict[str, Any]:
    return _set_draining(ctx, ref, True)


@router.post(
    "/nodes/{ref}/undrain",
    summary="Let a drained node take tasks again",
    response=NodeOut,
    errors=(404,),
)
def undrain_node(ctx: RequestContext, ref: str) -> dict[str, Any]:
    return _set_draining(ctx, ref, False)
