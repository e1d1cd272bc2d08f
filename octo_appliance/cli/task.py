"""``octo-appliance task show|log|cancel``: follow and stop server tasks on a running appliance.

``follow`` (shared with ``deploy --wait``) prints a task's log live from the server-sent-events
stream and, when the deployment stops to ask a person, says how to answer. A task is named by
its id; a deployment id (``dep_...``) stands for the deployment's task.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from octo_appliance.cli.client import ApiClient, ClientError, LogLine, TaskEnd
from octo_appliance.cli.options import add_client_options, open_client
from octo_appliance.cli.output import Output, duration, log_line
from octo_appliance.exceptions import ConfigError

FINAL_STATES = frozenset({"success", "failed", "canceled", "timed_out"})
LOG_PAGE = 5000
CANCEL_POLL_SECONDS = 0.5
#: how a deployment announces that it waits for an answer (engine/deployments/context.py)
WAITING_PREFIX = "Waiting for a decision"
INTERRUPTED = 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "task",
        help="show, follow or cancel a server task (deployments are tasks)",
        description="Server tasks on a running appliance. TASK is a task id, or a deployment "
        "id (dep_...) for its task.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="a task's state and, for a deployment, its steps")
    show.add_argument("task", metavar="TASK", help="task id (or deployment id)")
    add_client_options(show)
    show.set_defaults(handler=run_show)

    log = actions.add_parser(
        "log",
        help="print a task's log; --follow waits for the end",
        description="Print a task's log. With --follow, print it live until the task ends and "
        "exit 0 if it succeeded, 1 if it failed, was canceled or timed out.",
    )
    log.add_argument("task", metavar="TASK", help="task id (or deployment id)")
    log.add_argument("--follow", "-f", action="store_true", help="print new lines until it ends")
    log.add_argument(
        "--since", type=int, default=0, metavar="SEQ", help="only lines after this number"
    )
    add_client_options(log)
    log.set_defaults(handler=run_log)

    cancel = actions.add_parser(
        "cancel",
        help="cancel a queued or running task",
        description="Cancel a task: a queued one at once, a running one once its work has "
        "stopped (with --wait: wait for that; exit 0 if it ended canceled).",
    )
    cancel.add_argument("task", metavar="TASK", help="task id (or deployment id)")
    cancel.add_argument("--wait", action="store_true", help="wait until the task has stopped")
    add_client_options(cancel)
    cancel.set_defaults(handler=run_cancel)


# -- shared with deploy ------------------------------------------------------------------------


def task_id_of(client: ApiClient, ref: str) -> str:
    """The task of ``ref``: itself, or the task of a deployment id."""
    if ref.startswith("dep_"):
        return str(client.get(f"/deployments/{ref}")["task_id"])
    return ref


def follow(client: ApiClient, out: Output, task_id: str, since: int = 0) -> TaskEnd:
    """Print the log live until the task ends; returns how it ended."""
    announced: set[str] = set()
    for item in client.follow_log(task_id, since, on_retry=lambda why: out.note(f"note: {why}")):
        if isinstance(item, TaskEnd):
            return item
        out.line(log_line(item.data))
        if str(item.data.get("message", "")).startswith(WAITING_PREFIX):
            announce_interruptions(client, out, task_id, announced)
    raise ClientError(f"the log stream of task {task_id} ended without its final state")


def announce_interruptions(client: ApiClient, out: Output, task_id: str, seen: set[str]) -> None:
    """Say how to answer each pending interruption of the task (once each)."""
    try:
        page = client.get("/interruptions", {"task": task_id, "pending": "true", "take": 100})
    except ClientError as exc:  # only a convenience: the log line already names it
        out.note(f"note: cannot list the task's interruptions: {exc.message}")
        return
    for item in page.get("items", []):
        if item["id"] in seen:
            continue
        seen.add(item["id"])
        options = "|".join(item.get("options") or [])
        out.note(f">>> {item.get('title')}")
        if item.get("instructions"):
            out.note(f">>> instructions: {item['instructions']}")
        command = f"octo-appliance interruption submit {item['id']} {options} [--notes TEXT]"
        if item.get("can_submit"):
            out.note(f">>> answer: {command}")
        else:
            out.note(f">>> this API key may not answer it; someone allowed to can run: {command}")


def step_lines(task: dict[str, Any]) -> list[str]:
    """A deployment's steps with their states (and targets that did not succeed)."""
    lines = []
    for step in (task.get("summary") or {}).get("steps") or []:
        took = duration(step.get("duration_ms"))
        why = step.get("message") or step.get("reason") or ""
        text = f"  {step.get('state', '?'):<9} {step.get('name')}"
        if took:
            text += f" ({took})"
        if why:
            text += f": {why}"
        lines.append(text)
        for target in step.get("targets") or []:
            if target.get("state") in ("success", "pending"):
                continue
            code = target.get("exit_code")
            extra = f", exit code {code}" if code is not None else ""
            message = f": {target['message']}" if target.get("message") else ""
            lines.append(f"      {target.get('name')}: {target.get('state')}{extra}{message}")
    return lines


