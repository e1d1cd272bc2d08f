"""The ``systemd-service`` step type: install or update a systemd unit from the deployed
package on each target, reload, restart, wait until it is active, and restore the previous
unit when it does not come up.

The work is target-side code (:mod:`octo_systemd_service.target.unit`, the runner command
``systemd-service``), shipped to agents in the plugin's bundle. The unit file comes from the
target: usually the folder a ``deploy-package`` step installed, named with its output
variable (``#{Octopus.Action[Install].Output.Package.InstallationDirectoryPath}/app.service``).
It changes the target, so it holds the target's mutex like any deployment work.
"""

from __future__ import annotations

from typing import Any

from octo_appliance import plugin_api as octo

#: the plugin API this plugin is written for (docs/plugins.md, "Plugin API version")
OCTO_PLUGIN_API = 2
COMMAND = "systemd-service"
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")

PROPERTIES: tuple[octo.Property, ...] = (
    octo.Property("unit_name", "string", "the unit's name, e.g. app.service", required=True),
    octo.Property(
        "unit_file",
        "string",
        "absolute path of the new unit file on the target, e.g. "
        "#{Octopus.Action[Install].Output.Package.InstallationDirectoryPath}/app.service",
        required=True,
    ),
    octo.Property("unit_dir", "string", "where units are installed", default="/etc/systemd/system"),
    octo.Property("enable", "boolean", "enable the unit (start at boot)", default=True),
    octo.Property(
        "wait_seconds",
        "integer",
        "how long the unit may take to become active",
        default=30,
        minimum=1,
    ),
    octo.Property(
        "settle_seconds",
        "integer",
        "how long it must then stay active (a crash right after start counts)",
        default=2,
        minimum=0,
    ),
    octo.Property("systemctl", "string", "the systemctl program", default="systemctl"),
)


def arguments(values: dict[str, Any]) -> dict[str, Any]:
    """The runner command's arguments from substituted properties, defaults filled in."""
    return {prop.name: values.get(prop.name, prop.default) for prop in PROPERTIES}


class SystemdService(octo.StepType):
    name = "systemd-service"
    target_code = octo.TargetCode("octo_systemd_service.target", {COMMAND: "unit:run"})
    summary = "Install or update a systemd unit, restart it, and roll back if it does not start"
    properties = PROPERTIES

    def validate(self, properties: dict[str, Any]) -> list[octo.FieldProblem]:
        problems = []
        unit = properties.get("unit_name")
        if isinstance(unit, str) and "#{" not in unit and not unit.endswith(UNIT_SUFFIXES):
            problems.append(
                octo.FieldProblem("unit_name", "must end with " + ", ".join(UNIT_SUFFIXES))
            )
        path = properties.get("unit_file")
        if isinstance(path, str) and not path.startswith(("/", "#{")):
            problems.append(octo.FieldProblem("unit_file", "must be an absolute path"))
        return problems

    async def execute(self, ctx: octo.StepContext) -> None:
        def request(target: octo.StepTarget) -> octo.RunnerRequest:
            return octo.RunnerRequest(COMMAND, arguments(ctx.properties_for(target)))

        runs = await ctx.run_on_targets(request)
        failed = [run for run in runs if run.state in ("failed", "canceled")]
        if failed:
            names = ", ".join(run.target.name for run in failed)
            raise octo.StepFailed(
                f"the unit did not come up on {len(failed)} of {len(runs)} target(s): "
                f"{names}; {failed[0].message}"
            )


@octo.hookimpl
def register_step_types(registry: octo.StepTypeRegistry) -> None:
    registry.add(SystemdService)
