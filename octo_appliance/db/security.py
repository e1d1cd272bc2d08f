"""Users, teams, role grants, API keys, registration tokens and login sessions."""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, JSONField, utcnow


class User(BaseModel):
    id_prefix = "usr"

    username = peewee.CharField(max_length=100, unique=True)
    display_name = peewee.CharField(max_length=200, default="")
    email = peewee.CharField(max_length=300, default="")
    #: scrypt hash (see :mod:`octo_appliance.security.passwords`); empty: no password login
    password_hash = peewee.CharField(max_length=300, default="")
    is_active = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)


class Team(BaseModel):
    id_prefix = "team"

    name = peewee.CharField(max_length=200, unique=True)
    description = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)


class TeamMember(BaseModel):
    id_prefix = "tmm"

    team = peewee.ForeignKeyField(Team, backref="member_links", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, backref="team_links", on_delete="CASCADE")

    class Meta:
        indexes = ((("team", "user"), True),)


class TeamRole(BaseModel):
    """A built-in role granted to a team, optionally limited to environments and projects."""

    id_prefix = "trl"

    team = peewee.ForeignKeyField(Team, backref="roles", on_delete="CASCADE")
    role = peewee.CharField(max_length=60)
    #: environment ids; empty means every environment
    environments = JSONField(default=list)
    #: project ids; empty means every project
    projects = JSONField(default=list)


class ApiKey(BaseModel):
    """An API key: only its SHA-256 is stored (keys are 256 random bits, so no slow hash)."""

    id_prefix = "key"

    user = peewee.ForeignKeyField(User, backref="api_keys", on_delete="CASCADE")
    name = peewee.CharField(max_length=200, default="")
    key_hash = peewee.CharField(max_length=64, unique=True)
    #: the first characters of the key, shown so a person can tell keys apart
    prefix = peewee.CharField(max_length=16)
    created_at = peewee.DateTimeField(default=utcnow)
    last_used = peewee.DateTimeField(null=True)


class RegistrationToken(BaseModel):
    """A token that may only register targets (the one-line install carries it, never an API
    key): limited to some environments and roles, a communication style, an expiry and a
    number of uses. Only its SHA-256 is stored, as for API keys."""

    id_prefix = "rgt"

    user = peewee.ForeignKeyField(User, backref="registration_tokens", on_delete="CASCADE")
    name = peewee.CharField(max_length=200, default="")
    token_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.CharField(max_length=16)
    #: environment ids the registered targets may be placed in (at least one)
    environments = JSONField(default=list)
    #: roles the registered targets may carry (at least one)
    roles = JSONField(default=list)
    #: ``listening``, ``polling`` or ``any``
    mode = peewee.CharField(max_length=20, default="any")
    max_uses = peewee.IntegerField(default=1)
    uses = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    last_used = peewee.DateTimeField(null=True)


class LoginSession(BaseModel):
    """A cookie session: the token and CSRF token are stored as SHA-256 only."""

    id_prefix = "ses"

    user = peewee.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    token_hash = peewee.CharField(max_length=64, unique=True)
    csrf_hash = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
