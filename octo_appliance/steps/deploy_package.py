"""``deploy-package``: put a package from the built-in feed on every target of the step's roles
(or on the built-in worker) and install it by the runner's conventions.

Properties (validated per field): ``package`` (the feed package id; the release pins the
version), ``substitute_files`` and ``structured_variables`` (globs relative to the extracted
package), ``install_dir`` (copy there after the conventions; ``purge`` empties it first, but
for what matches ``purge_exclusions``, globs relative to ``install_dir``),
``pre_deploy``, ``deploy``, ``post_deploy`` (scripts: a bash body as text, or
``{"syntax", "body"}``; the runner substitutes them as they run), ``run_on`` (``targets``,
the default, or ``appliance``) and ``keep_releases`` (after a success, keep this many
releases of the project on the target).

Order of work: the package is sent to all targets at once (cached by SHA-256, a delta when
the target has an older version), and the runner's ``deploy-package`` command runs on each
target, within the step's rolling window, as soon as that target holds the package: targets
that received it install while others still receive. docs/conventions.md describes what the runner
does; docs/package-transfer.md how the bytes travel.
"""

from __future__ import annotations

import re
from typing import Any

from octo_runner.substitution import TemplateSyntaxError, parse

from octo_appliance.plugin_api import PLUGIN_API_VERSION, StepTypeRegistry, hookimpl
from octo_appliance.plugin_api.properties import unknown_properties
from octo_appliance.plugin_api.steps import (
    FieldProblem,
    PackageInfo,
    Property,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepTarget,
    StepType,
)
from octo_appliance.steps.run_script import RUN_ON, SYNTAXES, run_on

SCRIPTS = ("pre_deploy", "deploy", "post_deploy")
GLOB_LISTS = ("substitute_files", "structured_variables", "purge_exclusions")
KNOWN = frozenset(
    {"package", "install_dir", "purge", "run_on", "keep_releases", *SCRIPTS, *GLOB_LISTS}
)
PACKAGE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
MAX_SCRIPT_CHARS = 1_048_576
MAX_GLOBS = 200
MAX_KEEP = 1000


def script_of(value: Any) -> dict[str, str] | None:
    """A script property as ``{"syntax", "body"}`` (text means bash); None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return {"syntax": "bash", "body": value}
    return {"syntax": str(value.get("syntax", "bash")), "body": str(value.get("body", ""))}


def _runner_script(value: Any) -> dict[str, Any] | None:
    """A script as the runner's ``deploy-package`` takes it: substituted by the runner."""
    script = script_of(value)
    return None if script is None else {**script, "substitute": True}


def _template_problem(field: str, text: str) -> FieldProblem | None:
    try:
        parse(text)
    except TemplateSyntaxError as exc:
        return FieldProblem(field, exc.message)
    return None


def _script_problems(field: str, value: Any) -> list[FieldProblem]:
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"syntax", "body"})
        if unknown:
            return [FieldProblem(f"{field}.{unknown[0]}", "is not a script field (syntax, body)")]
        if value.get("syntax", "bash") not in SYNTAXES:
            return [FieldProblem(f"{field}.syntax", "must be one of " + ", ".join(SYNTAXES))]
        body = value.get("body")
    elif isinstance(value, str):
        body = value
    else:
        return [FieldProblem(field, 'must be a bash script as text, or {"syntax", "body"}')]
    if not isinstance(body, str) or not body.strip():
        return [FieldProblem(f"{field}.body" if isinstance(value, dict) else field, "is empty")]
    if len(body) > MAX_SCRIPT_CHARS:
        return [FieldProblem(field, f"is longer than {MAX_SCRIPT_CHARS} characters")]
    problem = _template_problem(field, body)
    return [problem] if problem else []


def _glob_problems(field: str, value: Any) -> list[FieldProblem]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        return [FieldProblem(field, 'must be a list of file patterns, e.g. ["config/*.json"]')]
    if len(value) > MAX_GLOBS:
        return [FieldProblem(field, f"has more than {MAX_GLOBS} patterns")]
    for pattern in value:
        if pattern.startswith("/") or ".." in pattern.split("/"):
            where = "install_dir" if field == "purge_exclusions" else "the extracted package"
            return [FieldProblem(field, f"'{pattern}' must stay inside {where}")]
    return []


