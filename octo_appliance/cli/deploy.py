"""``octo-appliance deploy``: deploy a release to an environment, and with ``--wait`` follow it.

With ``--wait`` the task log is printed live, each manual intervention or guided-failure
question is announced with the command that answers it, and the exit code is the result:
0 when the deployment succeeded, 1 when it failed, was canceled or timed out.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output
from octo_appliance.cli.release import find_release
from octo_appliance.cli.task import follow, interrupted, outcome_lines
from octo_appliance.exceptions import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="deploy a release to an environment (--wait: follow it to the end)",
        description="Deploy a release of a project to an environment. With --wait, print the "
        "task log live and exit 0 if the deployment succeeded, 1 if it failed, was canceled "
        "or timed out.",
    )
    parser.add_argument("--project", required=True, metavar="PROJECT", help="project id or name")
    parser.add_argument(
        "--release",
        required=True,
        metavar="VERSION",
        help="release version or id; 'latest' for the newest release",
    )
    parser.add_argument(
        "--environment", required=True, metavar="ENVIRONMENT", help="environment id or name"
    )
    parser.add_argument(
        "--skip-step", action="append", default=[], metavar="STEP", help="skip this step"
    )
    parser.add_argument(
        "--target", action="append", default=[], metavar="TARGET", help="only these targets"
    )
    parser.add_argument(
        "--exclude-target",
        action="append",
        default=[],
        metavar="TARGET",
        help="leave this target out",
    )
    parser.add_argument(
        "--guided-failure",
        action="store_true",
        help="when a step fails on a target, wait for a person to retry, skip or abort",
    )
    parser.add_argument(
        "--force", action="store_true", help="redeploy everything even where nothing changed"
    )
    parser.add_argument(
        "--queue-time",
        metavar="WHEN",
        help="start no earlier than this ISO 8601 time (without offset: UTC)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="follow the deployment live until it ends"
    )
    add_client_options(parser)
    parser.set_defaults(handler=run)


def queue_time(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return datetime.datetime.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ConfigError(
            f"--queue-time {text!r} is not an ISO 8601 time",
            hint="e.g. --queue-time 2030-01-31T22:00:00Z",
        ) from None


def run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "environment": args.environment,
        "skip_steps": args.skip_step,
        "targets": args.target,
        "exclude_targets": args.exclude_target,
        "guided_failure": args.guided_failure,
        "force": args.force,
    }
    when = queue_time(args.queue_time)
    if when is not None:
        body["queue_time"] = when
    out = Output(args.json)
    with open_client(args) as client:
        release = find_release(client, args.project, args.release)
        deployment = client.post("/deployments", {"release": release["id"], **body})
        task_id = deployment["task_id"]
        header = (
            f"Deploying {args.project} {deployment['release_version']} to {args.environment}: "
            f"deployment {deployment['id']}, task {task_id}."
        )
        if not args.wait:
            follow_hint = f"Follow it with: octo-appliance task log {task_id} --follow"
            out.result(deployment, [header, follow_hint])
            return 0
        out.line(header)
        try:
            end = follow(client, out, task_id)
        except KeyboardInterrupt:
            return interrupted(out, task_id, f"deployment {deployment['id']}")
        task = client.get(f"/tasks/{task_id}")
        final = client.get(f"/deployments/{deployment['id']}")
    state = final.get("state") or end.state
    out.result({"deployment": final, "task": task}, outcome_lines(task))
    return 0 if state == "success" else 1
