"""PostgreSQL goes away under a real ``serve`` process, and comes back.

Two faults, as an operator meets them: every backend of the appliance's database terminated
(``pg_terminate_backend``), and the server "restarted": a TCP proxy between the appliance and
PostgreSQL (:class:`~tests.pg_proxy.PgProxy`) refuses connections and cuts the open ones, then
serves again. The shared PostgreSQL server itself is never touched. The deployment case is in
``test_database_outage_deploy.py``.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import reset_pg_schema
from tests.fleet import wait_until
from tests.packages_support import stored_files, zip_bytes
from tests.pg_proxy import PgProxy
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HEALTH = "/api/v1/health"


def client(server: ServeProcess, key: str) -> httpx.Client:
    return server.http2_client(headers={"X-Api-Key": key}, timeout=30.0)


def terminate_backends(pg_url: str) -> list[int]:
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return [int(pid) for pid, _ in rows]


def backends(pg_url: str) -> set[int]:
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return {int(pid) for (pid,) in rows}


class Load:
    """Light API traffic from a thread: a read and a write in turn, every status counted."""

    def __init__(self, server: ServeProcess, key: str) -> None:
        self.server, self.key = server, key
        self.statuses: list[int] = []
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with client(self.server, self.key) as api:
            while not self._stop.is_set():
                name = f"env-{secrets.token_hex(4)}"
                for response in (
                    api.get("/api/v1/environments"),
                    api.post("/api/v1/environments", json={"name": name}),
                ):
                    self.statuses.append(response.status_code)
                    if response.status_code >= 500:
                        self.bodies.append(response.text)
                self._stop.wait(0.05)

    def successes_since(self, index: int) -> int:
        return sum(1 for status in self.statuses[index:] if status < 300)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def schema(pg_url: str) -> str:
    reset_pg_schema(pg_url)
    return pg_url


def test_terminated_backends_are_replaced_under_load(schema: str, tmp_path: Path) -> None:
    pg_url = schema
    with ServeProcess(tmp_path / "data", database=pg_url) as server:
        key = server.create_api_key()
        with Load(server, key) as load:
            wait_until(lambda: load.successes_since(0) >= 10, 30, "traffic before the fault")
            old = set(terminate_backends(pg_url))
            assert old, "the appliance held no connection"
            mark = len(load.statuses)
            wait_until(lambda: load.successes_since(mark) >= 20, 30, "calls to succeed again")
        # new backends serve the appliance; none of the terminated ones
        assert backends(pg_url) - old
        counts = Counter(load.statuses)
        assert set(counts) <= {200, 201, 503}, (counts, load.bodies[:3])
        with client(server, key) as api:
            assert api.get(HEALTH).json()["database"] == "up"
        assert "unexpected error" not in server.output()


@pytest.fixture
def behind_proxy(schema: str, tmp_path: Path) -> Iterator[tuple[PgProxy, ServeProcess, str]]:
    proxy = PgProxy(schema)
    with proxy, ServeProcess(tmp_path / "data", database=proxy.url) as server:
        key = server.create_api_key()
        yield proxy, server, key


def test_while_the_database_is_down_the_api_answers_503_and_recovers(behind_proxy) -> None:
    proxy, server, key = behind_proxy
    with client(server, key) as api:
        assert api.post("/api/v1/environments", json={"name": "Before"}).status_code == 201
        assert api.get(HEALTH).status_code == 200
        proxy.stop()  # PostgreSQL "restarts": connections cut, new ones refused
        for method, path, body in (
            ("GET", "/api/v1/environments", None),
            ("POST", "/api/v1/environments", {"name": "During"}),
        ):
            response = api.request(method, path, json=body)
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) > 0
            error = response.json()["error"]
            assert error["code"] == "service_unavailable"
            assert "database is unavailable" in error["message"]
            assert "retry" in error["hint"]
        health = api.get(HEALTH)
        assert health.status_code == 503
        assert health.json()["database"] == "down"
        assert health.json()["status"] == "unavailable"
        assert "retry-after" in health.headers
        proxy.start()  # back on the same address
        wait_until(lambda: api.get(HEALTH).status_code == 200, 30, "health to say up again")
        assert api.post("/api/v1/environments", json={"name": "After"}).status_code == 201
        names = {env["name"] for env in api.get("/api/v1/environments").json()["items"]}
        assert {"Before", "After"} <= names
        assert "During" not in names
    # The thread whose statement succeeded first logs "reachable again" just after marking the
    # database up: health may answer 200 in between, so wait for the line rather than expect it.
    wait_until(lambda: "reachable again" in server.output(), 60, "the recovery to be logged")
    log = server.output()
    assert log.count("the database is unavailable:") == 1, log
    assert "unexpected error" not in log


def _multipart(file_name: str, data: bytes, boundary: str) -> tuple[bytes, bytes]:
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data, f"\r\n--{boundary}--\r\n".encode()


def test_an_upload_cut_by_the_outage_fails_clearly_and_leaves_nothing(behind_proxy) -> None:
    proxy, server, key = behind_proxy
    archive = zip_bytes({"payload.bin": secrets.token_bytes(3 * 1024 * 1024)}, stored=True)
    boundary = secrets.token_hex(8)
    body, tail = _multipart("Outage.1.0.0.zip", archive, boundary)
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}

    def cut_half_way() -> Iterator[bytes]:
        half = len(body) // 2
        yield body[:half]  # the name is known and checked while the database is up
        proxy.stop()
        yield body[half:]
        yield tail

    with client(server, key) as api:
        response = api.post("/api/v1/packages", content=cut_half_way(), headers=headers)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert "retry-after" in response.headers
        # while it is down, a new (small) upload is refused the same way
        small, small_tail = _multipart("Outage.1.0.1.zip", zip_bytes({"a": b"a"}), boundary)
        again = api.post("/api/v1/packages", content=small + small_tail, headers=headers)
        assert again.status_code == 503, again.text
        proxy.start()
        wait_until(lambda: api.get(HEALTH).status_code == 200, 30, "the database to return")
        listed = api.get("/api/v1/packages", params={"id": "Outage"}).json()["items"]
        assert listed == []
        assert [name for name in stored_files(server.data_dir) if "Outage" in name] == []
        assert not [name for name in stored_files(server.data_dir) if "incoming" in name]
        # and the same upload succeeds now
        done = api.post("/api/v1/packages", content=body + tail, headers=headers)
        assert done.status_code == 201, done.text