def outcome_lines(task: dict[str, Any]) -> list[str]:
    state = task.get("state")
    took = duration(task.get("duration_ms"))
    text = f"Task {task.get('id')} {state}" + (f" after {took}" if took else "")
    lines = [*step_lines(task), text + "."]
    if task.get("error"):
        lines.append(f"  {task['error']}")
    return lines


def target_lines(task: dict[str, Any]) -> list[str]:
    """Each target's result of a task that runs on targets (scripts, health checks)."""
    lines = []
    for row in task.get("targets") or []:
        code = row.get("exit_code")
        text = f"  {row.get('state', '?'):<9} {row.get('target_name')}"
        text += f" (exit code {code})" if code is not None else ""
        lines.append(text + (f": {row['message']}" if row.get("message") else ""))
    return lines


def started(
    client: ApiClient, out: Output, queued: dict[str, Any], header: str, what: str, *, wait: bool
) -> int:
    """After a command queued a task (``queued`` has its ``task_id``): say so, then follow it
    to its end (:func:`follow_to_end`), or without ``wait`` say how to follow it later."""
    task_id = str(queued["task_id"])
    if not wait:
        out.result(queued, [header, f"Follow it with: octo-appliance task log {task_id} --follow"])
        return 0
    out.line(header)
    return follow_to_end(client, out, task_id, what)


def follow_to_end(client: ApiClient, out: Output, task_id: str, what: str) -> int:
    """Print the task's log live, then each target's result and the task's: the exit code
    (0 success, 1 otherwise, 130 when Ctrl+C stopped the following, not the task)."""
    try:
        follow(client, out, task_id)
    except KeyboardInterrupt:
        return interrupted(out, task_id, what)
    task = client.get(f"/tasks/{task_id}")
    out.result(task, [*target_lines(task), *outcome_lines(task)])
    return 0 if task["state"] == "success" else 1


def interrupted(out: Output, task_id: str, what: str) -> int:
    out.note(
        f"stopped following; {what} goes on. Follow it again with 'octo-appliance task log "
        f"{task_id} --follow', stop it with 'octo-appliance task cancel {task_id}'."
    )
    return INTERRUPTED


# -- commands ----------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        task = client.get(f"/tasks/{task_id_of(client, args.task)}")
    lines = [f"{task['description']} ({task['kind']})", *outcome_lines(task)]
    if task["state"] not in FINAL_STATES:
        lines[-1] = f"Task {task['id']} is {task['state']}."
    out.result(task, lines)
    return 0


def run_log(args: argparse.Namespace) -> int:
    if args.since < 0:
        raise ConfigError("--since must be 0 or more", hint="e.g. --since 120")
    out = Output(args.json)
    with open_client(args) as client:
        task_id = task_id_of(client, args.task)
        if args.follow:
            return _follow_log(client, out, task_id, args.since)
        lines, page = [], {"finished": False, "state": ""}
        since = args.since
        while True:
            page = client.get(f"/tasks/{task_id}/log", {"since": since, "take": LOG_PAGE})
            lines += page["items"]
            if not out.json_mode:
                for line in page["items"]:
                    out.line(log_line(line))
            if len(page["items"]) < LOG_PAGE:
                break
            since = page["next_since"]
    if out.json_mode:
        out.result(
            {
                "task_id": task_id,
                "state": page["state"],
                "finished": page["finished"],
                "lines": lines,
            }
        )
    elif not page["finished"]:
        out.note(f"task {task_id} is {page['state']}; add --follow to print the rest live")
    return 0


def _follow_log(client: ApiClient, out: Output, task_id: str, since: int) -> int:
    lines: list[dict[str, Any]] = []
    try:
        if out.json_mode:
            end = None
            for item in client.follow_log(task_id, since):
                if isinstance(item, LogLine):
                    lines.append(item.data)
                else:
                    end = item
            if end is None:  # pragma: no cover - follow_log always ends with TaskEnd
                raise ClientError(f"the log stream of task {task_id} ended without its state")
        else:
            end = follow(client, out, task_id, since)
    except KeyboardInterrupt:
        return interrupted(out, task_id, f"task {task_id}")
    out.result(
        {"task_id": task_id, **end.data, "lines": lines},
        [
            f"Task {task_id} {end.state}."
            + (f" {end.data['error']}" if end.data.get("error") else "")
        ],
    )
    return 0 if end.state == "success" else 1


def run_cancel(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        task_id = task_id_of(client, args.task)
        task = client.post(f"/tasks/{task_id}/cancel")
        if task["state"] == "canceled":
            out.line(f"Canceled task {task_id} ({task['description']}).")
        else:
            out.line(
                f"Asked task {task_id} ({task['description']}) to stop; it ends as canceled "
                "once its work has stopped."
            )
        if args.wait and task["state"] not in FINAL_STATES:
            try:
                while task["state"] not in FINAL_STATES:
                    time.sleep(CANCEL_POLL_SECONDS)
                    task = client.get(f"/tasks/{task_id}")
            except KeyboardInterrupt:
                out.note(f"stopped waiting; task {task_id} was asked to stop")
                return INTERRUPTED
            out.line(f"Task {task_id} {task['state']}.")
    out.result(task)
    if args.wait and task["state"] != "canceled":
        out.note(f"task {task_id} ended {task['state']} before it could be canceled")
        return 1
    return 0
