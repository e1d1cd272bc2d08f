"""The interface every step type implements, built-in or third-party, and what it is given.

A step type declares its properties (:attr:`StepType.properties`, a schema the API checks and
publishes), validates what a schema cannot say (:meth:`StepType.validate`) and, when a deployment
reaches it, runs through :meth:`StepType.execute` with a :class:`StepContext`. The context is
the only door a step has into the engine: the targets the step runs on, its properties with
``#{...}`` already substituted per target, the runner on those targets or on the appliance,
interruptions (a person's decision) and the task log. Steps never import the engine, the
database or a transport; that keeps a third-party step working across engine changes.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from octo_runner.commands import COMMANDS as BUILTIN_COMMANDS

from octo_appliance.exceptions import OctoError
from octo_appliance.plugin_api.properties import FieldProblem, Property, schema_problems

#: states a target can end a step in (see docs/deployments.md, Execution)
TARGET_RUN_STATES: tuple[str, ...] = ("success", "failed", "skipped", "excluded", "canceled")


@dataclass(frozen=True)
class StepTarget:
    """A deployment target as a step sees it (no database row, no transport)."""

    id: str
    name: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageInfo:
    """One exact package version from the feed, as a release pinned it for a step."""

    package_id: str
    version: str
    sha256: str
    size: int
    format: str
    #: ``ID.VERSION.ext``, the name it was pushed under
    file_name: str
    #: the feed's id of this version (``pkg_...``), for reading its content
    id: str = ""

    def as_argument(self) -> dict[str, Any]:
        """What the runner's ``deploy-package`` command receives as ``package``."""
        return {
            "id": self.package_id,
            "version": self.version,
            "sha256": self.sha256,
            "format": self.format,
            "file_name": self.file_name,
            "size": self.size,
        }


#: how a package reached a target: already there, whole, as a delta, or not at all
TRANSFER_MODES: tuple[str, ...] = ("cached", "full", "delta", "failed")


@dataclass(frozen=True)
class PackageTransfer:
    """What placing a package in one target's cache did."""

    target: StepTarget
    #: one of :data:`TRANSFER_MODES`
    mode: str
    bytes_sent: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.mode != "failed"


@dataclass(frozen=True)
class RunnerRequest:
    """One runner command for one target; the engine adds the target's variables."""

    command: str
    arguments: dict[str, Any]
    #: hold the target's mutex while it runs (deployment work does; read-only checks need not)
    exclusive: bool = True
    #: the package the command needs in the target's cache: the engine places it first when
    #: :meth:`StepContext.acquire_package` did not (a retry after a failed transfer)
    package: PackageInfo | None = None


@dataclass(frozen=True)
class OutputValue:
    name: str
    value: str
    sensitive: bool = False


@dataclass(frozen=True)
class TargetRun:
    """How one target ended a runner command, after retries and guided failure."""

    target: StepTarget
    #: one of :data:`TARGET_RUN_STATES`
    state: str
    exit_code: int | None = None
    message: str = ""
    output_variables: tuple[OutputValue, ...] = ()
    attempts: int = 0

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


@dataclass(frozen=True)
class InterruptionAnswer:
    """What a person answered: one of the options offered, with their notes."""

    result: str
    notes: str = ""
    submitted_by: str = ""


@dataclass(frozen=True)
class InterruptionQuestion:
    """What :meth:`StepContext.interrupt` asks a person (as :meth:`StepContext.ask` gets it)."""

    kind: str
    title: str
    instructions: str
    teams: tuple[str, ...]
    options: tuple[str, ...]
    target: StepTarget | None = None


class StepFailed(OctoError):
    """Raised by :meth:`StepType.execute`: the step fails with this message."""


@dataclass(frozen=True)
class StepInfo:
    """The step being run, as the release snapshot defines it."""

    name: str
    type: str
    roles: tuple[str, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)
    window: int | None = None
    retries: int = 0
    timeout: int | None = None


MakeRequest = Callable[[StepTarget], RunnerRequest]


class StepContext(ABC):
    """What :meth:`StepType.execute` may use; implemented by the deployment engine."""

    step: StepInfo
    #: the targets this step runs on in this deployment (empty for appliance-only steps)
    targets: Sequence[StepTarget]
    #: the deployment asked to redo work that targets record as done (``"force": true``)
    force: bool = False

    @abstractmethod
    def properties_for(self, target: StepTarget | None) -> dict[str, Any]:
        """The step's properties with ``#{...}`` substituted for ``target`` (None: the
        appliance). Unresolved names were reported before the deployment started."""

    @abstractmethod
    async def run_on_targets(
        self, make_request: MakeRequest, window: int | None = None
    ) -> list[TargetRun]:
        """Run a runner command on every target of the step, at most ``window`` at a time
        (default: the step's rolling window), with the step's retries, timeout and guided
        failure applied per target. Never raises for a target's failure: read the states."""

    @abstractmethod
    async def run_on_appliance(self, request: RunnerRequest) -> TargetRun:
        """Run a runner command once on the appliance's built-in worker."""

    @abstractmethod
    def package(self, package_id: str) -> PackageInfo:
        """The version of ``package_id`` the release pinned for this step (see
        :meth:`StepType.package_ids`); :class:`StepFailed` when it pinned none or the feed no
        longer holds it."""

    @abstractmethod
    async def acquire_package(
        self, package: PackageInfo, *, appliance: bool = False, wait: bool = True
    ) -> list[PackageTransfer]:
        """Place ``package`` in the cache of every target of the step (``appliance``: the
        built-in worker's) at once, within the appliance's package parallelism, sending
        nothing where the content is already cached and a binary delta where that is smaller.
        Never raises for one target's failure: read the transfers; a later
        :meth:`run_on_targets` retries the transfer for a target whose transfer failed.

        With ``wait=False`` the transfers start and this returns ``[]`` at once: a later
        :meth:`run_on_targets` whose requests name the package waits, per target, for that
        target's transfer only, so a target installs while others still receive (the task
        log and progress still record each transfer)."""

    async def interrupt(
        self,
        kind: str,
        title: str,
        instructions: str,
        teams: Sequence[str],
        options: Sequence[str],
        target: StepTarget | None = None,
    ) -> InterruptionAnswer:
        """Pause until a member of ``teams`` (ids or names; empty: anyone allowed to deploy)
        answers with one of ``options``; the question and answer go to the task log."""
        question = InterruptionQuestion(
            kind, title, instructions, tuple(teams), tuple(options), target
        )
        return await self.ask(question)

    @abstractmethod
    async def ask(self, question: InterruptionQuestion) -> InterruptionAnswer:
        """What :meth:`interrupt` does, for whoever implements this interface (the engine,
        the authors' kit's fake): ask a person ``question`` and wait for the answer."""

    @abstractmethod
    def log(self, level: str, message: str, target: StepTarget | None = None) -> None:
        """A task log line (masked); levels: verbose, info, highlight, warning, error."""


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_COMMAND_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_COMMAND_TARGET = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)


