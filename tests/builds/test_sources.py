"""The agent build's cache key: what the frozen agent is made from, and nothing of the server."""

from __future__ import annotations

from octo_appliance.builds.sources import PACKAGE, agent_closure, sources_digest


def test_the_closure_holds_the_agent_and_what_it_imports_not_the_server() -> None:
    files, outside = agent_closure()
    names = {path.relative_to(PACKAGE).as_posix() for path in files}

    assert {"agent/cli.py", "agent/version.py", "comms/connection.py"} <= names
    assert "builds/manifest.py" in names  # the agent verifies manifests
    assert not {n for n in names if n.startswith(("api/", "db/", "engine/", "vault/"))}
    assert not names & {"builds/agent.py", "builds/signing.py", "app.py", "appliance.py"}
    assert {"cryptography", "octo_runner"} <= outside
    assert not outside & {"starlette", "peewee", "pydantic", "psycopg", "hypercorn"}


def test_the_digest_is_stable_and_changes_with_the_version() -> None:
    assert sources_digest("1.0.0") == sources_digest("1.0.0")
    assert sources_digest("1.0.0") != sources_digest("2.0.0")
