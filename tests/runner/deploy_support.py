"""A deployment target (cache, applications folder, journal) and the in-process runner, for
the ``deploy-package`` tests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from octo_runner import __main__ as runner_main

from .conventions_support import Entry, build, store
from .support import RunnerResult, make_request, parse_events, variable

SECRET = "s3cret-db-pass-4417"


def configured(tag: str) -> dict[str, str]:
    # The literal #{Greeting} proves the runner does not substitute configured scripts again.
    return {
        "syntax": "bash",
        "body": f"echo '{tag} #{{Greeting}}' >> \"$(get_octovariable OrderFile)\"",
    }


class Target:
    """A target's folders (cache, applications, journal) and requests for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.apps = root / "apps"
        self.journal = root / "state" / "journal.json"
        self.order = root / "order.txt"
        self.cache.mkdir(parents=True)

    def context(self) -> dict[str, Any]:
        return {
            "task_id": "tsk_1",
            "target": "web-01",
            "step": "Install",
            "deployment_id": "dep_1",
            "cache_dir": str(self.cache),
            "applications_dir": str(self.apps),
            "journal_file": str(self.journal),
        }

    def package(
        self, entries: list[Entry], fmt: str = "zip", version: str = "1.4.0"
    ) -> dict[str, Any]:
        sha256 = store(self.cache, build(entries, fmt))
        return {
            "id": "MyApp",
            "version": version,
            "sha256": sha256,
            "format": fmt,
            "file_name": f"MyApp.{version}.{fmt}",
        }

    def request(
        self,
        package: dict[str, Any],
        release: str = "1.0",
        variables: dict[str, str] | None = None,
        **arguments: Any,
    ) -> dict[str, Any]:
        values = {
            "Octo.Project.Name": "Shop",
            "Octo.Project.Id": "prj_1",
            "Octo.Environment.Name": "Dev",
            "Octo.Release.Number": release,
            "Octo.Deployment.Id": "dep_1",
            "Octo.Machine.Name": "web-01",
            "Octo.Step.Name": "Install",
            "Greeting": "hello",
            "Logging:Level": "Debug",
            "Port": "8080",
            "OrderFile": str(self.order),
            **(variables or {}),
        }
        listed = [variable(name, value) for name, value in values.items()]
        listed.append(variable("DbPassword", SECRET, sensitive=True))
        args: dict[str, Any] = {
            "package": package,
            "substitute_files": ["config/*.conf"],
            "structured_variables": ["appsettings.json"],
            "install_dir": None,
            "purge": False,
            "pre_deploy": None,
            "deploy": None,
            "post_deploy": None,
            "force": False,
            "keep_releases": None,
            "cancel_grace_seconds": 10,
            **arguments,
        }
        return make_request("deploy-package", args, variables=listed, context=self.context())

    def entries(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return list(json.loads(self.journal.read_text())["entries"])

    def order_lines(self) -> list[str]:
        return self.order.read_text().splitlines() if self.order.exists() else []


def serve(document: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> RunnerResult:
    """Run the request through the runner's ``serve`` in this process (no signal handlers)."""
    monkeypatch.setattr(runner_main, "install_signal_handlers", lambda token: None)
    monkeypatch.setattr(runner_main, "become_subreaper", lambda: False)
    out = io.BytesIO()
    code = runner_main.serve(io.BytesIO(json.dumps(document).encode()), out)
    text = out.getvalue().decode()
    return RunnerResult(code, parse_events(text), "", text)


def outputs(done: RunnerResult) -> dict[str, str]:
    return {e["name"]: e["value"] for e in done.of_type("output-variable")}
