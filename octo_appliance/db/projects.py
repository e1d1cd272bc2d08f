"""Projects and their variables (sensitive values sealed under the master key)."""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, JSONField, utcnow


class Project(BaseModel):
    id_prefix = "prj"

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)


class Variable(BaseModel):
    """One value of a project variable; ``sealed_value`` holds sensitive values only."""

    id_prefix = "var"

    project = peewee.ForeignKeyField(Project, backref="variables", on_delete="CASCADE")
    name = peewee.CharField(max_length=300)
    sensitive = peewee.BooleanField(default=False)
    value = peewee.TextField(null=True)
    sealed_value = peewee.TextField(null=True)
    #: ``{"environments": [ids], "roles": [names], "targets": [ids]}``
    scope = JSONField(default=dict)
    position = peewee.IntegerField(default=0)
