"""``/api/v1/projects/{ref}/process``: a project's deployment process, read and replaced whole.

``{"steps": [{"name", "type", "roles", "properties", "condition", "environments",
"start_with_previous", "window", "required", "retries", "timeout"}]}``, in run order. Defaults:
condition ``"success"`` (the steps before succeeded; also ``"always"``, ``"failure"`` or
``{"variable": "#{Expr}"}``: run when the expression substitutes to a truthy value),
environments ``[]`` (all), start_with_previous false, window null (all targets at once),
required false, retries 0, timeout null (seconds; none), disabled false (a disabled step
stays in the process, and in releases, but no deployment runs it).

``type`` names a registered step type; the step's ``properties`` are checked against its
declared schema (``GET /api/v1/step-types``), then by the step type itself (problems are
reported per field as ``steps.N.properties.FIELD``) and says whether the step runs on targets
chosen by role (then ``roles`` is required). Every PUT bumps ``version``; sending the
``version`` read by GET makes the PUT a 409 if someone else saved in between.
Reading needs ``project.view`` on the project, replacing ``project.edit`` (and ``worker.use``
when any step runs on the appliance: :mod:`octo_appliance.api.worker_access`).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import peewee
from octo_runner.errors import SubstitutionError
from octo_runner.substitution import parse
from pydantic import Field, field_validator

from octo_appliance.api.context import RequestContext
from octo_appliance.api.refs import get_or_404
from octo_appliance.api.routing import Router
from octo_appliance.api.schemas import (
    NAME_PATTERN,
    Body,
    FreeJson,
    Line,
    Out,
    Ref,
    line_keys,
    name_field,
)
from octo_appliance.api.variable_lists import lookup_ids
from octo_appliance.api.worker_access import appliance_steps, require_worker_use
from octo_appliance.db import Environment, Project, ProjectProcess
from octo_appliance.exceptions import Conflict, ValidationFailed
from octo_appliance.plugin_api import property_problems
from octo_appliance.security.permissions import Permission

router = Router("process")
log = logging.getLogger(__name__)

MAX_STEPS = 200
MAX_REPORTED_ERRORS = 50


class VariableCondition(Body):
    variable: str = Field(
        min_length=1,
        max_length=2000,
        pattern=NAME_PATTERN,
        description="Run when this substitutes to a truthy value.",
    )


class StepIn(Body):
    name: str = name_field()
    type: str = Field(
        min_length=1, pattern=NAME_PATTERN, max_length=100, description="A registered step type."
    )
    roles: list[Ref] = Field(default_factory=list, max_length=100)
    properties: dict[Line, FreeJson] = Field(default_factory=dict, json_schema_extra=line_keys)
    condition: Literal["success", "always", "failure"] | VariableCondition = "success"
    environments: list[Ref] = Field(
        default_factory=list, max_length=500, description="Ids or names; empty: all."
    )
    start_with_previous: bool = False
    window: int | None = Field(None, ge=1, le=100_000, description="Targets at a time.")
    required: bool = Field(False, description="Cannot be skipped when deploying.")
    retries: int = Field(0, ge=0, le=100)
    timeout: int | None = Field(None, ge=1, le=7 * 86_400, description="Seconds.")
    disabled: bool = Field(False, description="Kept in the process but never run.")

    @field_validator("roles", "environments")
    @classmethod
    def _non_empty(cls, refs: list[str]) -> list[str]:
        if any(not ref or len(ref) > 200 for ref in refs):
            raise ValueError("each entry is a non-empty name of at most 200 characters")
        return list(dict.fromkeys(refs))


class ProcessIn(Body):
    project_id: Line | None = Field(
        None, max_length=40, description="Optional; if given it must be this project's id."
    )
    version: int | None = Field(
        None, ge=0, description="Optional: the version read; a 409 if the process changed since."
    )
    steps: list[StepIn] = Field(max_length=MAX_STEPS)


class VariableConditionOut(Out):
    variable: str


class StepOut(Out):
    name: str
    type: str
    roles: list[str]
    properties: dict[str, Any]
    condition: Literal["success", "always", "failure"] | VariableConditionOut
    environments: list[str]
    start_with_previous: bool
    window: int | None
    required: bool
    retries: int
    timeout: int | None
    disabled: bool = False


class ProcessOut(Out):
    project_id: str
    version: int
    steps: list[StepOut]


def process_json(project_id: str, row: ProjectProcess | None) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "version": row.version if row is not None else 0,
        "steps": list(row.steps or []) if row is not None else [],
    }


class _Checker:
    """Checks the new steps and builds what is stored, collecting every problem."""

    def __init__(self, ctx: RequestContext, stored: ProjectProcess | None) -> None:
        self.registry = ctx.appliance.plugins.step_types
        self.stored_envs = {
            env for step in (stored.steps if stored else []) for env in step.get("environments", [])
        }
        self.errors: list[dict[str, str]] = []

    def error(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def _type(self, at: str, step: StepIn) -> None:
        if step.type not in self.registry:
            known = ", ".join(entry.name for entry in self.registry) or "none"
            self.error(f"{at}.type", f"unknown step type '{step.type}'; registered: {known}")
            return
        step_type = self.registry.get(step.type)()
        try:
            problems = property_problems(step_type, step.properties)
            needs_roles = step_type.targets_machines(step.properties)
        except Exception as exc:  # a plugin's bug must not become a 500 for the user
            log.exception("step type %s failed to validate properties", step.type)
            self.error(f"{at}.properties", f"step type '{step.type}' could not check them: {exc}")
            return
        for problem in problems:
            self.error(f"{at}.properties.{problem.field}", problem.message)
        if needs_roles and not step.roles:
            self.error(f"{at}.roles", "this step runs on targets: give at least one target role")

    def _condition(self, at: str, step: StepIn) -> str | dict[str, str]:
        if isinstance(step.condition, VariableCondition):
            try:
                parse(step.condition.variable)
            except SubstitutionError as exc:
                self.error(f"{at}.condition.variable", str(exc))
            return {"variable": step.condition.variable}
        return step.condition

    def steps(self, steps: list[StepIn]) -> list[dict[str, Any]]:
        envs = {s: s for s in self.stored_envs} | lookup_ids(
            Environment, {ref for step in steps for ref in step.environments}
        )
        names: dict[str, int] = {}
        result = []
        for index, step in enumerate(steps):
            at = f"steps.{index}"
            key = step.name.casefold()
            if key in names:
                self.error(f"{at}.name", f"'{step.name}' is also the name of step {names[key]}")
            names.setdefault(key, index)
            if index == 0 and step.start_with_previous:
                self.error(f"{at}.start_with_previous", "the first step has no step before it")
            self._type(at, step)
            missing = [ref for ref in step.environments if ref not in envs]
            for ref in missing:
                self.error(f"{at}.environments", f"no environment with id or name '{ref}'")
            result.append(
                {
                    "name": step.name,
                    "type": step.type,
                    "roles": step.roles,
                    "properties": step.properties,
                    "condition": self._condition(at, step),
                    "environments": list(
                        dict.fromkeys(envs[ref] for ref in step.environments if ref in envs)
                    ),
                    "start_with_previous": step.start_with_previous,
                    "window": step.window,
                    "required": step.required,
                    "retries": step.retries,
                    "timeout": step.timeout,
                    "disabled": step.disabled,
                }
            )
        if self.errors:
            shown = self.errors[:MAX_REPORTED_ERRORS]
            raise ValidationFailed(
                f"the process has {len(self.errors)} problem(s): {shown[0]['message']}",
                details=shown,
                hint="fix the listed fields; GET /api/v1/plugins lists the step types",
            )
        return result


def _process_row(ctx: RequestContext, project: Project) -> ProjectProcess:
    row = ProjectProcess.get_or_none(ProjectProcess.project == project.id)
    if row is not None:
        return row
    try:
        with ctx.appliance.db.atomic():  # a savepoint: a concurrent first PUT may win
            created: ProjectProcess = ProjectProcess.create_new(project=project.id)
            return created
    except peewee.IntegrityError:
        return ProjectProcess.get(ProjectProcess.project == project.id)


@router.get(
    "/projects/{ref}/process", summary="Get a project's deployment process", response=ProcessOut
)
def get_process(ctx: RequestContext, ref: str) -> dict[str, Any]:
    """A project that never had a process has version 0 and no steps."""
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_VIEW, project=project.id)
    row = ProjectProcess.get_or_none(ProjectProcess.project == project.id)
    return process_json(project.id, row)


@router.put(
    "/projects/{ref}/process",
    summary="Replace a project's deployment process",
    body=ProcessIn,
    response=ProcessOut,
    errors=(409, 422),
)
def put_process(ctx: RequestContext, ref: str, body: ProcessIn) -> dict[str, Any]:
    """The steps replace the stored ones, in run order; a GET answer is a valid body.

    Every problem is a 422 listing ``steps.N.FIELD`` (step properties as
    ``steps.N.properties.FIELD``). Releases already created keep the process they snapshotted.
    """
    project = get_or_404(Project, ref, "project")
    ctx.require(Permission.PROJECT_EDIT, project=project.id)
    if body.project_id is not None and body.project_id != project.id:
        raise ValidationFailed(
            f"the body is for project '{body.project_id}', not '{project.id}'",
            details=[{"field": "project_id", "message": "does not match the path"}],
            hint="leave project_id out, or send the process to its own project",
        )
    stored = ProjectProcess.get_or_none(ProjectProcess.project == project.id)
    steps = _Checker(ctx, stored).steps(body.steps)
    on_appliance = appliance_steps(steps, ctx.appliance.plugins.step_types)
    require_worker_use(ctx, on_appliance, "save this process", project=project.id)
    row = _process_row(ctx, project)
    update = ProjectProcess.update(version=ProjectProcess.version + 1, steps=steps).where(
        ProjectProcess.id == row.id
    )
    if body.version is not None:
        update = update.where(ProjectProcess.version == body.version)
    if update.execute() == 0:
        current = ProjectProcess.get_by_id(row.id).version
        raise Conflict(
            f"the process changed since version {body.version} was read (it is {current} now)",
            hint="GET the process again, reapply your change and PUT it with the new version",
        )
    row = ProjectProcess.get_by_id(row.id)
    ctx.audit(
        "update",
        "process",
        project.id,
        project.name,
        {"version": row.version, "steps": [step["name"] for step in steps]},
    )
    return process_json(project.id, row)
