"""Write requests arriving together on a real ``serve`` process with SQLite.

A handler reads before it writes (name checks, references); in a deferred SQLite transaction
that read-then-write fails at once with "database is locked" when another request wrote in
between, which ``bench/dispatch.py`` hit as 500s when registering agents eight at a time.
Each write request now takes the write lock when it begins (``BEGIN IMMEDIATE``) and waits
its turn instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from octo_appliance.comms import generate_identity
from tests.serve_process import ServeProcess

REQUESTS = 24


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    data = tmp_path_factory.mktemp("concurrent") / "data"
    with ServeProcess(data) as server:
        yield server, server.create_api_key()


async def _post_all(
    server: ServeProcess, key: str, requests: list[tuple[str, dict[str, object]]]
) -> list[httpx.Response]:
    async with server.async_http2_client(key) as client:
        return list(await asyncio.gather(*(client.post(path, json=b) for path, b in requests)))


def test_concurrent_creates_all_succeed(served: tuple[ServeProcess, str]) -> None:
    server, key = served

    responses = asyncio.run(
        _post_all(
            server, key, [("/api/v1/environments", {"name": f"env-{i}"}) for i in range(REQUESTS)]
        )
    )

    assert [r.status_code for r in responses] == [201] * REQUESTS, [
        r.text for r in responses if r.status_code != 201
    ]
    assert "database is locked" not in server.output()


def test_concurrent_agent_registrations_all_succeed(served: tuple[ServeProcess, str]) -> None:
    server, key = served
    asyncio.run(_post_all(server, key, [("/api/v1/environments", {"name": "Agents"})]))
    bodies: list[tuple[str, dict[str, object]]] = []
    for i in range(REQUESTS):
        identity = generate_identity(f"agent-{i}")
        bodies.append(
            (
                "/api/v1/targets/register",
                {
                    "name": f"agent-{i}",
                    "environments": ["Agents"],
                    "roles": ["web"],
                    "communication_style": "polling",
                    "thumbprint": identity.thumbprint,
                    "certificate": identity.cert_pem.decode(),
                },
            )
        )

    responses = asyncio.run(_post_all(server, key, bodies))

    assert [r.status_code for r in responses] == [201] * REQUESTS, [
        r.text for r in responses if r.status_code != 201
    ]
    with server.http2_client(headers={"X-Api-Key": key}) as client:
        listed = client.get("/api/v1/targets", params={"take": 100}).json()
    assert {f"agent-{i}" for i in range(REQUESTS)} <= {t["name"] for t in listed["items"]}