@dataclass(frozen=True)
class TargetCode:
    """Runner commands a step type ships to its targets (docs/plugins.md, "Code on the
    target"): the folder of ``package`` (an importable package of the plugin, standard
    library and ``octo_runner.plugin_api`` only) is bundled into a zip named by its SHA-256,
    which agents fetch once and cache, and the runner loads from there."""

    #: dotted name of the package whose folder is shipped, e.g. ``octo_http_check.target``
    package: str
    #: command name -> ``module:function`` within ``package`` (``probe:run``); a step's
    #: :class:`RunnerRequest` names the command, the engine adds the bundle
    commands: Mapping[str, str]

    def problem(self) -> str | None:
        """What is wrong with the declaration, or None (checked when the step type is
        registered; that each module is in the package, when the bundle is built)."""
        if not isinstance(self.package, str) or not _DOTTED.match(self.package):
            return f"package {self.package!r} is not a dotted package name"
        if not isinstance(self.commands, Mapping) or not self.commands:
            return "commands must name at least one runner command"
        for command, target in self.commands.items():
            if not isinstance(command, str) or not _COMMAND_NAME.match(command):
                return f"runner command {command!r} is not lower-case words joined by dashes"
            if command in BUILTIN_COMMANDS:
                return f"runner command {command!r} is built into the runner: not replaceable"
            if not isinstance(target, str) or not _COMMAND_TARGET.match(target):
                return f"runner command {command!r}: {target!r} is not 'module:function'"
        return None


class StepType:
    """Base class of step types. Subclasses set ``name`` and ``summary``.

    ``validate`` returns the problems with a step's properties (empty when valid), so the API
    can report every bad field at once rather than the first.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: the step's properties as a schema: the API rejects a process step that breaks it
    #: (4xx naming the field) before :meth:`validate` runs, and publishes it for forms
    properties: ClassVar[tuple[Property, ...]] = ()
    #: properties the engine leaves as written because the runner substitutes them when it
    #: runs them, with variables only it knows (``deploy-package``'s scripts, as Calamari)
    runner_substituted: ClassVar[frozenset[str]] = frozenset()
    #: runner commands this step type brings to its targets (None: it uses the built-in
    #: commands only); see :class:`TargetCode`
    target_code: ClassVar[TargetCode | None] = None

    def validate(self, properties: dict[str, Any]) -> list[FieldProblem]:
        """Problems :attr:`properties` cannot express (called after the schema check, with
        only the fields the schema accepted reported from here). Default: none."""
        return []

    def package_ids(self, properties: dict[str, Any]) -> list[str]:
        """Ids of the feed packages the step deploys: a release pins one version of each
        (the latest unless the release names one), and the feed keeps those versions."""
        return []

    def targets_machines(self, properties: dict[str, Any]) -> bool:
        """True when the step runs on the deployment's targets (and so needs their roles);
        False when it runs once, on the appliance or nowhere (a manual intervention)."""
        return True

    def runs_on_appliance(self, properties: dict[str, Any]) -> bool:
        """True when the step runs code on the appliance machine (the built-in worker):
        saving, releasing and deploying such a step needs ``worker.use``, and the engine
        refuses :meth:`StepContext.run_on_appliance` to a step type that does not say so."""
        return False

    async def execute(self, ctx: StepContext) -> None:
        """Do the step; return on success, raise :class:`StepFailed` to fail it."""
        raise StepFailed(
            f"step type '{self.name}' cannot be executed",
            hint="the plugin that provides it implements validation only; update it",
        )


def property_problems(step_type: StepType, properties: dict[str, Any]) -> list[FieldProblem]:
    """Every problem with a step's properties: the declared schema's first, then the step
    type's own :meth:`StepType.validate` for the fields the schema found no fault with."""
    found = schema_problems(step_type.name, step_type.properties, properties)
    reported = {problem.field.split(".")[0] for problem in found}
    for problem in step_type.validate(properties):
        if problem.field.split(".")[0] not in reported:
            found.append(problem)
    return found


__all__ = [
    "TARGET_RUN_STATES",
    "TRANSFER_MODES",
    "FieldProblem",
    "InterruptionAnswer",
    "InterruptionQuestion",
    "MakeRequest",
    "OutputValue",
    "PackageInfo",
    "PackageTransfer",
    "Property",
    "RunnerRequest",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StepTarget",
    "StepType",
    "TargetCode",
    "TargetRun",
    "property_problems",
]
