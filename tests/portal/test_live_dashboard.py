"""The live dashboard's event stream in process: a deployment that starts and ends changes the
change token, and the stream sends the cell's new HTML (the caller's scope only); a page drawn
before a change it never saw is told ``stale``. (The browser test watches it in chromium.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from octo_appliance.api.auth import load_principal
from octo_appliance.api.context import RequestContext
from octo_appliance.db import Deployment, ServerTask, User
from octo_appliance.portal import live
from octo_appliance.portal.routes import Portal
from octo_appliance.testing import OctoTestAppliance
from tests.api.helpers import make_user
from tests.api.test_dashboard import deployment, seed
from tests.portal.support import sign_in


@pytest.fixture
def octo(octo_appliance_factory) -> OctoTestAppliance:  # type: ignore[no-untyped-def]
    return octo_appliance_factory()


def _context(octo: OctoTestAppliance, username: str) -> RequestContext:
    user = User.get(User.username == username)
    return RequestContext(octo.appliance, load_principal(user, "session"), {})


async def _next_event(events: AsyncIterator[str]) -> dict[str, Any]:
    """The next ``cell`` or ``stale`` event (keepalives and bare ids skipped)."""
    while True:
        chunk = await asyncio.wait_for(events.__anext__(), 30)
        fields = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if ": " in line)
        if fields.get("event") in ("cell", "stale"):
            return {"event": fields["event"], "id": fields["id"], **json.loads(fields["data"])}


def test_a_deployment_turns_its_cell_running_then_green(octo: OctoTestAppliance) -> None:
    ids = seed(octo.api)
    portal = Portal(octo.appliance)
    make_user(octo, "vera", "viewer", projects=[ids["Blog"]], password="vera-password-1")

    async def watch() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        admin = live._stream(portal, _context(octo, "admin"), "")
        vera = live._stream(portal, _context(octo, "vera"), "")
        assert (await admin.__anext__()).startswith("retry:")
        assert (await vera.__anext__()).startswith("retry:")
        token = await asyncio.to_thread(live.change_token)
        row = await asyncio.to_thread(
            deployment, ids["Shop"], ids["Dev"], "2.0.0", "queued", 0, "executing"
        )
        assert await asyncio.to_thread(live.change_token) != token
        running = await _next_event(admin)
        await asyncio.to_thread(_finish, row)
        green = await _next_event(admin)
        blog = await asyncio.to_thread(deployment, ids["Blog"], ids["Dev"], "0.1.0", "success", 0)
        vera_sees = await _next_event(vera)
        assert blog.project_id == ids["Blog"]
        await admin.aclose()
        await vera.aclose()
        return [running, green], [vera_sees]

    (running, green), (vera_sees,) = asyncio.run(watch())
    cell = f"{ids['Shop']}:{ids['Dev']}"
    assert (running["cell"], running["state"]) == (cell, "executing")
    assert f'<td class="cell state-executing" data-cell="{cell}">' in running["html"]
    assert ">2.0.0</a>" in running["html"]
    assert (green["cell"], green["state"]) == (cell, "success")
    assert "state-success" in green["html"]
    # vera may view Blog only: Shop's cell never reached her, Blog's did
    assert vera_sees["cell"] == f"{ids['Blog']}:{ids['Dev']}"


def _finish(row: Deployment) -> None:
    ServerTask.update(state="success").where(ServerTask.id == row.task_id).execute()
    Deployment.update(state="success").where(Deployment.id == row.id).execute()


def test_a_page_older_than_the_stream_is_told_stale(octo: OctoTestAppliance) -> None:
    ids = seed(octo.api)
    deployment(ids["Shop"], ids["Dev"], "1.0.0", "success", 5)
    sign_in(octo.client, "admin", octo.admin_password)
    page = octo.client.get("/").text
    token = live.change_token()
    assert f'data-version="{token}"' in page
    assert "/static/dashboard-live." in page
    deployment(ids["Shop"], ids["Prod"], "1.0.0", "queued", 0, "queued")
    portal = Portal(octo.appliance)

    async def first() -> dict[str, Any]:
        events = live._stream(portal, _context(octo, "admin"), token)
        await events.__anext__()
        event = await _next_event(events)
        await events.aclose()
        return event

    stale = asyncio.run(first())
    assert stale["event"] == "stale" and stale["id"] == live.change_token()


def test_the_stream_needs_a_session(octo: OctoTestAppliance) -> None:
    answer = octo.client.get("/dashboard/events")
    assert answer.status_code == 401
