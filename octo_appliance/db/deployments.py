"""Deployment engine data: lifecycles, library variable sets, processes, releases,
deployments and interruptions.

A project's deployment process is a list of steps stored as JSON on ``ProjectProcess``
(versioned: every PUT bumps ``version``). A release snapshots the process and the variables
(sensitive values stay sealed in the snapshot, bound to the release row), so later edits never
change what a release deploys.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, JSONField, utcnow
from octo_appliance.db.infrastructure import Environment
from octo_appliance.db.projects import Project


class Lifecycle(BaseModel):
    """Phases of environments a release is promoted through."""

    id_prefix = "lfc"

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    #: ``[{"name", "environments": [env ids], "minimum_environments": N, "automatic": bool}]``;
    #: ``minimum_environments`` 0 means all of the phase's environments
    phases = JSONField(default=list)
    created_at = peewee.DateTimeField(default=utcnow)


class ProjectSettings(BaseModel):
    """Per-project engine settings: the lifecycle and the library sets it includes."""

    id_prefix = "pst"

    project = peewee.ForeignKeyField(Project, backref="settings", on_delete="CASCADE", unique=True)
    #: None: the default lifecycle (one phase per environment, in sort order)
    lifecycle = peewee.ForeignKeyField(Lifecycle, null=True, on_delete="SET NULL")
    #: library variable set ids, in precedence order (later ones lose to earlier ones)
    library_sets = JSONField(default=list)
    #: release numbering when no version is given: ``{"template": "1.0.#{N}"}``
    versioning = JSONField(default=dict)


class ProjectProcess(BaseModel):
    id_prefix = "prc"

    project = peewee.ForeignKeyField(Project, backref="process", on_delete="CASCADE", unique=True)
    version = peewee.IntegerField(default=0)
    #: ``[{"name", "type", "roles", "properties", "condition", "environments",
    #: "start_with_previous", "window", "required", "retries", "timeout"}]``
    steps = JSONField(default=list)


class LibraryVariableSet(BaseModel):
    id_prefix = "lvs"

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)


class LibraryVariable(BaseModel):
    """Like :class:`~octo_appliance.db.projects.Variable`, owned by a library set."""

    id_prefix = "lvr"

    library_set = peewee.ForeignKeyField(
        LibraryVariableSet, backref="variables", on_delete="CASCADE"
    )
    name = peewee.CharField(max_length=300)
    sensitive = peewee.BooleanField(default=False)
    value = peewee.TextField(null=True)
    sealed_value = peewee.TextField(null=True)
    #: ``{"environments": [ids], "roles": [names], "targets": [ids], "steps": [names]}``
    scope = JSONField(default=dict)
    position = peewee.IntegerField(default=0)


class Release(BaseModel):
    id_prefix = "rel"

    project = peewee.ForeignKeyField(Project, backref="releases", on_delete="CASCADE")
    version = peewee.CharField(max_length=100)
    notes = peewee.TextField(default="")
    #: the process steps as they were when the release was created
    process_snapshot = JSONField(default=list)
    process_version = peewee.IntegerField(default=0)
    #: ``[{"name", "value" (None when sensitive), "sensitive", "scope", "source"}]``
    variables_snapshot = JSONField(default=list)
    #: sealed JSON ``{"<index in variables_snapshot>": value}`` of the sensitive values
    sealed_variables = peewee.TextField(null=True)
    #: lifecycle phases as they were (so a later lifecycle edit does not reorder a release)
    lifecycle_snapshot = JSONField(default=list)
    created_at = peewee.DateTimeField(default=utcnow)
    created_by = peewee.CharField(max_length=100, default="")

    class Meta:
        indexes = ((("project", "version"), True),)


class Deployment(BaseModel):
    id_prefix = "dep"

    release = peewee.ForeignKeyField(Release, backref="deployments", on_delete="CASCADE")
    project = peewee.ForeignKeyField(Project, backref="deployments", on_delete="CASCADE")
    environment = peewee.ForeignKeyField(Environment, backref="deployments", on_delete="CASCADE")
    task_id = peewee.CharField(max_length=40, index=True)
    #: mirrors the task: queued, executing, success, failed, canceled, timed_out
    state = peewee.CharField(max_length=20, default="queued", index=True)
    #: ``{"skip_steps", "targets", "exclude_targets", "guided_failure", "force"}``
    options = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    created_by = peewee.CharField(max_length=100, default="")
    finished_at = peewee.DateTimeField(null=True)


class Interruption(BaseModel):
    """A deployment waiting for a person: manual intervention or guided failure."""

    id_prefix = "int"

    task_id = peewee.CharField(max_length=40, index=True)
    deployment = peewee.ForeignKeyField(
        Deployment, backref="interruptions", null=True, on_delete="CASCADE"
    )
    #: ``manual-intervention`` or ``guided-failure``
    kind = peewee.CharField(max_length=40)
    title = peewee.CharField(max_length=300)
    instructions = peewee.TextField(default="")
    step_name = peewee.CharField(max_length=200, default="")
    target_id = peewee.CharField(max_length=40, null=True)
    target_name = peewee.CharField(max_length=200, default="")
    #: team ids allowed to answer (empty: anyone who may deploy to the environment)
    responsible_teams = JSONField(default=list)
    #: the answers this interruption accepts
    options = JSONField(default=list)
    environment_id = peewee.CharField(max_length=40, null=True)
    project_id = peewee.CharField(max_length=40, null=True)
    #: ``pending`` until answered, then ``submitted``
    state = peewee.CharField(max_length=20, default="pending", index=True)
    result = peewee.CharField(max_length=40, default="")
    notes = peewee.TextField(default="")
    submitted_by = peewee.CharField(max_length=100, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    submitted_at = peewee.DateTimeField(null=True)
