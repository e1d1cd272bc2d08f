"""``octo-appliance team list|create|show|add-member|grant``: who may do what.

Permissions reach people only through teams: a team has members and role grants, each grant
limited to some environments and projects or to none. ``add-member`` and ``grant`` read the
team and write back its whole member or grant list (the API replaces lists whole).
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output
from octo_appliance.cli.resources import Names, Resource, add_list, add_show, created, joined


def _grant_text(grant: dict[str, Any], names: Names) -> str:
    where = []
    if grant["environments"]:
        where.append("environments " + ", ".join(names.environments(grant["environments"])))
    if grant["projects"]:
        where.append("projects " + ", ".join(grant["projects"]))
    return str(grant["role"]) + (f" ({'; '.join(where)})" if where else " (everywhere)")


def _detail(team: dict[str, Any], names: Names) -> list[str]:
    lines = [f"{team['name']} ({team['id']}){' [built-in]' if team['builtin'] else ''}"]
    if team["description"]:
        lines.append(team["description"])
    lines.append("members: " + joined([m["username"] for m in team["members"]]))
    lines += [f"role: {_grant_text(grant, names)}" for grant in team["roles"]]
    return lines


TEAMS = Resource(
    noun="team",
    path="/teams",
    headers=["NAME", "MEMBERS", "ROLES", "ID"],
    row=lambda t, _: [
        t["name"],
        str(len(t["members"])),
        joined(sorted({g["role"] for g in t["roles"]})),
        t["id"],
    ],
    detail=_detail,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "team", help="list, create or show teams; add members, grant roles"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_list(actions, TEAMS)
    create = actions.add_parser("create", help="create a team")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="", metavar="TEXT")
    create.add_argument(
        "--member", action="append", default=[], metavar="USER", help="user id or username"
    )
    add_client_options(create)
    create.set_defaults(handler=run_create)
    add_show(actions, TEAMS)

    member = actions.add_parser("add-member", help="add a user to a team")
    member.add_argument("team", metavar="TEAM", help="team id or name")
    member.add_argument("user", metavar="USER", help="user id or username")
    add_client_options(member)
    member.set_defaults(handler=run_add_member)

    grant = actions.add_parser(
        "grant",
        help="grant a team a role",
        description="Grant the team a role (viewer, project-deployer, worker-user, "
        "administrator: 'GET /api/v1/roles' lists what each allows), everywhere or only in "
        "the environments and projects given.",
    )
    grant.add_argument("team", metavar="TEAM", help="team id or name")
    grant.add_argument("role", metavar="ROLE")
    grant.add_argument(
        "--environment", action="append", default=[], metavar="ENV", help="only here (repeatable)"
    )
    grant.add_argument(
        "--project", action="append", default=[], metavar="PROJECT", help="only for this project"
    )
    add_client_options(grant)
    grant.set_defaults(handler=run_grant)


def run_create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "description": args.description, "members": args.member}
    with open_client(args) as client:
        item = client.post("/teams", body)
    return created(Output(args.json), TEAMS, item)


def _update(args: argparse.Namespace, change: dict[str, Any], done: str) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        team = client.get(TEAMS.item_path(args.team))
        body = {key: make(team) for key, make in change.items()}
        updated = client.request("PUT", TEAMS.item_path(team["id"]), json=body)
        lines = [done.format(team=updated["name"]), *_detail(updated, Names(client))[1:]]
    out.result(updated, lines)
    return 0


def run_add_member(args: argparse.Namespace) -> int:
    def members(team: dict[str, Any]) -> list[str]:
        return [m["id"] for m in team["members"]] + [args.user]

    return _update(args, {"members": members}, f"Added {args.user} to team {{team}}.")


def run_grant(args: argparse.Namespace) -> int:
    def roles(team: dict[str, Any]) -> list[dict[str, Any]]:
        new = {"role": args.role, "environments": args.environment, "projects": args.project}
        return [*team["roles"], new]

    return _update(args, {"roles": roles}, f"Granted team {{team}} the role {args.role}.")
