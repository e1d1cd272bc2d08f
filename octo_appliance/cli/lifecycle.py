"""``octo-appliance lifecycle list|create|show``: the phases releases are promoted through.

``create`` takes one ``--phase NAME=ENV[,ENV...]`` per phase, in order: a release must have
reached every environment of a phase (or ``min=N`` of them) before it may go to the next one.
A phase marked ``auto`` is deployed to as soon as the one before it is complete.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, stamp
from octo_appliance.cli.resources import Names, Resource, add_list, add_show, created
from octo_appliance.exceptions import ConfigError

PHASE_FORMAT = "NAME=ENV[,ENV...][;min=N][;auto]"


def _phase_text(phase: dict[str, Any], names: Names) -> str:
    envs = ", ".join(names.environments(phase["environments"]))
    need = phase["minimum_environments"] or "all"
    return f"{phase['name']}: {envs} (needs {need}{', automatic' if phase['automatic'] else ''})"


def _detail(item: dict[str, Any], names: Names) -> list[str]:
    lines = [f"{item['name']} ({item['id']}), created {stamp(item['created_at'])}"]
    if item["description"]:
        lines.append(item["description"])
    for index, phase in enumerate(item["phases"], 1):
        lines.append(f"  {index}. {_phase_text(phase, names)}")
    return lines


LIFECYCLES = Resource(
    noun="lifecycle",
    path="/lifecycles",
    headers=["NAME", "PHASES", "ID"],
    row=lambda item, _: [
        item["name"],
        " -> ".join(phase["name"] for phase in item["phases"]),
        item["id"],
    ],
    detail=_detail,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("lifecycle", help="list, create or show lifecycles")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_list(actions, LIFECYCLES)
    create = actions.add_parser(
        "create",
        help="create a lifecycle from its phases, in order",
        description="Create a lifecycle. Each --phase is NAME=ENV[,ENV...], optionally followed "
        "by ';min=N' (N of its environments suffice) and ';auto' (deploy to it automatically "
        "once the phase before is complete), e.g. --phase Test=Test --phase 'Prod=Prod;auto'.",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="", metavar="TEXT")
    create.add_argument(
        "--phase", action="append", required=True, metavar="PHASE", help=PHASE_FORMAT
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)
    add_show(actions, LIFECYCLES)


def phase(text: str) -> dict[str, Any]:
    """One ``--phase`` as the API's phase object."""
    head, *flags = [part.strip() for part in text.split(";")]
    name, _, envs = head.partition("=")
    result: dict[str, Any] = {
        "name": name.strip(),
        "environments": [env.strip() for env in envs.split(",") if env.strip()],
        "minimum_environments": 0,
        "automatic": False,
    }
    for flag in flags:
        key, _, value = flag.partition("=")
        if key == "auto" and not value:
            result["automatic"] = True
        elif key == "min" and value.isdigit():
            result["minimum_environments"] = int(value)
        else:
            result["name"] = ""  # reported below
    if not result["name"] or not result["environments"]:
        raise ConfigError(
            f"--phase {text!r} is not {PHASE_FORMAT}", hint="e.g. --phase Test=Test,Staging;min=1"
        )
    return result


def run_create(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "description": args.description,
        "phases": [phase(text) for text in args.phase],
    }
    out = Output(args.json)
    with open_client(args) as client:
        item = client.post("/lifecycles", body)
        names = Names(client)
        lines = [f"  {i}. {_phase_text(p, names)}" for i, p in enumerate(item["phases"], 1)]
    return created(out, LIFECYCLES, item, *lines)
