"""The plugin deployment the development install and the single executable both carry out:
plugins found in a plugins folder (a wheel with a step type, a wheel needing a missing
dependency, a package folder that fails at import) are listed by ``GET /api/v1/plugins`` with
their state, the broken ones are skipped, and the wheel's step type is deployed end to end on
a listening and a polling agent.

Run on ``python -m octo_appliance`` (``<data dir>/plugins/``) by
``tests/integration/test_plugins_installed.py`` and on ``dist/octo-appliance`` (``plugins/``
beside the executable) by ``tests/binary/test_binary.py``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.fleet import Fleet
from tests.plugin_wheels import GREETING, NEEDS_MISSING, fixture_wheel

BROKEN = "octo-broken"
AGENTS = (("greet-listening", "listening"), ("greet-polling", "polling"))


def fill_plugins_folder(folder: Path) -> None:
    """Two wheels (one loads, one needs what no appliance holds) and a broken package."""
    fixture_wheel(GREETING, folder)
    fixture_wheel(NEEDS_MISSING, folder)
    broken = folder / BROKEN.replace("-", "_")
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('broken on purpose')\n")


def run_plugin_scenario(fleet: Fleet) -> None:
    rows = {row["name"]: row for row in fleet.call("GET", "/plugins")["items"]}
    greeting = rows[GREETING]
    assert (greeting["source"], greeting["version"], greeting["state"]) == (
        "wheel",
        "1.0.0",
        "loaded",
    ), greeting
    assert greeting["step_types"] == ["greeting"]
    assert rows[NEEDS_MISSING]["state"] == "failed"
    assert "octo-no-such-dependency" in rows[NEEDS_MISSING]["error"]
    assert rows[BROKEN]["state"] == "failed"
    assert "broken on purpose" in rows[BROKEN]["error"]
    assert "failed and is skipped" in fleet.server.output()

    agents = fleet.register_many(AGENTS)
    fleet.start_agents(agents, together=True)
    fleet.wait_connected(agents)
    who = f"plugin-{secrets.token_hex(3)}"
    steps = [{"name": "Greet", "type": "greeting", "roles": ["web"], "properties": {"name": who}}]
    task = fleet.wait_task(fleet.start_deployment(steps), timeout=180)
    log = fleet.text_log(task["id"])
    assert task["state"] == "success", f"{task['error']}\n{log}"
    for name, _ in AGENTS:
        lines = fleet.log_of(task["id"], name)
        assert f"Hello, {who}, from octo-greeting 1.0.0" in lines, (name, lines)
