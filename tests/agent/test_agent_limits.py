"""``octo-agent run`` raises its open-file limit to the hard limit at start (a listening agent
serving many connections, and its listener's caps, need more than the usual soft 1,024)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

from octo_appliance.comms import generate_identity

from .support import AgentProcess, make_home


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit is Linux")
def test_the_agent_raises_its_open_file_limit_at_start(tmp_path: Path) -> None:
    appliance = generate_identity("appliance", ["127.0.0.1"])
    home = make_home(tmp_path / "home", name="limits", mode="listening", appliance=appliance)
    agent = AgentProcess([home])
    lowered = 'ulimit -S -n 256 && ulimit -H -n 1536 && exec "$@"'
    agent.args = ["sh", "-c", lowered, "sh", *agent.args]
    agent.start()
    try:
        assert agent.process is not None
        limits = resource.prlimit(agent.process.pid, resource.RLIMIT_NOFILE)
    finally:
        agent.close()
    assert limits == (1536, 1536)
