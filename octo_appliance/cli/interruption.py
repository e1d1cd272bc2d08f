"""``octo-appliance interruption list|submit``: answer deployments that wait for a person.

Manual intervention steps take ``approve`` or ``reject``; guided failure takes ``retry``,
``skip``, ``exclude-target`` or ``abort``. The interruption is named by its id (the waiting
deployment's log and ``deploy --wait`` print it), or by the id of a task or deployment that
waits on exactly one.
"""

from __future__ import annotations

import argparse
from typing import Any

from octo_appliance.cli.client import ApiClient, ApiRefused, ClientError
from octo_appliance.cli.options import add_client_options, check_take, open_client
from octo_appliance.cli.output import Output, page_lines, stamp

RESULTS = ("approve", "reject", "retry", "skip", "exclude-target", "abort")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "interruption", help="list or answer deployments waiting for a person"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    submit = actions.add_parser(
        "submit",
        help="answer an interruption",
        description="Answer a manual intervention (approve, reject) or a guided failure "
        "(retry, skip, exclude-target, abort).",
    )
    submit.add_argument(
        "interruption",
        metavar="ID",
        help="interruption id, or the id of a task or deployment waiting on exactly one",
    )
    submit.add_argument("result", metavar="ANSWER", choices=RESULTS, help=" | ".join(RESULTS))
    submit.add_argument("--notes", default="", metavar="TEXT", help="why (recorded with it)")
    add_client_options(submit)
    submit.set_defaults(handler=run_submit)

    listing = actions.add_parser("list", help="list interruptions waiting for an answer")
    listing.add_argument("--task", metavar="TASK", help="only this task's (or deployment's)")
    listing.add_argument("--all", action="store_true", help="answered and closed ones too")
    listing.add_argument("--take", type=int, default=50, metavar="N", help="at most N (default 50)")
    add_client_options(listing)
    listing.set_defaults(handler=run_list)


def _filter(ref: str) -> dict[str, str]:
    return {"deployment": ref} if ref.startswith("dep_") else {"task": ref}


def find_interruption(client: ApiClient, ref: str) -> dict[str, Any]:
    """The interruption ``ref``, or the one a task or deployment ``ref`` waits on."""
    try:
        return dict(client.get(f"/interruptions/{ref}"))
    except ApiRefused as exc:
        if exc.status != 404:
            raise
        missing = exc
    query = {**_filter(ref), "pending": "true", "take": 10}
    items = client.get("/interruptions", query)["items"]
    if len(items) == 1:
        return dict(items[0])
    if len(items) > 1:
        ids = ", ".join(item["id"] for item in items)
        raise ClientError(
            f"{ref} waits on {len(items)} interruptions: {ids}",
            hint="name the one to answer by its id",
        )
    raise ClientError(
        f"no interruption {ref}, and no task or deployment {ref} waiting for an answer",
        hint="list the waiting ones with 'octo-appliance interruption list'",
    ) from missing


def run_submit(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        item = find_interruption(client, args.interruption)
        options = item.get("options") or []
        if item.get("state") == "pending" and args.result not in options:
            raise ClientError(
                f"interruption {item['id']} ({item['title']}) takes {' or '.join(options)}, "
                f"not {args.result}",
                hint=f"answer with one of: {', '.join(options)}",
            )
        answered = client.post(
            f"/interruptions/{item['id']}/submit", {"result": args.result, "notes": args.notes}
        )
    line = f"Answered {answered['id']} ({answered['title']}) with {answered['result']}"
    out.result(answered, [line + f"; task {answered['task_id']} carries on."])
    return 0


def _answers(item: dict[str, Any]) -> str:
    """What it takes while pending, else what it was answered (``-`` when closed)."""
    if item["state"] == "pending":
        return "|".join(item.get("options") or [])
    return str(item.get("result") or "-")


def run_list(args: argparse.Namespace) -> int:
    check_take(args.take)
    query: dict[str, Any] = {"take": args.take}
    if not args.all:
        query["pending"] = "true"
    if args.task:
        query.update(_filter(args.task))
    out = Output(args.json)
    with open_client(args) as client:
        page = client.get("/interruptions", query)
    rows = [
        [
            item["id"],
            item["state"],
            _answers(item),
            stamp(item.get("created_at")),
            item["task_id"],
            item["title"],
        ]
        for item in page["items"]
    ]
    header = ["ID", "STATE", "ANSWERS", "CREATED", "TASK", "TITLE"]
    lines = page_lines(page, rows, header, "Nothing waits for an answer.")
    out.result(page, lines)
    return 0
