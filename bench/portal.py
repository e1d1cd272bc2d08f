"""The portal's pages against the goals of issue 12: server time p99 < 30 ms per page, and a
first dashboard visit < 100 KB transferred (HTML + CSS + JS, compressed).

The appliance holds 1,000 projects, 5 environments and 10,000 tasks, seeded straight into the
models (one ``insert_many`` per table, seconds instead of an hour of API calls): every project
has a release deployed to every environment (5,000 deployments, each with its finished task,
so every dashboard cell is filled), 5,000 more tasks (health checks), and the measured
project has 50 variables (10 sensitive) and its latest task 500 log lines over 2 targets.

**Server time** is measured in process, around the ASGI application (``web/app.create_app``,
with its security headers): from the request entering the app to the last byte of the
response body leaving it, for a signed-in administrator (the session cookie, as a browser
sends it). So it holds authentication, the database reads, rendering and compression, not
TLS or the network (``bench/api.py`` measures those for the API). Beside it, the CPU time
the process spent per request (median; the in-process client's share included, so an upper
bound): what the page costs whatever else the shared machine runs. Each page is asked
``--rounds`` times after 5 unmeasured warm-up requests; a page answering 404 (not built on
this branch) prints "missing". The floor is the about page (a session check and a template,
no query): what any page costs on this machine at this load.

The dashboard shows 25 projects a page (``?name=`` finds the others, ``?skip=`` pages), so
its cost does not grow with the number of projects: one query for the page's projects, one
for the environments, one windowed query for the latest deployment of the page's cells.

**Transferred bytes** of a first visit: the dashboard's HTML and every stylesheet and script
it references, asked with ``Accept-Encoding: gzip`` as a browser does, counted as sent (the
compressed body; headers left out, which HTTP/2 and HTTP/3 compress too).

Usage: ``.venv/bin/python bench/portal.py [--rounds 200]``
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _fleet import percentile
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from octo_appliance.db import (
    Deployment,
    Environment,
    Project,
    Release,
    Target,
    TargetEnvironment,
    TargetRole,
    Variable,
)
from octo_appliance.db.base import new_id, utcnow
from octo_appliance.db.tasks import ServerTask, TaskLogLine, TaskTargetResult
from octo_appliance.testing import start_test_appliance
from octo_appliance.web.app import create_app

PROJECTS, ENVIRONMENTS, TASKS = 1000, 5, 10_000
GOAL_P99_MS = 30.0
GOAL_FIRST_VISIT_KB = 100.0
ASSET = re.compile(r'<(?:link|script)\b[^>]*?(?:href|src)="(/static/[^"]+\.(?:css|js))"')


def insert(model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 500):
        model.insert_many(rows[start : start + 500]).execute()


def seed(db: Any) -> dict[str, str]:
    """The data set above; returns the ids of the measured project and task."""
    now = utcnow()
    envs = [{"id": new_id("env"), "name": f"Env-{n}", "sort_order": n} for n in range(5)]
    projects = [{"id": new_id("prj"), "name": f"project-{n:04d}"} for n in range(PROJECTS)]
    releases = [{"id": new_id("rel"), "project": p["id"], "version": "1.0.0"} for p in projects]
    tasks, deployments = [], []
    for n, (project, release) in enumerate(zip(projects, releases, strict=True)):
        for env in envs:
            moment = now - timedelta(minutes=n % 600)
            task = {"id": new_id("tsk"), "kind": "deployment", "state": "success"}
            task |= {"created_at": moment, "finished_at": moment, "project_id": project["id"]}
            task |= {"environment_id": env["id"], "description": f"Deploy {project['name']}"}
            tasks.append(task)
            deployments.append(
                {
                    "id": new_id("dep"),
                    "release": release["id"],
                    "project": project["id"],
                    "environment": env["id"],
                    "task_id": task["id"],
                    "state": "failed" if n % 7 == 0 else "success",
                    "created_at": moment,
                    "finished_at": moment,
                }
            )
    while len(tasks) < TASKS:
        tasks.append({"id": new_id("tsk"), "kind": "health-check", "state": "success"})
    targets = [{"id": new_id("tgt"), "name": f"web-{n}"} for n in (1, 2)]
    measured_project, measured_task = projects[0]["id"], tasks[0]["id"]
    variables = [
        {
            "id": new_id("var"),
            "project": measured_project,
            "name": f"App.Setting{n:02d}",
            "sensitive": False,
            "value": f"value {n}",
            "scope": {"environment": [envs[n % 5]["id"]]} if n % 3 == 0 else {},
            "position": n,
        }
        for n in range(40)
    ]
    log = [
        {
            "id": new_id("log"),
            "task": measured_task,
            "seq": n,
            "level": "warning" if n % 50 == 0 else "info",
            "occurred_at": now,
            "target_id": targets[n % 2]["id"],
            "target_name": targets[n % 2]["name"],
            "message": f"line {n}: copying file {n} of 500 into /opt/app/releases/1.0.0",
        }
        for n in range(500)
    ]
    with db.atomic():
        insert(Environment, envs)
        insert(Project, projects)
        insert(Release, releases)
        insert(ServerTask, tasks)
        insert(Deployment, deployments)
        insert(Variable, variables)
        insert(Target, targets)
        for target in targets:
            env = envs[0]["id"]
            TargetEnvironment.create(id=new_id("tge"), target=target["id"], environment=env)
            TargetRole.create(id=new_id("tgr"), target=target["id"], role="web")
            TaskTargetResult.create(
                id=new_id("ttr"), task=measured_task, target_id=target["id"], state="success"
            )
        insert(TaskLogLine, log)
    return {"project": measured_project, "task": measured_task}


def seed_sensitive(octo: Any, project: str) -> None:
    """Ten sensitive variables through the API (sealing is the vault's work, not the models')."""
    current = octo.api.get(f"/projects/{project}/variables").json()["variables"]
    kept = [{k: v for k, v in var.items() if k in ("name", "value", "scope")} for var in current]
    secret = [{"name": f"Secret.{n}", "value": f"s3cret-{n}", "sensitive": True} for n in range(10)]
    answer = octo.api.put(f"/projects/{project}/variables", json={"variables": kept + secret})
    assert answer.status_code == 200, answer.text


class Timed:
    """The ASGI app, timed from the request entering it to the last body byte leaving it."""

    def __init__(self, app: Any) -> None:
        self.app, self.last = app, 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed_send)


def measure(
    client: TestClient, timed: Timed, path: str, rounds: int
) -> tuple[str, float, float, float]:
    """("ok" | "missing" | the status, p50 ms, p99 ms, CPU ms p50)."""
    first = client.get(path, follow_redirects=False)
    if first.status_code == 404:
        return "missing", 0.0, 0.0, 0.0
    if first.status_code != 200:
        return f"HTTP {first.status_code}", 0.0, 0.0, 0.0
    for _ in range(4):
        client.get(path)
    times, cpu = [], []
    for _ in range(rounds):
        before = time.process_time()
        client.get(path)
        cpu.append((time.process_time() - before) * 1000)
        times.append(timed.last * 1000)
    return "ok", percentile(times, 50), percentile(times, 99), percentile(cpu, 50)


def first_visit(client: TestClient) -> dict[str, int]:
    """Bytes sent for ``/`` and the stylesheets and scripts it references (compressed)."""
    gzip = {"accept-encoding": "gzip, deflate, br"}
    page = client.get("/", headers=gzip)
    sizes = {"/ (HTML)": page.num_bytes_downloaded}
    for url in ASSET.findall(page.text):
        sizes[url.rsplit("/", 1)[-1]] = client.get(url, headers=gzip).num_bytes_downloaded
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="octo-bench-portal-") as tmp:
        octo = start_test_appliance(Path(tmp) / "data")
        try:
            started = time.perf_counter()
            ids = seed(octo.appliance.db)
            seed_sensitive(octo, ids["project"])
            seeded = time.perf_counter() - started
            timed = Timed(create_app(octo.appliance))
            client = TestClient(timed, base_url="https://testserver")
            login = {"username": "admin", "password": octo.admin_password}
            assert client.post("/signin", data=login, follow_redirects=False).status_code == 303
            print(
                f"seeded {PROJECTS} projects, {ENVIRONMENTS} environments, {TASKS} tasks "
                f"in {seeded:.1f} s; {args.rounds} requests per page"
            )
            print(f"load average {os.getloadavg()} (2 shared cores: other work runs beside)")
            head = f"{'page':<34} {'p50 ms':>8} {'p99 ms':>8} {'goal':>8} {'CPU ms':>7}"
            print(f"{head}  load average")
            pages = {
                "floor: about /about": "/about",
                "dashboard /": "/",
                "project /projects/{id}": f"/projects/{ids['project']}",
                "task /tasks/{id}": f"/tasks/{ids['task']}",
                "variables /projects/{id}/variables": f"/projects/{ids['project']}/variables",
            }
            for label, path in pages.items():
                state, p50, p99, cpu = measure(client, timed, path, args.rounds)
                shown = f"{p50:8.1f} {p99:8.1f}" if state == "ok" else f"{'':>8} {state:>8}"
                shown += f" {'< 30':>8} {cpu:7.1f}" if state == "ok" else f" {'< 30':>8} {'':>7}"
                verdict = "" if state != "ok" else ("  ok" if p99 < GOAL_P99_MS else "  MISSED")
                load = tuple(round(x, 2) for x in os.getloadavg())
                print(f"{label:<34} {shown}  {load}{verdict}")
            sizes = first_visit(client)
            total = sum(sizes.values()) / 1024
            for name, size in sizes.items():
                print(f"  {name:<40} {size / 1024:8.1f} KB")
            verdict = "ok" if total < GOAL_FIRST_VISIT_KB else "MISSED"
            load = tuple(round(x, 2) for x in os.getloadavg())
            print(
                f"{'first dashboard visit (compressed)':<34} {total:7.1f}K {'< 100K':>8}  "
                f"{load}  {verdict}"
            )
        finally:
            octo.close()


if __name__ == "__main__":
    main()
