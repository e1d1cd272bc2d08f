"""Environments, targets (deployment targets: machines with an agent) and their roles."""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, utcnow


class Environment(BaseModel):
    id_prefix = "env"

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    sort_order = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)


class Target(BaseModel):
    id_prefix = "tgt"

    name = peewee.CharField(max_length=200, unique=True)
    #: how the appliance reaches it: a transport name (``listening``, ``polling``, ...) or ``none``
    communication_style = peewee.CharField(max_length=40, default="none")
    #: listening agents: ``https://host:port``; polling agents: ``poll://<subscription id>``
    uri = peewee.CharField(max_length=500, default="")
    thumbprint = peewee.CharField(max_length=64, default="")
    #: the agent's self-signed certificate (PEM): the trust anchor its TLS is checked against
    certificate = peewee.TextField(default="")
    #: the transport's own settings (JSON; SSH: ``directory``, ``trust_on_first_use``)
    transport_settings = peewee.TextField(null=True)
    #: the transport's credentials (JSON, sealed by the vault; SSH: key or password)
    sealed_credentials = peewee.TextField(null=True)
    disabled = peewee.BooleanField(default=False)
    health_status = peewee.CharField(max_length=40, default="Unknown")
    agent_version = peewee.CharField(max_length=40, default="")
    last_seen = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)


class TargetEnvironment(BaseModel):
    id_prefix = "tge"

    target = peewee.ForeignKeyField(Target, backref="environment_links", on_delete="CASCADE")
    environment = peewee.ForeignKeyField(Environment, backref="target_links", on_delete="CASCADE")

    class Meta:
        indexes = ((("target", "environment"), True),)


class TargetRole(BaseModel):
    id_prefix = "tgr"

    target = peewee.ForeignKeyField(Target, backref="role_links", on_delete="CASCADE")
    role = peewee.CharField(max_length=100, index=True)

    class Meta:
        indexes = ((("target", "role"), True),)
