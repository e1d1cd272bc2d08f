"""Deployment scripts: ``PreDeploy``, ``Deploy``, ``PostDeploy`` and ``DeployFailed``.

Each stage runs the package's script (the first of ``<Stage>.sh`` with bash, else sh;
``<Stage>.py`` with the runner's Python; ``<Stage>.ps1`` only when ``pwsh`` is on PATH; file
names matched case-insensitively at the root of the release folder) and the step's configured
script for the stage: the configured one first for PreDeploy, the package's first for Deploy
and PostDeploy, as Calamari orders them. Only one package script runs per stage, as in
Calamari, so a package that carries ``Deploy.sh`` and ``Deploy.ps1`` for two platforms runs
``Deploy.sh`` here. Scripts run in the *current directory*: the release folder, and the
custom installation directory once the ``install_dir`` copy has run (Calamari does the same,
so relative paths in a ported package act on the installed copy). They get the deployment's
variables (plus the ``Octo.Action.Package.*`` paths and the output variables that earlier
scripts of this deployment set). A configured script sent with ``substitute`` is
``#{...}``-substituted, strictly, just before it runs, with those variables (Calamari does
the same); package scripts read variables through the helpers (``get_octovariable``...).

A script that sets the output variable ``Octo.Action.SkipRemainingConventions`` (or
``Octopus.``...) to ``True`` ends the deployment successfully after it: no later script or
convention runs. ``DeployFailed`` package scripts run after a failure, with the error in
``Octo.Deployment.Error``; their own failure is logged and does not change the result.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..cancellation import CancelToken
from ..errors import BadInputError, RunnerError
from ..protocol import Arguments, EventWriter
from ..scripts import host
from ..scripts.launch import SYNTAXES
from ..substitution import evaluate_variables, substitute

STAGES = ("PreDeploy", "Deploy", "PostDeploy", "DeployFailed")
SKIP_VARIABLE = "Octo.Action.SkipRemainingConventions"
_SKIP_NAMES = ("octo.action.skipremainingconventions", "octopus.action.skipremainingconventions")
_EXTENSIONS = ((".sh", "shell"), (".py", "python"), (".ps1", "pwsh"))


@dataclass(frozen=True)
class ConfiguredScript:
    """A step's script for one stage, as the engine sends it (already substituted)."""

    syntax: str
    body: str
    interpreter: str | None = None
    #: substitute ``#{...}`` in the body just before it runs, with the variables of that
    #: moment (the package paths, earlier scripts' outputs), as Calamari does
    substitute: bool = False


def configured(value: Any, key: str, command: str) -> ConfiguredScript | None:
    """Validate the ``key`` argument: ``null`` or
    ``{"syntax", "body"[, "interpreter"][, "substitute"]}``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInputError(f"{command}: argument {key!r} must be null or {{syntax, body}}")
    args = Arguments(value, f"{command} {key}")
    return ConfiguredScript(
        syntax=args.string("syntax", choices=SYNTAXES),
        body=args.string("body"),
        interpreter=args.optional_string("interpreter"),
        substitute=args.boolean("substitute", False),
    )


def package_scripts(root: str, stage: str) -> list[tuple[str, str]]:
    """``(file name, syntax)`` of the package's scripts for ``stage``, preferred first."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    found: list[tuple[str, str]] = []
    for extension, kind in _EXTENSIONS:
        wanted = (stage + extension).lower()
        for name in names:
            if name.lower() == wanted and os.path.isfile(os.path.join(root, name)):
                syntax = kind
                if kind == "shell":
                    syntax = "bash" if shutil.which("bash") else "sh"
                found.append((name, syntax))
    return found


@dataclass(frozen=True)
class _Job:
    label: str
    syntax: str
    body: str
    interpreter: str | None
    #: the file name the script's ``$0`` shows
    name: str
    #: ``#{...}`` is substituted just before it runs
    substitute: bool = False


class _Recording(EventWriter):
    """Passes every event to the real writer and remembers the output variables scripts
    set, so later scripts see them and a skip request is noticed."""

    def __init__(self, inner: EventWriter) -> None:
        super().__init__(inner.out, inner.masker)  # the same masker: marks apply to both
        self.inner = inner
        self.counts = inner.counts
        self.set_variables: dict[str, str] = {}

    def emit(self, event: dict[str, Any]) -> None:
        self.inner.emit(event)

    def output_variable(self, name: str, value: str, sensitive: bool) -> None:
        self.set_variables[name] = value
        super().output_variable(name, value, sensitive)