class DeployPackage(StepType):
    name = "deploy-package"
    summary = "Send a package from the feed to each target and install it by convention"
    # As Calamari does, the runner substitutes the scripts when it runs them, so they can use
    # #{Octopus.Action.Package.InstallationDirectoryPath} and the other package variables.
    runner_substituted = frozenset(SCRIPTS)
    properties = (
        Property(
            "package",
            "string",
            "The feed package id (letters, digits, '.', '-', '_'); the release pins the version.",
            required=True,
            max_length=200,
        ),
        *(
            Property(name, "list", help, max_length=MAX_GLOBS)
            for name, help in (
                ("substitute_files", "Files whose #{...} are substituted (globs in the package)."),
                (
                    "structured_variables",
                    "JSON/YAML/XML/properties files whose keys variables "
                    "replace (globs in the package).",
                ),
                ("purge_exclusions", "What purge keeps (globs relative to install_dir)."),
            )
        ),
        Property("install_dir", "string", "Copy the package there after the conventions."),
        Property("purge", "boolean", "Empty install_dir first.", default=False),
        *(
            Property(name, "script", help, max_length=MAX_SCRIPT_CHARS)
            for name, help in (
                ("pre_deploy", "Script run before the package is installed."),
                ("deploy", "Script run in the extracted package."),
                ("post_deploy", "Script run after the package is installed."),
            )
        ),
        Property(
            "run_on",
            "string",
            "targets: every target of the step's roles; appliance: the built-in worker.",
            default="targets",
            enum=RUN_ON,
        ),
        Property(
            "keep_releases",
            "integer",
            "After a success, keep this many releases of the project on the target.",
            minimum=1,
            maximum=MAX_KEEP,
        ),
    )

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        problems = unknown_properties(properties, KNOWN, "is not a property of deploy-package")
        package = properties.get("package")
        if not isinstance(package, str) or not package:
            problems.append(FieldProblem("package", "is required: the id of a feed package"))
        elif not PACKAGE_ID.match(package):
            problems.append(
                FieldProblem(
                    "package",
                    "must be a package id (letters, digits, '.', '-', '_'), e.g. Acme.Web",
                )
            )
        for field in GLOB_LISTS:
            problems += _glob_problems(field, properties.get(field))
        for field in SCRIPTS:
            problems += _script_problems(field, properties.get(field))
        install_dir = properties.get("install_dir")
        if install_dir is not None:
            if not isinstance(install_dir, str) or not install_dir.strip():
                problems.append(FieldProblem("install_dir", "must be a directory path"))
            elif (problem := _template_problem("install_dir", install_dir)) is not None:
                problems.append(problem)
        if not isinstance(properties.get("purge", False), bool):
            problems.append(FieldProblem("purge", "must be true or false"))
        if properties.get("purge") and not properties.get("install_dir"):
            problems.append(FieldProblem("purge", "needs install_dir: it empties that directory"))
        if properties.get("purge_exclusions") and properties.get("purge") is not True:
            problems.append(
                FieldProblem("purge_exclusions", "needs purge: they list what purge keeps")
            )
        if properties.get("run_on", "targets") not in RUN_ON:
            problems.append(FieldProblem("run_on", "must be targets or appliance"))
        keep = properties.get("keep_releases")
        if keep is not None and (
            not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= MAX_KEEP
        ):
            problems.append(FieldProblem("keep_releases", f"must be a number from 1 to {MAX_KEEP}"))
        return problems

    def package_ids(self, properties: dict[str, Any]) -> list[str]:
        package = properties.get("package")
        return [package] if isinstance(package, str) and package else []

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        return run_on(properties) != "appliance"

    def runs_on_appliance(self, properties: dict[str, Any]) -> bool:
        return run_on(properties) == "appliance"

    async def execute(self, ctx: StepContext) -> None:
        package = ctx.package(str(ctx.step.properties["package"]))
        on_appliance = not self.targets_machines(ctx.step.properties)
        ctx.log(
            "info",
            f"Package {package.package_id} {package.version} "
            f"({package.size} bytes, SHA-256 {package.sha256[:12]}…).",
        )
        # every target's transfer starts now; each target installs once its own has ended
        await ctx.acquire_package(package, appliance=on_appliance, wait=on_appliance)

        def request(target: StepTarget | None) -> RunnerRequest:
            return RunnerRequest(
                "deploy-package", self.arguments(ctx, target, package), package=package
            )

        if on_appliance:
            run = await ctx.run_on_appliance(request(None))
            if run.state in ("failed", "canceled", "timed_out"):
                raise StepFailed(f"the package was not installed on the appliance: {run.message}")
            return
        runs = await ctx.run_on_targets(request)
        failed = [run.target.name for run in runs if run.state in ("failed", "canceled")]
        if failed:
            raise StepFailed(
                f"the package was not installed on {len(failed)} of {len(runs)} target(s): "
                + ", ".join(failed)
            )

    def arguments(
        self, ctx: StepContext, target: StepTarget | None, package: PackageInfo
    ) -> dict[str, Any]:
        """The runner's ``deploy-package`` arguments for one target (properties substituted
        by the engine, so the runner runs the scripts as given)."""
        values = ctx.properties_for(target)
        return {
            "package": package.as_argument(),
            "substitute_files": list(values.get("substitute_files") or []),
            "structured_variables": list(values.get("structured_variables") or []),
            "install_dir": values.get("install_dir") or None,
            "purge": bool(values.get("purge", False)),
            "purge_exclusions": list(values.get("purge_exclusions") or []),
            **{name: _runner_script(values.get(name)) for name in SCRIPTS},
            "force": ctx.force,
            "keep_releases": values.get("keep_releases"),
        }


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_step_types(registry: StepTypeRegistry) -> None:
    registry.add(DeployPackage)
