"""The ``list``, ``show`` and ``delete`` actions of a resource, declared once per resource.

Environments, projects, targets, lifecycles, teams and users are all read and deleted the same
way (``GET /PATH?name=&take=``, ``GET /PATH/{ref}``, ``DELETE /PATH/{ref}``); a command group
declares a :class:`Resource` (its path, its table columns, its detail lines) and gets those
actions with the same options, output and errors as every other group. Creating differs per
resource, so each group writes its own ``create``.

:class:`Names` turns the ids the API stores (scopes, phases, grants) back into the names
people typed, for text output and for the files ``variables export`` and ``process export``
write.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from octo_appliance.cli.client import ApiClient
from octo_appliance.cli.options import add_client_options, check_take, open_client
from octo_appliance.cli.output import Output, page_lines

#: the API's largest page
PAGE = 1000


def segment(ref: str) -> str:
    """A reference as one URL path segment (names may hold spaces, ``?`` or ``#``)."""
    return quote(ref, safe="")


@dataclass(frozen=True)
class Filter:
    """A ``list`` option that becomes a query parameter (``--role R`` -> ``?role=R``)."""

    option: str
    query: str
    help: str


@dataclass(frozen=True)
class Resource:
    noun: str
    path: str
    headers: list[str]
    #: a table row and the detail lines of an item; ``Names`` turns stored ids into names
    row: Callable[[dict[str, Any], Names], list[str]]
    detail: Callable[[dict[str, Any], Names], list[str]]
    filters: list[Filter] = field(default_factory=list)

    @property
    def many(self) -> str:
        return self.noun + "s"

    def item_path(self, ref: str) -> str:
        return f"{self.path}/{segment(ref)}"


def add_list(actions: Any, resource: Resource) -> None:
    listing = actions.add_parser("list", help=f"list {resource.many}")
    listing.add_argument("--name", metavar="TEXT", help="only names containing TEXT")
    for extra in resource.filters:
        listing.add_argument(extra.option, metavar="VALUE", help=extra.help)
    listing.add_argument(
        "--take", type=int, default=100, metavar="N", help="at most N (default 100)"
    )
    add_client_options(listing)
    listing.set_defaults(handler=lambda args: run_list(args, resource))


def add_show(actions: Any, resource: Resource) -> None:
    show = actions.add_parser("show", help=f"show one {resource.noun}")
    show.add_argument("ref", metavar="REF", help=f"{resource.noun} id or name")
    add_client_options(show)
    show.set_defaults(handler=lambda args: run_show(args, resource))


def add_delete(actions: Any, resource: Resource, note: str = "") -> None:
    delete = actions.add_parser(
        "delete", help=f"delete a {resource.noun}", description=f"Delete a {resource.noun}. {note}"
    )
    delete.add_argument("ref", metavar="REF", help=f"{resource.noun} id or name")
    add_client_options(delete)
    delete.set_defaults(handler=lambda args: run_delete(args, resource))


def run_list(args: argparse.Namespace, resource: Resource) -> int:
    check_take(args.take)
    query: dict[str, Any] = {"take": args.take}
    if args.name:
        query["name"] = args.name
    for extra in resource.filters:
        value = getattr(args, extra.option.lstrip("-").replace("-", "_"))
        if value:
            query[extra.query] = value
    out = Output(args.json)
    with open_client(args) as client:
        page = client.get(resource.path, query)
        names = Names(client)
        rows = [resource.row(item, names) for item in page["items"]]
    out.result(page, page_lines(page, rows, resource.headers, f"No {resource.many}."))
    return 0


def run_show(args: argparse.Namespace, resource: Resource) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        item = client.get(resource.item_path(args.ref))
        lines = resource.detail(item, Names(client))
    out.result(item, lines)
    return 0


def run_delete(args: argparse.Namespace, resource: Resource) -> int:
    out = Output(args.json)
    with open_client(args) as client:
        item = client.get(resource.item_path(args.ref))
        deleted = client.request("DELETE", resource.item_path(item["id"]))
    name = item.get("name") or item.get("username") or item["id"]
    out.result(deleted, [f"Deleted {resource.noun} {name} ({item['id']})."])
    return 0


def created(out: Output, resource: Resource, item: dict[str, Any], *more: str) -> int:
    """Print what a ``create`` made: one line, or the API's answer with ``--json``."""
    name = item.get("name") or item.get("username")
    out.result(item, [f"Created {resource.noun} {name} ({item['id']}).", *more])
    return 0


def all_items(client: ApiClient, path: str) -> list[dict[str, Any]]:
    """Every item of a listing, page after page."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(path, {"take": PAGE, "skip": len(items)})
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items


class Names:
    """Id -> name of environments and targets, each listing fetched once when first needed.
    An id with no name (deleted since) stays an id."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._maps: dict[str, dict[str, str]] = {}

    def _map(self, path: str) -> dict[str, str]:
        if path not in self._maps:
            self._maps[path] = {i["id"]: i["name"] for i in all_items(self.client, path)}
        return self._maps[path]

    def environments(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        known = self._map("/environments")
        return [known.get(i, i) for i in ids]

    def targets(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        known = self._map("/targets")
        return [known.get(i, i) for i in ids]


def joined(values: list[str] | None, empty: str = "-") -> str:
    return ", ".join(values) if values else empty
