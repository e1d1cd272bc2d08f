"""``octo-appliance node list|drain|undrain``: the appliance nodes sharing this database.

A client command like the others (it talks to any node's API with an API key). ``drain``
stops a node taking new tasks (it finishes what it runs and keeps serving the API), e.g.
before taking it down; ``undrain`` lets it take tasks again. docs/ha.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, table
from octo_appliance.cli.resources import segment

HEADERS = ["NAME", "STATE", "ADDRESS", "VERSION", "HEARTBEAT", "TASKS", "DRAINING", "NOTES"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("node", help="list the appliance nodes, or drain or undrain one")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the nodes: state, heartbeat, tasks, draining")
    add_client_options(listing)
    listing.set_defaults(handler=run_list)
    for action, text in (
        ("drain", "take no new tasks on node NAME (running ones finish)"),
        ("undrain", "let node NAME take tasks again"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name", metavar="NAME", help="the node's name (node list)")
        add_client_options(sub)
        sub.set_defaults(handler=run_drain, drain=action == "drain")


def _state(node: dict[str, Any]) -> str:
    return "alive (stale)" if node["stale"] else node["state"]


def _notes(node: dict[str, Any]) -> str:
    notes = []
    if node["this_node"]:
        notes.append("answered this request")
    if node["missing_plugins"]:
        notes.append("missing plugins: " + ", ".join(node["missing_plugins"]))
    if node["state"] != "alive" and node["reason"]:
        notes.append(node["reason"])
    return "; ".join(notes)


def run_list(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        page = client.get("/nodes")
    rows = [
        [
            n["name"],
            _state(n),
            n["address"],
            n["version"],
            f"{n['heartbeat_age_seconds']:.0f} s ago",
            f"{n['running']}/{n['task_cap']}",
            "yes" if n["draining"] else "no",
            _notes(n),
        ]
        for n in page["items"]
    ]
    out.result(page, table(rows, HEADERS) if rows else ["No nodes."])
    return 0


def run_drain(args: argparse.Namespace) -> int:
    out = Output(args.json)
    action = "drain" if args.drain else "undrain"
    with open_client(args) as client:
        node = client.post(f"/nodes/{segment(args.name)}/{action}", {})
    if args.drain:
        line = f"Node {node['name']} drains: it takes no new tasks ({node['running']} running)."
    else:
        line = f"Node {node['name']} takes tasks again."
    out.result(node, [line])
    return 0
