"""The one deployment that the development install and the single executable must both carry
out end to end (issue 15, section 1), so the two cannot drift apart again.

Through the REST API of a real appliance process (:class:`~tests.fleet.Fleet`) with a listening
and a polling agent: an ad-hoc script on the agents, then a release of a project whose process
installs a pushed package on the agents (with a file templated from a variable and its
``Deploy.sh``), runs a step on the appliance's built-in worker (``run_on: appliance``) and a
script on the agents that reads the install step's output variable. Run on
``python -m octo_appliance`` by ``tests/integration/test_deployment_scenario.py`` and on
``dist/octo-appliance`` by ``tests/binary/test_binary.py``; the agents are the development
install's ``octo-agent`` in both.
"""

from __future__ import annotations

import secrets

from tests.fleet import Fleet, script_step
from tests.packages_support import zip_bytes

AGENTS = (("web-listening", "listening"), ("web-polling", "polling"))
WORKER_TARGET = "appliance"


def run_scenario(fleet: Fleet) -> None:
    """Register and start the agents, then the script and the deployment; asserts each."""
    agents = fleet.register_many(AGENTS)
    fleet.start_agents(agents, together=True)
    fleet.wait_connected(agents)
    script_and_deployment(fleet, [name for name, _ in AGENTS])


def script_and_deployment(fleet: Fleet, names: list[str]) -> None:
    """The script and the deployment on the connected targets ``names`` (role ``web`` in Dev;
    also used by the one-line install's test, on the targets it installed)."""

    # an ad-hoc script on the agents (POST /api/v1/scripts)
    marker = f"script-{secrets.token_hex(4)}"
    task = fleet.wait_task(fleet.run_script(f"echo {marker}", roles=["web"]), timeout=120)
    assert task["state"] == "success", task["error"]
    for name in names:
        assert marker in fleet.log_of(task["id"], name), (name, fleet.log(task["id"]))

    # a package deployment with a step on the appliance
    package_id = f"Scenario{secrets.token_hex(2)}"
    archive = zip_bytes(
        {
            "config/app.conf": b"greeting=#{Greeting}\n",
            "Deploy.sh": b'echo "Deploy.sh ran in $(basename "$PWD")"\n',
        }
    )
    upload = {"file": (f"{package_id}.1.0.0.zip", archive, "application/octet-stream")}
    fleet.call("POST", "/packages", 201, files=upload, timeout=120)
    steps = [
        {
            "name": "Install",
            "type": "deploy-package",
            "roles": ["web"],
            "properties": {"package": package_id, "substitute_files": ["config/*.conf"]},
        },
        # the environment is the worker's allow-list, whatever starts the runner
        script_step(
            "On the appliance",
            'echo "worker says #{Greeting}"\necho "library path: ${LD_LIBRARY_PATH:-none}"\n',
            run_on="appliance",
        ),
        script_step(
            "Report",
            'cat "#{Octopus.Action[Install].Output.Package.InstallationDirectoryPath}'
            '/config/app.conf"',
        ),
    ]
    variables = [{"name": "Greeting", "value": "hello from #{Octo.Environment.Name}"}]
    task = fleet.wait_task(fleet.start_deployment(steps, variables), timeout=180)
    log = fleet.text_log(task["id"])
    assert task["state"] == "success", f"{task['error']}\n{log}"

    for name in names:
        lines = fleet.log_of(task["id"], name)
        assert "greeting=hello from Dev" in lines, (name, lines)
        assert any(line.startswith("Deploy.sh ran in ") for line in lines), (name, lines)
    worker = fleet.log_of(task["id"], WORKER_TARGET)
    assert "worker says hello from Dev" in worker, log
    assert "library path: none" in worker, log
