"""A pytest plugin for plugin authors and for this project's own tests.

Installed as the ``octo_appliance`` pytest11 entry point, it gives fixtures that start a real
appliance in-process on a temporary data dir (SQLite by default) with the plugins under test
loaded, and an API client signed in as the administrator::

    def test_my_step_type(octo_api):
        octo_api.appliance_plugins = [my_plugin]   # or use octo_appliance_factory
        ...

Fixtures: ``octo_appliance_factory(extra_plugins=..., database=...)`` -> ``OctoTestAppliance``;
``octo_api`` -> an :class:`ApiClient` for an appliance with no extra plugins.
"""

from __future__ import annotations

import json
import secrets
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from octo_appliance.app import create_app
from octo_appliance.appliance import ADMIN_USERNAME, Appliance, open_appliance
from octo_appliance.config import CONFIG_FILE_NAME, load_config
from octo_appliance.db import User
from octo_appliance.db.api_keys import create_api_key
from octo_appliance.vault.keys import KEY_FILE_NAME


@dataclass
class ApiClient:
    """A TestClient bound to the API prefix and an API key."""

    client: TestClient
    key: str | None
    prefix: str = "/api/v1"
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(self.headers)
        if self.key:
            headers["X-Api-Key"] = self.key
        headers.update(kwargs.pop("headers", {}) or {})
        return self.client.request(method, self.prefix + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def as_key(self, key: str | None) -> ApiClient:
        return ApiClient(self.client, key, self.prefix, dict(self.headers))


@dataclass
class OctoTestAppliance:
    appliance: Appliance
    client: TestClient
    admin_key: str
    admin_password: str

    @property
    def api(self) -> ApiClient:
        return ApiClient(self.client, self.admin_key)

    def key_for(self, username: str) -> str:
        """Create an API key for an existing user (test setup shortcut)."""
        user = User.get(User.username == username)
        _, key = create_api_key(user, "test")
        return key


def keep_key_beside(data_dir: Path) -> Path:
    """Give ``data_dir`` a master key file of its own, ``<data dir>-key/master.key``.

    Written as ``master_key_file`` in the data dir's ``config.toml``, so every process opened on
    this data dir (``serve``, ``master-key``, ``backup``) finds it, and no test writes the
    machine's key (``/etc/octo-appliance`` as root, ``~/.config`` otherwise). Returns the path.
    """
    config = data_dir / CONFIG_FILE_NAME
    existing = config.read_text(encoding="utf-8") if config.is_file() else ""
    named = tomllib.loads(existing).get("master_key_file")
    if named:
        return Path(named)
    key_file = data_dir.parent / f"{data_dir.name}-key" / KEY_FILE_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    if existing and not existing.endswith("\n"):
        existing += "\n"
    config.write_text(existing + f"master_key_file = {json.dumps(str(key_file))}\n", "utf-8")
    return key_file


def start_test_appliance(
    data_dir: Path, *, database: str | None = None, extra_plugins: tuple[object, ...] = ()
) -> OctoTestAppliance:
    password = "admin-" + secrets.token_hex(8)
    keep_key_beside(data_dir)
    # never a PyInstaller run in a test's thread: an agent build is served only when one is
    # already in the data dir's ``agent_build_dir`` (config.toml)
    flags = {"data_dir": str(data_dir), "database": database, "agent_build_on_request": "false"}
    config = load_config(flags, environ={})
    appliance, _ = open_appliance(
        config, extra_plugins=extra_plugins, environ={"OCTO_ADMIN_PASSWORD": password}
    )
    admin = User.get(User.username == ADMIN_USERNAME)
    _, key = create_api_key(admin, "test admin")
    client = TestClient(create_app(appliance), base_url="https://testserver")
    return OctoTestAppliance(appliance, client, key, password)


@pytest.fixture
def octo_appliance_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., OctoTestAppliance]]:
    started: list[OctoTestAppliance] = []

    def factory(
        *, extra_plugins: tuple[object, ...] = (), database: str | None = None
    ) -> OctoTestAppliance:
        instance = start_test_appliance(
            tmp_path / f"data{len(started)}", database=database, extra_plugins=extra_plugins
        )
        started.append(instance)
        return instance

    yield factory
    for instance in started:
        instance.client.close()
        instance.appliance.close()


@pytest.fixture
def octo_api(octo_appliance_factory: Callable[..., OctoTestAppliance]) -> ApiClient:
    return octo_appliance_factory().api
