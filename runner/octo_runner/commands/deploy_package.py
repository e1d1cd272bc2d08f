"""``deploy-package``: install a package from the agent's cache by the deployment conventions.

Order (docs/conventions.md): journal check (skip what this release already installed,
unless ``force``) -> extract into a new release folder -> PreDeploy -> substitute files ->
structured variables -> copy to ``install_dir`` -> Deploy -> PostDeploy; a failure after
extraction runs the package's DeployFailed script. As in Calamari, the scripts after the copy
(and DeployFailed) run in ``install_dir``, so a ported package's relative paths act on the
installed copy. Every attempt that extracted something is written to the journal; after a
success ``keep_releases`` applies retention. The arguments and the request context it needs
are described in docs/runner-protocol.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..cancellation import CancelToken
from ..conventions import Canceled, extract, globs, install_dir, journal, scripts
from ..conventions.target import Deployment, TargetPaths, agent_variables, safe_component
from ..errors import BadInputError, RunnerError
from ..protocol import Arguments, EventWriter, Request
from ..scripts.host import ScriptOutcome
from . import Outcome

COMMAND = "deploy-package"
INSTALLATION_PATH = "Action.Package.InstallationDirectoryPath"
EXTRACTED_PATH = "Action.Package.ExtractedPath"
#: the variables Calamari gives a package step, which ported scripts read
CUSTOM_DIRECTORY = "Action.Package.CustomInstallationDirectory"
PACKAGE_ID = "Action.Package.PackageId"
PACKAGE_VERSION = "Action.Package.PackageVersion"
#: the same two, as output variables of the step
OUTPUT_INSTALLATION_PATH = "Package.InstallationDirectoryPath"
OUTPUT_EXTRACTED_PATH = "Package.ExtractedPath"
STAGE_ARGUMENTS = {"PreDeploy": "pre_deploy", "Deploy": "deploy", "PostDeploy": "post_deploy"}
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Package:
    id: str
    version: str
    sha256: str
    format: str
    file_name: str
    #: bytes, when the request says (the cache is checked against it)
    size: int | None = None


@dataclass(frozen=True)
class Plan:
    """The validated arguments, context and deployment facts of one request."""

    package: Package
    substitute_files: list[str]
    structured_variables: list[str]
    install_dir: str | None
    purge: bool
    purge_exclusions: list[str]
    stages: dict[str, scripts.ConfiguredScript | None]
    force: bool
    keep_releases: int | None
    cancel_grace_seconds: float
    paths: TargetPaths
    deployment: Deployment

    @classmethod
    def from_request(cls, request: Request) -> Plan:
        args = Arguments(request.arguments, COMMAND)
        install = args.optional_string("install_dir")
        if install is not None and (not install.strip() or not os.path.isabs(install)):
            raise BadInputError(f"{COMMAND}: argument 'install_dir' must be an absolute path")
        return cls(
            package=_package(args.mapping("package")),
            substitute_files=_patterns(args, "substitute_files"),
            structured_variables=_patterns(args, "structured_variables"),
            install_dir=install,
            purge=args.boolean("purge", False),
            purge_exclusions=_patterns(args, "purge_exclusions"),
            stages={
                stage: scripts.configured(args.values.get(key), key, COMMAND)
                for stage, key in STAGE_ARGUMENTS.items()
            },
            force=args.boolean("force", False),
            keep_releases=keep_argument(args, "keep_releases", required=False),
            cancel_grace_seconds=args.number("cancel_grace_seconds", 10.0),
            paths=TargetPaths.from_request(request, COMMAND),
            deployment=Deployment.from_request(request, COMMAND),
        )


def _package(value: dict[str, Any] | None) -> Package:
    if value is None:
        raise BadInputError(f"{COMMAND}: argument 'package' is required")
    args = Arguments(value, f"{COMMAND} package")
    sha256 = args.string("sha256").lower()
    if not _SHA256.match(sha256):
        raise BadInputError(f"{COMMAND}: package 'sha256' must be 64 hexadecimal digits")
    package_id, version = args.string("id"), args.string("version")
    if not package_id.strip() or not version.strip():
        raise BadInputError(f"{COMMAND}: package 'id' and 'version' must not be empty")
    return Package(
        id=package_id,
        version=version,
        sha256=sha256,
        format=args.string("format", choices=extract.FORMATS),
        file_name=args.string("file_name", default=f"{package_id}.{version}"),
        size=_size(value.get("size")),
    )


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadInputError(f"{COMMAND}: package 'size' must be a number of bytes")
    return value


def _patterns(args: Arguments, key: str) -> list[str]:
    value = args.values.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadInputError(f"{COMMAND}: argument {key!r} must be a list of file patterns")
    return globs.validate(value, f"{COMMAND} {key}")


def keep_argument(args: Arguments, key: str, *, required: bool) -> int | None:
    value = args.values.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{args.command}: argument {key!r} must be a whole number >= 1")
    return value


def run(request: Request, events: EventWriter, cancel: CancelToken) -> Outcome:
    return _Deploy(Plan.from_request(request), request, events, cancel).run()


class _Deploy:
    def __init__(
        self, plan: Plan, request: Request, events: EventWriter, cancel: CancelToken
    ) -> None:
        self.plan = plan
        self.request = request
        self.events = events
        self.cancel = cancel
        self.journal = journal.Journal(plan.paths.journal_file, events)
        self.extracted_to = ""
        self.installed_to = ""
        self.stage_runner: scripts.StageRunner | None = None
        package, deployment = plan.package, plan.deployment
        self.label = f"{package.id} {package.version}"
        self.entry = journal.Entry(
            project=deployment.project,
            project_id=deployment.project_id,
            environment=deployment.environment,
            package_id=package.id,
            version=package.version,
            sha256=package.sha256,
            release=deployment.release,
            deployment_id=deployment.deployment_id,
            extracted_to="",
            installed_to="",
            installed_at="",
            success=False,
        )

    def run(self) -> Outcome:
        if not self.plan.force:
            done = journal.installed(self.journal.read(), self.entry)
            if done is not None:
                return self._skip(done)
        try:
            archive = self._verified_package()
            destination = release_folder(self.plan.paths.applications_dir, self.entry)
            fmt = self.plan.package.format
            extract.extract(archive, fmt, destination, self.events, self.cancel)
        except Canceled as exc:
            return self._outcome(False, exc.message, exc.exit_code, canceled=True)
        except RunnerError as exc:
            self.events.log("error", str(exc))
            return self._outcome(False, str(exc), exc.exit_code)
        self.extracted_to = self.installed_to = destination
        return self._conventions()

    def _skip(self, done: journal.Entry) -> Outcome:
        self.extracted_to = done.extracted_to
        self.installed_to = done.installed_to or done.extracted_to
        message = (
            f"{self.label} is already installed by release {done.release} in "
            f"{done.environment} (at {self.installed_to}): skipped; deploy with force to "
            "install it again"
        )
        self.events.log("info", message)
        self._output_variables()
        return self._outcome(True, message, 0, skipped=True)

    def _verified_package(self) -> str:
        """The cached package's path. The agent moved it there by rename only after its
        SHA-256 matched, so it is not hashed again here (that would read every package
        twice per deployment); its size is checked, and extraction checks every entry's
        CRC, so a damaged file still fails cleanly."""
        package = self.plan.package
        path = self.plan.paths.package_file(package.sha256)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            raise RunnerError(
                f"the package {package.file_name} ({package.sha256}) is not in the cache at {path}",
                hint="the agent transfers the package before this command: deploy again",
            ) from None
        except OSError as exc:
            raise RunnerError(f"cannot read the cached package {path}: {exc.strerror}") from exc
        if package.size is not None and size != package.size:
            raise RunnerError(
                f"the cached package {path} has {size} bytes, not {package.size} (it is damaged)",
                hint="delete it from the agent's cache and deploy again to fetch a fresh copy",
            )
        return path

    def _package_variables(self) -> dict[str, str]:
        plan = self.plan
        values = {}
        for prefix in ("Octo.", "Octopus."):
            values[prefix + INSTALLATION_PATH] = self.installed_to
            values[prefix + EXTRACTED_PATH] = self.extracted_to
            values[prefix + CUSTOM_DIRECTORY] = plan.install_dir or self.extracted_to
            values[prefix + PACKAGE_ID] = plan.package.id
            values[prefix + PACKAGE_VERSION] = plan.package.version
        return {**agent_variables(self.request.context), **values}

    def _conventions(self) -> Outcome:
        plan = self.plan
        runner = scripts.StageRunner(
            self.events,
            self.cancel,
            {**self.request.variable_map(), **self._package_variables()},
            self.extracted_to,
            plan.cancel_grace_seconds,
            # the helpers go to the run's work dir, never into the release folder
            helper_root=self.request.work_dir,
        )
        self.stage_runner = runner
        steps: list[tuple[str, Callable[[], tuple[str, ScriptOutcome] | None]]] = [
            ("PreDeploy", lambda: runner.run_stage("PreDeploy", plan.stages["PreDeploy"])),
            ("substitute files", self._substitute),
            ("structured variables", self._structured),
            ("install directory", self._install),
            ("Deploy", lambda: runner.run_stage("Deploy", plan.stages["Deploy"])),
            ("PostDeploy", lambda: runner.run_stage("PostDeploy", plan.stages["PostDeploy"])),
        ]
        skipped = False
        try:
            for index, (_name, step) in enumerate(steps):
                if runner.skip_requested:
                    rest = ", ".join(name for name, _ in steps[index:])
                    self.events.log(
                        "info",
                        f"{scripts.SKIP_VARIABLE} was set by a script: skipping {rest}",
                    )
                    skipped = True
                    break
                if self.cancel.cancelled:
                    raise Canceled(self.cancel.reason)
                failure = step()
                if failure is not None:
                    return self._script_failed(*failure)
        except Canceled as exc:
            return self._failed(exc.message, exc.exit_code, canceled=True)
        except RunnerError as exc:
            self.events.log("error", str(exc))
            return self._failed(str(exc), exc.exit_code)
        except OSError as exc:
            message = f"the deployment failed: {exc.strerror or exc}: {exc.filename or ''}"
            self.events.log("error", message)
            return self._failed(message, 1)
        return self._succeeded(skipped)

    def _substitute(self) -> None:
        if self.plan.substitute_files:
            from ..conventions.substitute import substitute_files

            assert self.stage_runner is not None
            variables = self.stage_runner.variables
            substitute_files(self.extracted_to, self.plan.substitute_files, variables, self.events)

    def _structured(self) -> None:
        if self.plan.structured_variables:
            from ..conventions.structured import replace_in_files

            assert self.stage_runner is not None
            variables = self.stage_runner.variables
            patterns = self.plan.structured_variables
            replace_in_files(self.extracted_to, patterns, variables, self.events)

    def _install(self) -> None:
        if self.plan.install_dir is None:
            if self.plan.purge:
                self.events.log("verbose", "purge is ignored: no install_dir is set")
            return
        installed = install_dir.check_target(
            self.plan.install_dir, self.extracted_to, self.plan.paths.applications_dir
        )
        install_dir.install(
            self.extracted_to,
            installed,
            self.plan.purge,
            self.plan.paths.applications_dir,
            self.events,
            self.cancel,
            self.plan.purge_exclusions,
        )
        self.installed_to = installed
        assert self.stage_runner is not None
        self.stage_runner.add_variables(self._package_variables())
        # Calamari: "from this point on, the current directory will be the custom-directory"
        self.stage_runner.work_dir = installed

    def _script_failed(self, label: str, outcome: ScriptOutcome) -> Outcome:
        if outcome.canceled:
            reason = outcome.cancel_reason or "canceled"
            return self._failed(reason, outcome.exit_code, canceled=True)
        message = outcome.result_message or f"{label} failed with exit code {outcome.exit_code}"
        return self._failed(message, outcome.exit_code)

    def _failed(self, message: str, exit_code: int, *, canceled: bool = False) -> Outcome:
        if canceled:
            self.events.log("warning", f"{message}: DeployFailed scripts are not run")
        elif self.stage_runner is not None:
            self.stage_runner.run_failed(message)
        self._record(success=False)
        self._output_variables()
        return self._outcome(False, message, exit_code or 1, canceled=canceled)

    def _succeeded(self, skipped_by_script: bool) -> Outcome:
        self._record(success=True)
        self._output_variables()
        keep = self.plan.keep_releases
        if keep is not None:
            self._retention(keep)
        message = f"Installed {self.label} to {self.installed_to}"
        if skipped_by_script:
            message += " (a script skipped the remaining conventions)"
        return self._outcome(True, message, 0)

    def _record(self, *, success: bool) -> None:
        entry = replace(
            self.entry,
            extracted_to=self.extracted_to,
            installed_to=self.installed_to,
            installed_at=journal.now(),
            success=success,
        )
        try:
            self.journal.append(entry)
        except RunnerError as exc:
            self.events.log("warning", f"the installation is not in the journal: {exc}")

    def _retention(self, keep: int) -> None:
        from ..conventions import retention

        try:
            retention.apply(
                self.journal,
                self.plan.paths.applications_dir,
                self.plan.paths.cache_dir,
                self.plan.deployment.project_id or self.plan.deployment.project,
                keep,
                self.events,
                environment=self.plan.deployment.environment,
            )
        except (RunnerError, OSError) as exc:
            self.events.log("warning", f"retention was not applied: {exc}")

    def _output_variables(self) -> None:
        """Named as Octopus names them: a later step reads
        ``Octopus.Action[Step].Output.Package.InstallationDirectoryPath`` (or ``Octo.``)."""
        if self.extracted_to:
            self.events.output_variable(OUTPUT_INSTALLATION_PATH, self.installed_to, False)
            self.events.output_variable(OUTPUT_EXTRACTED_PATH, self.extracted_to, False)

    def _outcome(
        self,
        success: bool,
        message: str,
        exit_code: int,
        *,
        skipped: bool = False,
        canceled: bool = False,
    ) -> Outcome:
        extra: dict[str, Any] = {
            "extracted_to": self.extracted_to or None,
            "installed_to": self.installed_to or None,
            "skipped": skipped,
        }
        if canceled:
            extra["canceled"] = True
            exit_code = Canceled.exit_code
        return Outcome(exit_code, success, message, extra)


def release_folder(applications_dir: str, entry: journal.Entry) -> str:
    """``<applications_dir>/<Environment>/<PackageId>/<Version>``, with ``_1``, ``_2``...
    when that folder is taken (a forced reinstall, another release of the same version, or
    an earlier attempt the journal does not count): a release folder is never reused."""
    base = os.path.join(
        applications_dir,
        safe_component(entry.environment),
        safe_component(entry.package_id),
        safe_component(entry.version),
    )
    candidate, number = base, 0
    while os.path.lexists(candidate):
        number += 1
        candidate = f"{base}_{number}"
    return candidate
