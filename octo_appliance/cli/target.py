"""``octo-appliance target list|show|health-check|delete``: the machines deployments run on.

Agents add themselves as targets (``octo-agent register``, docs/agent.md). ``health-check``
asks the appliance to check one now and, unless ``--no-wait``, follows that task to its end
(exit 0 when the target answered healthy).
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, stamp
from octo_appliance.cli.resources import (
    Filter,
    Names,
    Resource,
    add_delete,
    add_list,
    add_show,
    joined,
)
from octo_appliance.cli.task import started


def _environments(t: dict[str, Any]) -> list[str]:
    return [e["name"] for e in t["environments"]]


def _detail(t: dict[str, Any], _: Names) -> list[str]:
    return [
        f"{t['name']} ({t['id']}){' [disabled]' if t['disabled'] else ''}",
        f"environments: {joined(_environments(t))}",
        f"roles: {joined(t['roles'])}",
        f"communication: {t['communication_style']} {t['uri']}".rstrip(),
        f"thumbprint: {t['thumbprint'] or '-'}",
        f"health: {t['health_status']}, agent {t['agent_version'] or '-'}, "
        f"last seen {stamp(t['last_seen']) or 'never'}",
        f"agent update: {t.get('update', 'none')}",
    ]


TARGETS = Resource(
    noun="target",
    path="/targets",
    headers=["NAME", "ENVIRONMENTS", "ROLES", "STYLE", "HEALTH", "UPDATE", "ID"],
    row=lambda t, _: [
        t["name"],
        joined(_environments(t)),
        joined(t["roles"]),
        t["communication_style"],
        t["health_status"] + (" (disabled)" if t["disabled"] else ""),
        t.get("update", "none"),
        t["id"],
    ],
    detail=_detail,
    filters=[
        Filter("--environment", "environment", "only targets in this environment (id or name)"),
        Filter("--role", "role", "only targets with this role"),
    ],
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "target", help="list, show, health-check or delete targets (agents register themselves)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_list(actions, TARGETS)
    add_show(actions, TARGETS)
    check = actions.add_parser(
        "health-check",
        help="check a target's health now",
        description="Queue a health check of the target and follow it: exit 0 when it "
        "answered healthy, 1 otherwise.",
    )
    check.add_argument("ref", metavar="REF", help="target id or name")
    check.add_argument(
        "--no-wait", action="store_true", help="print the task id and return at once"
    )
    add_client_options(check)
    check.set_defaults(handler=run_health_check)
    add_delete(
        actions, TARGETS, "The agent keeps running; 'octo-agent deregister' also forgets it."
    )


def run_health_check(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        target = client.get(TARGETS.item_path(args.ref))
        queued = client.post(f"{TARGETS.item_path(target['id'])}/health-check")
        header = f"Checking the health of {target['name']}: task {queued['task_id']}."
        what = f"the health check of {target['name']}"
        return started(client, out, queued, header, what, wait=not args.no_wait)
