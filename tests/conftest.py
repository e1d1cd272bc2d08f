"""Shared fixtures: a PostgreSQL database of our own for the run, and the backend parameter.

Every API test runs twice: on SQLite (the embedded default) and on the machine's PostgreSQL
(``OCTO_TEST_POSTGRES``, default ``postgresql://postgres@127.0.0.1:5432``). The run creates a
database named ``octo_test_<pid>`` and drops it at the end; each test starts from an empty
schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from octo_appliance.builds.agent import AgentBuild, cached_build
from octo_appliance.testing import OctoTestAppliance
from octo_appliance.vault import keys
from tests import build_cache

#: where the tests keep the frozen octo-agent builds, one folder per source hash: a run builds
#: each version at most once, and later runs reuse it until the agent's sources or the build
#: environment change (tests/build_cache.py)
AGENT_BUILDS = build_cache.root() / "agent-builds"
PG_SERVER = os.environ.get("OCTO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session", autouse=True)
def _no_key_written_to_the_machine() -> Iterator[None]:
    """Fail the run if anything (a child process too) wrote the machine's key location."""
    watched = [keys.SYSTEM_KEY_DIR, Path.home() / ".config" / keys.KEY_DIR_NAME]
    before = {path for path in watched if path.exists()}
    yield
    written = [str(path) for path in watched if path.exists() and path not in before]
    assert not written, f"a test wrote the machine's master key location: {written}"


@pytest.fixture(autouse=True)
def _machine_key_dirs_are_temporary(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test writes the machine's master key (/etc/octo-appliance, ~/.config/octo-appliance).

    The fixtures give each data dir its own key (``keep_key_beside``); this is the net for code
    that opens an appliance without them: in this process, and in children run as non-root.
    """
    home = tmp_path_factory.getbasetemp() / "key-homes" / os.urandom(6).hex()
    monkeypatch.setattr(keys, "SYSTEM_KEY_DIR", home / "etc")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"octo_test_{os.getpid()}"
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_SERVER}: {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        # Test data is disposable: skip the WAL flush on every commit (not a product setting).
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    yield f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_pg_schema(url: str) -> None:
    """Empty every table (far faster than dropping the schema); the schema stays migrated."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_version'"
        ).fetchall()
        if rows:
            conn.execute("TRUNCATE " + ", ".join(f'"{row[0]}"' for row in rows) + " CASCADE")


def drop_pg_schema(url: str) -> None:
    """For tests of a first start on an empty database."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    reset_pg_schema(url)
    return url


@pytest.fixture
def octo(
    octo_appliance_factory: Callable[..., OctoTestAppliance], database_url: str | None
) -> OctoTestAppliance:
    """An in-process appliance on the parametrised backend."""
    return octo_appliance_factory(database=database_url)


@pytest.fixture
def api(octo: OctoTestAppliance):  # type: ignore[no-untyped-def]
    return octo.api


@pytest.fixture(scope="session")
def agent_build_dir() -> Path:
    """The build cache the frozen-agent fixtures fill (``agent_build_dir`` of an appliance
    that should serve them)."""
    return AGENT_BUILDS


@pytest.fixture(scope="session")
def frozen_agent_of() -> Callable[[str | None], AgentBuild]:
    """``frozen_agent_of(version)``: the octo-agent executable stamped ``version`` (None: the
    package's), built by PyInstaller only when these sources have no build of it yet."""
    return lambda version=None: cached_build(AGENT_BUILDS, version=version)


@pytest.fixture(scope="session")
def frozen_agent(frozen_agent_of: Callable[[str | None], AgentBuild]) -> AgentBuild:
    """The octo-agent executable of these sources (what the appliance serves)."""
    return frozen_agent_of(None)