class StageRunner:
    """Runs the scripts of one deployment, carrying variables from one script to the next."""

    def __init__(
        self,
        events: EventWriter,
        cancel: CancelToken,
        variables: Mapping[str, str],
        package_root: str,
        cancel_grace_seconds: float,
        helper_root: str | None = None,
    ) -> None:
        self.events = _Recording(events)
        self.cancel = cancel
        self.variables = evaluate_variables(variables)
        #: where the package's scripts are found (the release folder)
        self.package_root = package_root
        #: where scripts run: the release folder, then the install directory once copied
        self.work_dir = package_root
        self.helper_root = helper_root
        self.grace = cancel_grace_seconds
        self.skip_requested = False

    def add_variables(self, values: Mapping[str, str]) -> None:
        self.variables.update(values)

    def run_stage(
        self, stage: str, script: ConfiguredScript | None
    ) -> tuple[str, host.ScriptOutcome] | None:
        """Run ``stage``'s package script and ``script`` (the configured one first for
        PreDeploy, as Calamari does); the label and outcome of the first one that fails (or
        was canceled), else ``None``. Stops after a skip request."""
        jobs: list[_Job] = []
        chosen = self._package_script(stage)
        if chosen is not None:
            name, syntax = chosen
            jobs.append(_Job(f"package script {name}", syntax, self._read(name), None, name))
        if script is not None:
            label, name = f"{stage} script", f"{stage}.configured"
            job = _Job(
                label, script.syntax, script.body, script.interpreter, name, script.substitute
            )
            jobs.insert(0 if stage == "PreDeploy" else len(jobs), job)
        for job in jobs:
            if self.skip_requested:
                break
            body = self._substituted(job.label, job.body) if job.substitute else job.body
            self.events.log("info", f"Running the {job.label}")
            outcome = self._run(job.syntax, body, job.interpreter, job.name)
            if not outcome.success:
                return f"the {job.label}", outcome
        return None

    def _substituted(self, label: str, body: str) -> str:
        """``body`` with ``#{...}`` replaced by the variables of this moment."""
        try:
            return substitute(body, self.variables)
        except RunnerError as exc:
            raise RunnerError(f"the {label} was not run: {exc.message}", hint=exc.hint) from exc

    def run_failed(self, error: str) -> None:
        """Run the ``DeployFailed`` package scripts (errors are logged, never raised)."""
        if self.cancel.cancelled:
            return
        self.add_variables({"Octo.Deployment.Error": error, "Octopus.Deployment.Error": error})
        chosen = self._package_script("DeployFailed")
        if chosen is None:
            return
        name, syntax = chosen
        self.events.log("info", f"Running the package script {name}")
        try:
            outcome = self._run(syntax, self._read(name), None, name)
        except RunnerError as exc:
            self.events.log("error", f"{name} could not run: {exc}")
            return
        if not outcome.success:
            self.events.log("error", f"{name} failed with exit code {outcome.exit_code}")

    def _package_script(self, stage: str) -> tuple[str, str] | None:
        """The one package script ``stage`` runs: the first that can run here, as Calamari
        runs only its preferred script; the others are logged."""
        found = package_scripts(self.package_root, stage)
        runnable = [s for s in found if s[1] != "pwsh" or shutil.which("pwsh") is not None]
        for name, syntax in found:
            if (name, syntax) not in runnable:
                level = "verbose" if runnable else "warning"
                self.events.log(level, f"{name} was not run: PowerShell (pwsh) is not on PATH here")
        if not runnable:
            return None
        chosen, rest = runnable[0], runnable[1:]
        if rest:
            others = ", ".join(name for name, _ in rest)
            self.events.log("verbose", f"{chosen[0]} runs for {stage}; not run: {others}")
        return chosen

    def _run(
        self, syntax: str, body: str, interpreter: str | None, name: str
    ) -> host.ScriptOutcome:
        job = host.ScriptJob(
            syntax=syntax,
            body=body,
            variables=dict(self.variables),
            work_dir=self.work_dir,
            interpreter=interpreter,
            cancel_grace_seconds=self.grace,
            helper_root=self.helper_root,
            name=name,
        )
        self.events.set_variables.clear()
        outcome = host.run(job, self.events, self.cancel)
        self.variables.update(self.events.set_variables)
        if any(
            name.lower() in _SKIP_NAMES and value.strip().lower() == "true"
            for name, value in self.events.set_variables.items()
        ):
            self.skip_requested = True
        return outcome

    def _read(self, name: str) -> str:
        path = os.path.join(self.package_root, name)
        try:
            with open(path, encoding="utf-8-sig", errors="replace") as f:
                return f.read()
        except OSError as exc:
            raise RunnerError(f"cannot read the package script {name}: {exc.strerror}") from exc
